"""Quantization rungs: one model's GGUF files from the most bytes to the fewest, and the walk down them.

After the size walk picks a model, its quantizations are tried on the same test examples with the
same strategy, largest file first, and the lowest-bit rung that still meets the target is kept:
it must meet the run's target as a size does (sizer.core.decide.verdict.meets) and be non-inferior to the
best precision tried, paired on the same examples (95% lower bound of rung - best above -margin,
the margin being the task's `within`, else RUNG_MARGIN).

Rungs come from the files the catalog entry lists (`entry.gguf`: an installed package's file, or a
Hub repo's file already in the Hugging Face cache) and from lower quantizations made here from the
highest-precision of those files with llama.cpp's quantizer (`llama_model_quantize` with
`allow_requantize`, what `llama-quantize --allow-requantize` runs), written once under
`cache_dir()/quantized/`. Rungs are ordered by file size (bytes), not by name: a small model's
rows that K-quants cannot split into 256-weight blocks fall back to legacy types, so a "Q3_K_M"
file can be larger than a Q4_0 one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizer.core import events
from sizer.core.catalog.from_config import quant_of
from sizer.core.catalog.entry import ModelEntry
from sizer.core.errors import SizerError
from sizer.core.paths import cache_dir
from sizer.core.catalog.resolve import LocalModel, package_dir

# Lower quantizations made from a published file when the catalog offers none below it. Both use
# 32-weight blocks where a row is too short for K-quant blocks, so they work on any model without
# an importance matrix (the IQ types need one).
MADE_QUANTS = ("Q4_0", "Q2_K")
RUNG_MARGIN = 0.03  # largest loss against the best precision a rung may show (paired, 95%) under an absolute target


@dataclass(frozen=True)
class Rung:
    """One GGUF file of a model: its llama.cpp file type, where it is, its size in bytes and whether
    sizer made it here from a higher-precision file."""

    quant: str
    path: Path
    bytes: int
    made: bool = False

    def local(self) -> LocalModel:
        return LocalModel(self.path.parent, gguf_file=self.path.name, revision=f"{self.path.name}:{self.bytes}")


def published(entry: ModelEntry) -> list[Rung]:
    """The GGUF files the catalog entry lists that are on this machine (nothing is downloaded)."""
    out = []
    for repo in entry.gguf:
        for quant, name in repo.files.items():
            path = _published_path(repo.repo, name)
            if path is not None and path.is_file():
                out.append(Rung(quant.upper(), path, path.stat().st_size))
    return out


def _published_path(repo: str, name: str) -> Path | None:
    if repo.startswith("package:"):
        folder = package_dir(repo.split(":", 1)[1])
        return folder / name if folder else None
    from huggingface_hub import try_to_load_from_cache

    from sizer.core.paths import hf_cache_dir

    hit = try_to_load_from_cache(repo, name, cache_dir=hf_cache_dir())
    return Path(hit) if isinstance(hit, str) else None


def made_dir(entry: ModelEntry) -> Path:
    """Where the rungs made from `entry`'s files live: cache_dir()/quantized/<model id, path-safe>/."""
    return cache_dir() / "quantized" / re.sub(r"[^A-Za-z0-9._-]+", "--", entry.id)


def _made_path(entry: ModelEntry, quant: str) -> Path:
    return made_dir(entry) / f"{entry.short_name}.{quant}.gguf"


def made(entry: ModelEntry) -> list[Rung]:
    """The rungs made earlier for `entry` (present in the cache)."""
    out = []
    for quant in MADE_QUANTS:
        path = _made_path(entry, quant)
        if path.is_file():
            out.append(Rung(quant, path, path.stat().st_size, made=True))
    return out


