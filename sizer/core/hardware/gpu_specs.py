"""Datasheet machines: the table of well-known GPUs and the names and files that describe a machine.

`parse_machine(spec)` turns a profile name or a TOML file into a `MachineSpec`;
`sizer.core.hardware.profile.simulated()` builds the profile from it.

Names (case, space and dash tolerant; parts joined with "+" or ","):

    "1x H100 80GB"   "2x RTX 4090"   "A100 40GB"   "L4"   "M2 Max 64GB"   "8 vCPU 32GB"
    "4x L40S + 64 vCPU 512GB"

A GPU part is `[N x] MODEL [MEMORY GB]`: MODEL is a row or alias of `sizer/data/gpus.toml`, N is
1 to 16, MEMORY picks among the sizes that model is sold with (the first listed when omitted).
A CPU part is `N vCPU|cores|CPU [RAM GB]`. Apple silicon is one chip per machine and its memory
is the machine's RAM.

A TOML file (any path that exists or ends in .toml) describes a machine:

    name = "lab box"              # optional, shown in reports

    [cpu]                         # optional; defaults below
    cores = 32
    ram_gb = 256
    bandwidth_gbs = 120           # optional: otherwise assumed from the core count
    fp32_gflops = 2000            # optional: otherwise assumed from the core count
    bf16_gflops = 2000            # optional

    [[gpu]]                       # a table model, by name (may include the memory size) ...
    model = "RTX 4090"
    count = 2                     # optional, default 1

    [[gpu]]                       # ... or an accelerator the table lacks, with its figures
    name = "Custom 48G"
    memory_gb = 48
    bandwidth_gbs = 960
    bf16_tflops = 180             # bf16_tflops / fp16_tflops / fp32_tflops: give at least one
    kind = "cuda"                 # optional, default "cuda"
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sizer.core.errors import SizerError

TABLE = Path(__file__).resolve().parents[2] / "data" / "gpus.toml"
MAX_GPUS = 16  # the largest single nodes (DGX-2, HGX-2) hold 16 GPUs
_DTYPES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class GpuSpec:
    """One row of the table: a GPU model with its datasheet figures."""

    model: str
    kind: str  # "cuda" or "mps"
    memory_gb: tuple[float, ...]  # sizes sold; the first is the default
    bandwidth_gbs: float
    tflops: dict[str, float]  # dense peak, "bf16"/"fp16"/"fp32" -> TFLOP/s
    source: str
    aliases: tuple[str, ...] = ()
    cpu_cores: int | None = None  # Apple chips only


@dataclass(frozen=True)
class GpuChoice:
    spec: GpuSpec
    memory_gb: float
    count: int = 1

    @property
    def label(self) -> str:
        return f"{self.spec.model} {self.memory_gb:g}GB"


@dataclass(frozen=True)
class MachineSpec:
    """A described machine, before it becomes a HardwareProfile."""

    name: str
    gpus: tuple[GpuChoice, ...] = ()
    cpu_cores: int | None = None
    ram_gb: float | None = None
    cpu_figures: dict[str, float] = field(default_factory=dict)  # bandwidth_gbs, fp32/bf16_gflops


def normalize(name: str) -> str:
    """Lower-case, without spaces, dashes, underscores and vendor words."""
    text = re.sub(r"\b(nvidia|geforce|tesla|apple)\b", "", name.lower())
    return re.sub(r"[\s\-_]+", "", text)


@functools.cache
def load_table() -> tuple[GpuSpec, ...]:
    rows = tomllib.loads(TABLE.read_text(encoding="utf-8"))["gpu"]
    return tuple(_row_to_spec(row) for row in rows)


def _row_to_spec(row: dict[str, Any]) -> GpuSpec:
    return GpuSpec(
        model=row["model"],
        kind=row.get("kind", "cuda"),
        memory_gb=tuple(float(m) for m in row["memory_gb"]),
        bandwidth_gbs=float(row["bandwidth_gbs"]),
        tflops={d: float(row[f"{d}_tflops"]) for d in _DTYPES if f"{d}_tflops" in row},
        source=row["source"],
        aliases=tuple(row.get("aliases", ())),
        cpu_cores=row.get("cpu_cores"),
    )


def known_names() -> list[str]:
    """Every model name with its memory sizes, e.g. "A100 SXM 80GB" (for help and error hints)."""
    names: list[str] = []
    for spec in load_table():
        names += [f"{spec.model} {m:g}GB" for m in spec.memory_gb if f"{spec.model} {m:g}GB" not in names]
    return names


def _close_names(query: str) -> str:
    keys: dict[str, str] = {}
    for spec in load_table():
        for name in (spec.model, *spec.aliases):
            keys.setdefault(normalize(name), spec.model)
    hits = difflib.get_close_matches(normalize(query), list(keys), n=4, cutoff=0.5)
    models = list(dict.fromkeys(keys[h] for h in hits))
    return ", ".join(models) if models else ", ".join(s.model for s in load_table()[:6]) + ", ..."


def find_gpu(model: str, memory_gb: float | None = None) -> GpuChoice:
    """The table row named `model` (with `memory_gb` when given); unknown -> SizerError."""
    key = normalize(model)
    rows = [s for s in load_table() if key in {normalize(n) for n in (s.model, *s.aliases)}]
    if not rows:
        raise SizerError(f"unknown GPU {model!r}; close names: {_close_names(model)} (see `sizer hw --list`)")
    if memory_gb is None:
        return GpuChoice(rows[0], rows[0].memory_gb[0])
    for spec in rows:
        for size in spec.memory_gb:
            if abs(size - memory_gb) < 0.5:
                return GpuChoice(spec, size)
    sold = sorted({m for s in rows for m in s.memory_gb})
    raise SizerError(
        f"{rows[0].model} does not come with {memory_gb:g} GB; sizes: "
        + ", ".join(f"{m:g}GB" for m in sold)
    )


# ---------------------------------------------------------------------------------- profile names

# a size stands alone ("A10G" is a model, not 10 GB); a leading "-" is kept to reject it
_MEMORY = re.compile(r"(?:(?<=\s)|^)(-?\d+(?:\.\d+)?)\s*(?:gb|gib|g)\b", re.I)
_COUNT = re.compile(r"^\s*(-?\d+)\s*[x×*]\s*(?=\S)", re.I)
_CPU = re.compile(r"^\s*(-?\d+)\s*(?:v?cpus?|cores?|threads?)\s*$", re.I)


def parse_machine(spec: str) -> MachineSpec:
    """A profile name or a TOML file path -> MachineSpec. Bad input -> SizerError (one line)."""
    text = spec.strip()
    if not text:
        raise SizerError("empty --profile; give a name like '1x H100 80GB' or a TOML file")
    path = Path(text).expanduser()
    if path.is_file() or text.lower().endswith(".toml"):
        return _parse_file(path)
    machine = MachineSpec(name=text)
    for part in re.split(r"[+,]", text):
        machine = _add_part(machine, part.strip(), text)
    _check_apple(machine)
    return machine


def _add_part(machine: MachineSpec, part: str, whole: str) -> MachineSpec:
    if not part:
        raise SizerError(f"profile {whole!r} has an empty part; join parts with '+'")
    memory, rest = _take_memory(part)
    cpu = _CPU.match(rest)
    if cpu:
        cores = _positive_int(cpu.group(1), f"CPU cores in {part!r}")
        if memory is not None and memory <= 0:
            raise SizerError(f"RAM must be positive in profile part {part!r}")
        return _replace(machine, cpu_cores=cores, ram_gb=memory)
    count, model = _take_count(rest, part)
    if memory is not None and memory <= 0:
        raise SizerError(f"GPU memory must be positive in profile part {part!r}")
    choice = find_gpu(model, memory)
    return _replace(machine, gpus=machine.gpus + (GpuChoice(choice.spec, choice.memory_gb, count),))


def _take_memory(part: str) -> tuple[float | None, str]:
    found = _MEMORY.findall(part)
    if len(found) > 1:
        raise SizerError(f"profile part {part!r} gives more than one memory size")
    rest = _MEMORY.sub(" ", part).strip()
    return (float(found[0]) if found else None), rest


def _take_count(text: str, part: str) -> tuple[int, str]:
    match = _COUNT.match(text)
    if not match:
        return 1, text.strip()
    count = int(match.group(1))
    if not 1 <= count <= MAX_GPUS:
        raise SizerError(f"GPU count in {part!r} must be 1 to {MAX_GPUS} (one machine)")
    return count, text[match.end():].strip()


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SizerError(f"{what} must be a positive whole number, got {value!r}")
    return value


def _replace(machine: MachineSpec, **changes: Any) -> MachineSpec:
    return MachineSpec(**{**machine.__dict__, **changes})


def _check_apple(machine: MachineSpec) -> None:
    apple = [g for g in machine.gpus if g.spec.kind == "mps"]
    if not apple:
        return
    if len(machine.gpus) > 1 or apple[0].count != 1:
        raise SizerError(f"profile {machine.name!r}: Apple silicon is one chip per machine, with no other GPU")
    if machine.ram_gb is not None and abs(machine.ram_gb - apple[0].memory_gb) >= 0.5:
        raise SizerError(f"profile {machine.name!r}: an Apple chip's memory is the machine's RAM; give it once")


# ---------------------------------------------------------------------------------- TOML files


def _parse_file(path: Path) -> MachineSpec:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SizerError(f"{path}: no such profile file; give a TOML file that exists or a name like '1x H100 80GB'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SizerError(f"{path}: cannot read profile file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r" \(at line (\d+), column \d+\)", str(exc))
        where = f"{path}:{found.group(1)}" if found else str(path)
        reason = str(exc)[: found.start()] if found else str(exc)
        raise SizerError(f"{where}: invalid TOML: {reason}; fix the TOML syntax on that line") from None
    unknown = set(data) - {"name", "cpu", "gpu"}
    if unknown:
        raise SizerError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; expected name, [cpu], [[gpu]]")
    cpu = _file_cpu(path, data.get("cpu", {}))
    rows = data.get("gpu", [])
    if not isinstance(rows, list):
        raise SizerError(f"{path}: [[gpu]]: gpu = {rows!r} is not a list of tables; write one [[gpu]] table per GPU model")
    gpus = tuple(_file_gpu(path, i, row) for i, row in enumerate(rows, start=1))
    machine = MachineSpec(name=str(data.get("name", path.stem)), gpus=gpus, **cpu)
    _check_apple(machine)
    return machine


def _file_cpu(path: Path, cpu: Any) -> dict[str, Any]:
    if not isinstance(cpu, dict):
        raise SizerError(f"{path}: [cpu] must be a table")
    allowed = {"cores", "ram_gb", "bandwidth_gbs", "fp32_gflops", "bf16_gflops"}
    if set(cpu) - allowed:
        raise SizerError(f"{path}: [cpu] unknown key(s) {', '.join(sorted(set(cpu) - allowed))}")
    out: dict[str, Any] = {"cpu_figures": {}}
    if "cores" in cpu:
        out["cpu_cores"] = _positive_int(cpu["cores"], f"{path}: [cpu] cores")
    if "ram_gb" in cpu:
        out["ram_gb"] = _positive_number(cpu["ram_gb"], f"{path}: [cpu] ram_gb")
    for key in ("bandwidth_gbs", "fp32_gflops", "bf16_gflops"):
        if key in cpu:
            out["cpu_figures"][key] = _positive_number(cpu[key], f"{path}: [cpu] {key}")
    return out


def _file_gpu(path: Path, i: int, row: Any) -> GpuChoice:
    where = f"{path}: [[gpu]] #{i}"
    if not isinstance(row, dict):
        raise SizerError(f"{where} must be a table")
    count = _positive_int(row.get("count", 1), f"{where} count")
    if count > MAX_GPUS:
        raise SizerError(f"{where} count must be 1 to {MAX_GPUS} (one machine)")
    if "model" in row:
        if set(row) - {"model", "count"}:
            raise SizerError(f"{where}: give either model (a table name) or name with its figures, not both")
        try:
            memory, model = _take_memory(str(row["model"]))
            choice = find_gpu(model, memory)
        except SizerError as exc:
            raise SizerError(f"{where} model: {exc}") from None
        return GpuChoice(choice.spec, choice.memory_gb, count)
    return GpuChoice(_custom_spec(where, row), _positive_number(row.get("memory_gb"), f"{where} memory_gb"), count)


def _custom_spec(where: str, row: dict[str, Any]) -> GpuSpec:
    allowed = {"name", "memory_gb", "bandwidth_gbs", "kind", "count"} | {f"{d}_tflops" for d in _DTYPES}
    if set(row) - allowed:
        raise SizerError(f"{where}: unknown key(s) {', '.join(sorted(set(row) - allowed))}")
    if not isinstance(row.get("name"), str) or not row["name"].strip():
        raise SizerError(f"{where}: give model = \"<table name>\" or name = \"...\" with memory_gb and figures")
    tflops = {d: _positive_number(row[f"{d}_tflops"], f"{where} {d}_tflops") for d in _DTYPES if f"{d}_tflops" in row}
    if not tflops:
        raise SizerError(f"{where}: give at least one of bf16_tflops, fp16_tflops, fp32_tflops")
    kind = row.get("kind", "cuda")
    if kind not in ("cuda", "rocm", "mps"):
        raise SizerError(f"{where} kind must be cuda, rocm or mps, got {kind!r}")
    memory = _positive_number(row.get("memory_gb"), f"{where} memory_gb")
    bandwidth = _positive_number(row.get("bandwidth_gbs"), f"{where} bandwidth_gbs")
    return GpuSpec(row["name"], kind, (memory,), bandwidth, tflops, source=where.split(": ")[0])


def _positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise SizerError(f"{what} must be a positive number, got {value!r}")
    return float(value)


_REPORTED_MEMORY = re.compile(r"\d+\s*(?:gb|gib)\b", re.I)


def match_device_name(name: str, total_gb: float | None = None) -> GpuChoice | None:
    """The table row for a name a driver reports (e.g. "NVIDIA A100-SXM4-80GB"), or None.

    The name without vendor words and its memory size must equal a table name or alias: a
    "GeForce RTX 4070 Ti SUPER" is not the "RTX 4070 Ti" row, and a model the table lacks gets no
    datasheet figures rather than a near miss's. Memory picks among a model's variants.
    """
    key = normalize(_REPORTED_MEMORY.sub(" ", name))
    rows = [spec for spec in load_table() if key in {normalize(n) for n in (spec.model, *spec.aliases)}]
    if not key or not rows:
        return None
    sizes = [(abs(m - (total_gb or m)), spec, m) for spec in rows for m in spec.memory_gb]
    _, spec, memory = min(sizes, key=lambda item: item[0])
    return GpuChoice(spec, memory)
