"""Hardware profile: simulated machines, detection, the measurement cache, `sizer hw`."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from sizer.cli import main
from sizer.core.hardware import cgroup
from sizer.core.hardware import gpu_specs
from sizer.core.hardware import profile as hardware
from sizer.core.hardware import microbench
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import GIB, detect, simulated
from sizer.core.hardware.devices import HardwareProfile


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hardware.json"


@pytest.fixture
def measure_calls(monkeypatch):
    """Count measurements; each still runs the real benchmark, with short samples to stay fast."""
    calls: list[str] = []
    real = microbench.measure

    def counted(device, sample_s=0.2, free_bytes=None):
        calls.append(device)
        return real(device, sample_s=0.01, free_bytes=64 * 2**20 * 8)

    monkeypatch.setattr(microbench, "measure", counted)
    return calls


# ---------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("spec", "names", "memory_gib", "kind"),
    [
        ("1x H100 80GB", ["H100 SXM 80GB"], 80, "cuda"),
        ("2x RTX 4090", ["RTX 4090 24GB"] * 2, 24, "cuda"),
        ("2 X rtx-4090", ["RTX 4090 24GB"] * 2, 24, "cuda"),
        ("A100 40GB", ["A100 SXM 40GB"], 40, "cuda"),
        ("a100 pcie 80 gb", ["A100 PCIe 80GB"], 80, "cuda"),
        ("L4", ["L4 24GB"], 24, "cuda"),
        ("A10G", ["A10G 24GB"], 24, "cuda"),
        ("NVIDIA H200", ["H200 SXM 141GB"], 141, "cuda"),
        ("M2 Max 64GB", ["M2 Max 64GB"], 64, "mps"),
        ("m3max 36gb", ["M3 Max 36GB"], 36, "mps"),
    ],
)
def test_gpu_names(spec, names, memory_gib, kind):
    profile = simulated(spec)
    assert profile.simulated and profile.name == spec
    assert [g.name for g in profile.gpus] == names
    assert {g.kind for g in profile.gpus} == {kind}
    assert all(g.total_bytes == memory_gib * GIB for g in profile.gpus)
    assert all(0 < g.free_bytes < g.total_bytes for g in profile.gpus)
    assert all(g.figures.source == "datasheet" and g.figures.bandwidth_gbs > 0 for g in profile.gpus)


def test_simulated_gpu_box_has_datasheet_figures_and_a_default_cpu():
    profile = simulated("1x H100 80GB")
    gpu, cpu = profile.devices()
    assert gpu.free_bytes == 80 * GIB - int(80 * GIB * 0.015)  # reserve: 1.5%, at least 1 GiB
    assert simulated("L4").devices()[0].free_bytes == 23 * GIB
    assert simulated("H200").devices()[0].free_bytes == 141 * GIB - int(141 * GIB * 0.015)
    assert gpu.bandwidth_gbs == 3350 and gpu.flops["bf16"] == pytest.approx(989.5e12)
    assert cpu.kind == "cpu" and profile.cpu.physical_cores == hardware.DEFAULT_CPU_CORES
    assert cpu.total_bytes == 80 * GIB  # the default RAM grows to the GPUs' memory
    assert profile.cpu.figures.source == "assumed"


def test_cpu_only_name():
    profile = simulated("8 vCPU 32GB")
    assert profile.gpus == ()
    [cpu] = profile.devices()
    assert profile.cpu.physical_cores == 8 and cpu.total_bytes == 32 * GIB
    assert cpu.free_bytes == int(32 * GIB * hardware.RAM_AVAILABLE_FRACTION)
    assert cpu.flops["fp32"] == 8 * hardware.ASSUMED_CPU_GFLOPS_PER_CORE * 1e9


def test_gpus_plus_cpu_part():
    profile = simulated("4x L40S + 64 vCPU 512GB")
    assert len(profile.gpus) == 4 and profile.cpu.physical_cores == 64
    assert profile.cpu.ram_total_bytes == 512 * GIB


def test_apple_chip_is_unified_memory():
    profile = simulated("M2 Max 64GB")
    mps, cpu = profile.devices()
    assert profile.unified_memory
    assert mps.kind == "mps" and mps.free_bytes == int(64 * GIB * hardware.MPS_USABLE_FRACTION)
    assert cpu.total_bytes == 64 * GIB and profile.cpu.physical_cores == 12


def test_gpus_without_bf16_leave_it_out():
    flops = simulated("T4").devices()[0].flops
    assert "bf16" not in flops and flops["fp16"] == 65e12


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("0x H100", "1 to 16"),
        ("99x H100", "1 to 16"),
        ("-1x H100", "1 to 16"),
        ("8 vCPU -32GB", "RAM must be positive"),
        ("0 vCPU 32GB", "positive whole number"),
        ("H900", "close names: H200 SXM"),
        ("RTX 4099", "RTX 4090"),
        ("A100 48GB", "sizes: 40GB, 80GB"),
        ("2x M2 Max", "one chip per machine"),
        ("M2 Max 64GB + 1x L4", "one chip per machine"),
        ("H100 80GB 40GB", "more than one memory size"),
        ("L4 + ", "empty part"),
        ("   ", "empty --profile"),
        ("missing-machine.toml", "no such profile file"),
    ],
)
def test_bad_names(spec, fragment):
    with pytest.raises(SizerError) as info:
        simulated(spec)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_profile_exits_2_with_one_line(capsys):
    assert main(["hw", "--profile", "99x H100"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("sizer: error: ") and captured.err.count("\n") == 1


# ---------------------------------------------------------------------------------- files


def test_profile_file(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(
        'name = "lab box"\n'
        "[cpu]\ncores = 32\nram_gb = 256\nbandwidth_gbs = 120\n"
        '[[gpu]]\nmodel = "RTX 4090"\ncount = 2\n'
        '[[gpu]]\nname = "Custom 48G"\nmemory_gb = 48\nbandwidth_gbs = 960\nbf16_tflops = 180\n'
    )
    profile = simulated(str(path))
    assert profile.name == "lab box"
    assert [g.name for g in profile.gpus] == ["RTX 4090 24GB", "RTX 4090 24GB", "Custom 48G 48GB"]
    custom = profile.devices()[2]
    assert custom.total_bytes == 48 * GIB and custom.flops == {"bf16": 180e12}
    assert profile.gpus[2].figures.what == str(path)
    cpu = profile.devices()[-1]
    assert cpu.bandwidth_gbs == 120 and cpu.total_bytes == 256 * GIB and profile.cpu.physical_cores == 32


def test_profile_file_apple_with_memory_in_model(tmp_path):
    path = tmp_path / "mac.toml"
    path.write_text('[[gpu]]\nmodel = "M4 Max 128GB"\n')
    profile = simulated(str(path))
    assert profile.name == "mac" and profile.unified_memory
    assert profile.gpus[0].total_bytes == 128 * GIB and profile.gpus[0].figures.bandwidth_gbs == 546


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[cpu]\ncores = 4\nram_gb =\n", "invalid TOML"),
        ('[[gpu]]\nmodel = "H900"\n', "unknown GPU 'H900'"),
        ('[[gpu]]\nmodel = "L4"\ncount = 99\n', "count must be 1 to 16"),
        ("[cpu]\nram_gb = -8\n", "[cpu] ram_gb must be a positive number"),
        ("[cpu]\ncores = 4\nturbo = true\n", "unknown key(s) turbo"),
        ("gpus = 1\n", "unknown key(s) gpus"),
        ('[[gpu]]\nname = "X"\nmemory_gb = 8\nbandwidth_gbs = 100\n', "at least one of bf16_tflops"),
        ('[[gpu]]\nname = "X"\nmemory_gb = 0\nbandwidth_gbs = 100\nbf16_tflops = 1\n', "memory_gb must be a positive"),
        ('[[gpu]]\nmodel = "L4"\nmemory_gb = 24\n', "not both"),
    ],
)
def test_bad_profile_files(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SizerError) as info:
        simulated(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_invalid_toml_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[cpu]\ncores = = 4\n')
    with pytest.raises(SizerError, match=r"bad\.toml:3: invalid TOML"):
        simulated(str(path))


# ---------------------------------------------------------------------------------- the table


def test_table_rows_are_complete():
    table = gpu_specs.load_table()
    models = {spec.model for spec in table}
    for wanted in ("H200 SXM", "H100 SXM", "H100 PCIe", "A100 SXM", "L40S", "L4", "A10G", "T4", "V100 SXM2",
                   "RTX 3090", "RTX 4090", "RTX 5090", "RTX 5080", "RTX 4060", "RTX 4070", "RTX 4080",
                   "RTX 4070 Ti SUPER", "H100 PCIe",
                   "M1 Pro", "M2 Max", "M3 Ultra", "M4 Max"):
        assert wanted in models
    for spec in table:
        assert spec.source and spec.bandwidth_gbs > 0 and spec.memory_gb and spec.kind in ("cuda", "mps")
        assert "fp32" in spec.tflops and ("bf16" in spec.tflops or "fp16" in spec.tflops)
        assert all(v > 0 for v in spec.tflops.values())


@pytest.mark.parametrize(
    ("reported", "total_gib", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 79.6, "H100 SXM 80GB"),
        ("NVIDIA H100 PCIe", 79.6, "H100 PCIe 80GB"),
        ("NVIDIA A100-SXM4-40GB", 39.4, "A100 SXM 40GB"),
        ("NVIDIA A100-SXM4-80GB", 79.2, "A100 SXM 80GB"),
        ("NVIDIA A10", 22.0, "A10 24GB"),
        ("NVIDIA L40S", 44.4, "L40S 48GB"),
        ("NVIDIA GeForce RTX 4060 Ti", 15.7, "RTX 4060 Ti 16GB"),
        ("Tesla T4", 14.6, "T4 16GB"),
        ("NVIDIA H200", 139.8, "H200 SXM 141GB"),
        ("Apple M2 Max", 64.0, "M2 Max 64GB"),
    ],
)
def test_driver_names_match_the_table(reported, total_gib, expected):
    assert gpu_specs.match_device_name(reported, total_gib).label == expected


def test_unknown_driver_name_has_no_datasheet():
    assert gpu_specs.match_device_name("Matrox G200eW") is None


@pytest.mark.parametrize(
    "reported",
    [
        "NVIDIA GeForce RTX 4090 D",  # the China-market 4090: fewer SMs, not the 4090 row
        "NVIDIA GeForce RTX 4090 Laptop GPU",  # a different chip (AD103, 16 GB, 576 GB/s)
        "NVIDIA GH200 480GB",  # contains "H200" but is the Grace Hopper superchip
        "NVIDIA GeForce RTX 4060 Ti Laptop GPU",
        "NVIDIA A100X",
        "NVIDIA GeForce RTX 3080 Ti",
    ],
)
def test_near_miss_driver_names_get_no_datasheet(reported):
    assert gpu_specs.match_device_name(reported, 24.0) is None


@pytest.mark.parametrize(
    ("reported", "total_gib", "expected", "bandwidth_gbs"),
    [
        # the SUPER cards have rows of their own, with their own bandwidth (not the base model's)
        ("NVIDIA GeForce RTX 4070 Ti SUPER", 15.6, "RTX 4070 Ti SUPER 16GB", 672),
        ("NVIDIA GeForce RTX 4070 Ti", 11.6, "RTX 4070 Ti 12GB", 504.2),
        ("NVIDIA GeForce RTX 4080 SUPER", 15.6, "RTX 4080 SUPER 16GB", 736),
        ("NVIDIA GeForce RTX 5080", 15.5, "RTX 5080 16GB", 960),
        ("NVIDIA GeForce RTX 5090", 31.4, "RTX 5090 32GB", 1792),
        ("NVIDIA GeForce RTX 3090 Ti", 23.6, "RTX 3090 Ti 24GB", 1008),
        ("NVIDIA A100 80GB PCIe", 79.2, "A100 PCIe 80GB", 1935),
        ("NVIDIA L40", 44.4, "L40 48GB", 864),
        ("NVIDIA L4", 22.0, "L4 24GB", 300),
    ],
)
def test_driver_names_match_their_exact_model(reported, total_gib, expected, bandwidth_gbs):
    choice = gpu_specs.match_device_name(reported, total_gib)
    assert choice.label == expected
    assert choice.spec.bandwidth_gbs == bandwidth_gbs


def test_detected_near_miss_gpu_has_no_datasheet_figures():
    gpu = hardware.GPUInfo(0, "NVIDIA GeForce RTX 4090 D", "cuda", 24 * GIB, 23 * GIB, usable=False)
    assert hardware._with_datasheet(gpu).datasheet is None


def test_profile_names_the_super_card_exactly():
    profile = simulated("RTX 4070 Ti SUPER")
    assert profile.gpus[0].name == "RTX 4070 Ti SUPER 16GB"
    assert profile.gpus[0].figures.bandwidth_gbs == 672


# ---------------------------------------------------------------------------------- this machine


def test_detect_this_machine(cache, measure_calls):
    profile = detect()
    assert not profile.simulated and profile.torch_version
    cpu = profile.cpu
    assert cpu.model and 1 <= cpu.physical_cores <= cpu.logical_cores
    assert 0 < cpu.ram_available_bytes <= cpu.ram_total_bytes
    assert profile.disk_free_bytes is not None and profile.disk_free_bytes >= 0
    devices = profile.devices()
    assert devices[-1].kind == "cpu" and all(d.kind != "cpu" for d in devices[:-1])
    assert devices[-1].free_bytes == cpu.ram_available_bytes
    for gpu in profile.gpus:  # runs where a GPU is present
        assert 0 < gpu.free_bytes <= gpu.total_bytes and gpu.name
        if gpu.usable:
            assert gpu.figures.source == "measured" and gpu.figures.bandwidth_gbs > 0
            assert gpu.compute_capability and gpu.cuda_version


def test_measured_figures_are_plausible():
    result = microbench.measure("cpu", sample_s=0.05)
    assert 0.1 < result.bandwidth_gbs < 100_000
    assert set(result.flops) == {"fp32", "bf16"}
    assert all(1e8 < value < 1e16 for value in result.flops.values())
    assert result.details["threads"] >= 1 and result.details["matmul_n"]["fp32"] >= 256


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_measured_gpu_figures_are_plausible():
    result = microbench.measure("cuda:0", sample_s=0.05)
    assert 1 < result.bandwidth_gbs < 100_000
    assert all(1e10 < value < 1e17 for value in result.flops.values())
    assert result.flops["bf16"] > result.flops["fp32"]  # tensor cores


def test_cache_is_reused_and_remeasure_redoes_it(cache, measure_calls):
    first = detect()
    measured_once = list(measure_calls)
    assert measured_once[0] == "cpu" and cache.exists()
    second = detect()
    assert measure_calls == measured_once  # from the cache
    assert second.cpu.figures == first.cpu.figures and second.fingerprint == first.fingerprint
    detect(remeasure=True)
    assert measure_calls == measured_once * 2


def test_changed_machine_remeasures(cache, measure_calls, monkeypatch):
    first = detect()
    monkeypatch.setattr(hardware, "_torch_version", lambda: "0.0.0-other")
    other = detect()
    assert measure_calls.count("cpu") == 2 and other.fingerprint != first.fingerprint
    machines = json.loads(cache.read_text())["machines"]
    assert set(machines) == {first.fingerprint, other.fingerprint}
    assert machines[other.fingerprint]["machine"]["torch"] == "0.0.0-other"


def test_corrupt_cache_is_remeasured(cache, measure_calls):
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("{not json")
    detect()
    assert measure_calls.count("cpu") == 1 and json.loads(cache.read_text())["format"] == hardware.CACHE_FORMAT


# ---------------------------------------------------------------------------------- sizer hw


def test_hw_json_shape_and_round_trip(cache, measure_calls, capsys):
    assert main(["hw", "--json"]) == 0
    captured = capsys.readouterr()
    assert "measuring memory bandwidth" in captured.err
    data = json.loads(captured.out)
    assert {"name", "simulated", "cpu", "gpus", "disk_free_bytes", "devices", "fingerprint"} <= set(data)
    assert data["cpu"]["figures"]["source"] == "measured"
    assert data["devices"][-1]["kind"] == "cpu"
    assert set(data["devices"][-1]["flops"]) == {"fp32", "bf16"}
    profile = HardwareProfile.from_dict(data)
    assert profile.to_dict() == data

    assert main(["hw", "--json"]) == 0  # second run: cached, nothing on stderr
    assert capsys.readouterr().err == ""
    assert main(["hw", "--remeasure"]) == 0
    assert "measuring" in capsys.readouterr().err
    assert measure_calls.count("cpu") == 2


def test_hw_text_summary(cache, measure_calls, capsys):
    assert main(["hw"]) == 0
    out = capsys.readouterr().out
    assert "cpu (measured)" in out and "GiB total" in out and "GB/s" in out and "FLOP/s" in out


def _fake_cgroup(tmp_path, monkeypatch, files):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            (root / rel).mkdir()  # unreadable as a file
        else:
            (root / rel).write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/\n")
    real = cgroup.memory_limit
    monkeypatch.setattr(cgroup, "memory_limit", lambda: real(root, proc))


def test_hw_says_the_container_limit_applies(cache, measure_calls, capsys, tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, {"memory.max": str(GIB), "memory.current": None, "memory.stat": "x y z"})
    assert main(["hw"]) == 0
    ram = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("RAM"))
    assert ram.startswith("RAM      1.0 GiB total")
    assert "container limit: cgroup v2 memory.max" in ram and "below the host's" in ram
    assert detect().cpu.ram_total_bytes == GIB


def test_hw_with_malformed_cgroup_files_uses_the_hosts_ram(cache, measure_calls, capsys, tmp_path, monkeypatch):
    _fake_cgroup(tmp_path, monkeypatch, {"memory.max": "lots\n", "memory.current": "-"})
    assert main(["hw"]) == 0
    captured = capsys.readouterr()
    assert "the host's RAM (no lower cgroup limit)" in captured.out and "Traceback" not in captured.err


def test_hw_profile_text_and_json(capsys):
    assert main(["hw", "--profile", "2x RTX 4090"]) == 0
    out = capsys.readouterr().out
    assert out.count("RTX 4090 24GB (cuda): 24.0 GiB total, 23.0 GiB free") == 2
    assert "gpu 0 (datasheet)" in out and "cpu (assumed)" in out
    assert main(["hw", "--profile", "L4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["simulated"] is True and [d["kind"] for d in data["devices"]] == ["cuda", "cpu"]
    assert "uuid" not in data["gpus"][0]
    assert HardwareProfile.from_dict(data) == simulated("L4")


def test_hw_list_names_every_table_row(capsys):
    assert main(["hw", "--list"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 + len(gpu_specs.known_names())


def test_remeasure_with_profile_is_usage_error(capsys):
    assert main(["hw", "--profile", "L4", "--remeasure"]) == 2


def test_simulated_profiles_do_not_import_torch():
    code = (
        "import sys\nfrom sizer.core.hardware.profile import simulated\n"
        "simulated('2x RTX 4090'); simulated('8 vCPU 32GB')\nprint('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_table_file_is_valid_toml():
    data = tomllib.loads(gpu_specs.TABLE.read_text())
    assert len(data["gpu"]) == len(gpu_specs.load_table())