def quantize(source: Path, out: Path, quant: str, threads: int = 2) -> None:
    """llama.cpp's quantizer, `source` -> `out` at file type `quant`, requantizing a quantized
    source. Written to a temporary name and renamed, so an interrupted run leaves no half file."""
    try:
        import llama_cpp
    except ImportError:
        raise SizerError("making quantization rungs needs llama-cpp-python: pip install llama-cpp-python") from None
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}", None)
    if ftype is None:
        raise SizerError(f"{quant}: llama.cpp's quantizer has no such file type")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = ftype, threads, True
    if llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params) != 0:
        tmp.unlink(missing_ok=True)
        raise SizerError(f"{source}: llama.cpp could not quantize it to {quant}")
    os.replace(tmp, out)


def ladder(entry: ModelEntry, make: bool = True) -> list[Rung]:
    """The model's rungs, most bytes first (one per file type). With `make`, when the catalog's
    files on this machine offer only one, the MADE_QUANTS are made from it first (once; later runs
    find them)."""
    found = published(entry)
    if make and len(found) == 1:
        best = max(found, key=lambda r: r.bytes)
        have = {r.quant for r in found} | {r.quant for r in made(entry)}
        for quant in MADE_QUANTS:
            if quant not in have:
                quantize(best.path, _made_path(entry, quant), quant)
    by_quant: dict[str, Rung] = {}
    for rung in found + made(entry):
        by_quant.setdefault(rung.quant, rung)
    return sorted(by_quant.values(), key=lambda r: -r.bytes)


def locate_quant(entry: ModelEntry, quant: str) -> LocalModel:
    """The local GGUF file of `entry` at `quant` (a published or made rung), or a one-line error."""
    for rung in ladder(entry, make=False):
        if rung.quant == quant.upper():
            return rung.local()
    raise SizerError(f"{entry.id}: no {quant} GGUF file on this machine; "
                     f"`sizer download {entry.id} --quant {quant}` fetches a published one")


def base_quant(result: Any) -> str:
    """The file type a finished trial ran: its `quant` setting, else the GGUF file it loaded
    (recorded in its revision), else its float dtype."""
    settings = result.settings if result is not None else {}
    if settings.get("quant"):
        return settings["quant"]
    revision = (result.revision or "") if result is not None else ""
    return quant_of(revision) or str(settings.get("dtype", ""))


@dataclass
class RungResult:
    """One rung's verdict: metric, loss against the best precision (point and the paired 95% bound
    of rung - best), memory (file bytes, llama.cpp estimate, measured peak) and whether it is kept."""

    model: str
    quant: str
    status: str
    file_bytes: int = 0
    made: bool = False
    path: str = ""
    metric: dict[str, Any] = dataclasses.field(default_factory=dict)
    loss: float | None = None
    loss_bound: float | None = None       # 95% upper bound of the loss (best - rung), paired
    kept: bool = False
    best: bool = False                    # the highest precision tried (the yardstick)
    llamacpp_bytes: int | None = None     # estimated peak under llama.cpp at this file type, this machine
    peak_bytes: int | None = None         # measured peak of the trial (transformers de-quantizes: fp32 here)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rung_margin(spec: Any) -> float:
    return spec.task.target.within or RUNG_MARGIN


def judge(walker: Any, outcome: Any, best: Any) -> tuple[bool, float | None, float | None]:
    """(kept, loss, loss_bound) of a rung's outcome against the best precision's."""
    from sizer.core.decide import verdict

    if outcome.status not in ("ok", "stopped-early") or outcome.result is None:
        return False, None, None
    shared = set(outcome.correct) & set(best.correct)
    if shared:  # on the examples both scored (a trial stopped early scored the first of the same order)
        loss = sum(best.correct[i] - outcome.correct[i] for i in shared) / len(shared)
    else:
        loss = best.result.metric.value - outcome.result.metric.value
    loss = round(loss, 4)
    lower = verdict.paired_lower_bound(outcome.correct, best.correct)
    bound = None if lower is None else round(-lower, 4)
    kept = walker.meets(outcome) and bound is not None and bound <= rung_margin(walker.spec)
    return kept, loss, bound


def _estimate(entry: ModelEntry, here: Any, quant: str) -> int | None:
    from sizer.core.estimate.planning import plan_estimate

    try:
        report = plan_estimate(entry, here, "llama.cpp", quant)
    except SizerError:
        return None
    return max((s.need_bytes for s in report.shares), default=max(m.total_bytes for m in report.memory.values()))


def _labelled(sink: events.Sink, quant: str) -> events.Sink:
    """The sink with the rung named beside the model in trial events, so rung trials show apart."""
    def relay(event: events.Event) -> None:
        model = getattr(event, "model", None)
        sink(dataclasses.replace(event, model=f"{model} {quant}") if isinstance(model, str) else event)
    return relay


def _trial_seconds(outcome: Any) -> float:
    speed = outcome.result.speed if outcome.result is not None else {}
    return float(speed.get("load_s", 0)) + float(speed.get("seconds", 0)) + float(outcome.result.settings.get("train_seconds", 0))


def walk_rungs(walker: Any, base: Any, make: bool = True) -> list[RungResult]:
    """Walk `base`'s model down its quantization rungs (same strategy, same examples); stop at the
    first rung not kept (meeting the target is taken as monotone in bits, as in size). When the base
    itself falls short of the target, every rung is measured (nothing can be kept; the losses are
    what quantization costs this model on the task). Rungs are
    skipped, with the reason, when the run's time left is under the base trial's own duration."""
    cand = next(c for c in walker.run.candidates if c.entry.id == base.model and c.where == base.where)
    entry = cand.entry
    try:
        rungs = ladder(entry, make=make)
    except SizerError as exc:
        walker.sink(events.Message(f"{entry.id}: no quantization rungs - {exc}", "warning"))
        return []
    top = base_quant(base.result)
    sizes = {r.quant: r.bytes for r in rungs}
    below = [r for r in rungs if r.quant != top and (top not in sizes or r.bytes < sizes[top])]
    if not below:
        return []
    here = walker.run.here
    top_rung = next((r for r in rungs if r.quant == top), None)
    out = [RungResult(entry.id, top, base.status, top_rung.bytes if top_rung else 0, False,
                      str(top_rung.path) if top_rung else "", base.result.metric.as_dict(), 0.0, 0.0,
                      base.status == "ok" and walker.meets(base), True, _estimate(entry, here, top) if top_rung else None,
                      base.result.memory.get("peak_bytes"), "the highest precision tried")]
    stop = ""
    for rung in below:
        row = RungResult(entry.id, rung.quant, "skipped", rung.bytes, rung.made, str(rung.path),
                         llamacpp_bytes=_estimate(entry, here, rung.quant))
        if stop:
            row.reason = stop
        elif walker.deadline - time.monotonic() < _trial_seconds(base):
            row.reason = stop = "the run's time budget is too short for another rung"
        else:
            outcome = walker.trial(cand, base.strategy, quant=rung.quant, sink=_labelled(walker.sink, rung.quant))
            row.status, row.reason = outcome.status, outcome.reason
            row.kept, row.loss, row.loss_bound = judge(walker, outcome, base)
            if outcome.result is not None:
                row.metric = outcome.result.metric.as_dict()
                row.peak_bytes = outcome.result.memory.get("peak_bytes")
            if not row.kept and out[0].kept:
                stop = f"a higher rung ({rung.quant}) already fell short"
        if row.status == "skipped":
            walker.sink(events.TrialFinished(f"{entry.id} {rung.quant}", base.strategy, "skipped", reason=row.reason))
        out.append(row)
    return out


def kept_rung(rungs: list[RungResult]) -> RungResult | None:
    """The lowest-bit rung kept (None when none below the best precision was)."""
    kept = [r for r in rungs if r.kept and not r.best]
    return kept[-1] if kept else None


