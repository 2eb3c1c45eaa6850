"""What the screens ask of the core: the candidate list for a profile, and one ladder walk over the
chosen models and strategies (`sizer.core.decide.walk.walk`, which also makes the decision). No trial
logic lives here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from sizer.core import events
from sizer.core.catalog.model_catalog import Catalog, ModelEntry
from sizer.core.estimate.experts import shipped_weight_bytes
from sizer.core.estimate.memory import weights_term
from sizer.core.estimate.params import checkpoint_float
from sizer.core.hardware.devices import HardwareProfile
from sizer.core.estimate.planning import plan_estimate
from sizer.core.quant.precision import parse_precision
from sizer.core.decide.walk import walk
from sizer.core.decide.types import RunResult, RunSpec
from sizer.core.errors import TrialCancelled



@dataclass(frozen=True)
class CandidateRow:
    """One catalog model as the Candidates screen shows it."""

    entry: ModelEntry
    fit: str
    need_bytes: int
    decode_tps: float | None
    cached: bool
    download_bytes: int


@dataclass(frozen=True)
class TrialRow:
    """One finished (or failed) trial as the Results screen shows it."""

    model: str
    params: int
    strategy: str
    status: str
    metric: float | None = None
    low: float | None = None
    high: float | None = None
    examples_per_s: float | None = None
    peak_bytes: int | None = None
    reason: str = ""


def candidate_rows(catalog: Catalog, profile: HardwareProfile, engine: str | None = None) -> list[CandidateRow]:
    """Every catalog model with fit level, memory and decode speed on `profile`, largest first,
    as `engine` would serve it (sizer.core.estimate.planning's policy; None: the default engine)."""
    rows = []
    for entry in sorted(catalog.entries, key=lambda e: -e.params):
        if engine == "vllm" and entry.kind == "encoder":
            continue
        report = plan_estimate(entry, profile, engine)
        need = max((s.need_bytes for s in report.shares), default=min(f.need_bytes for f in report.devices))
        decode = report.speed.decode_tps if report.speed else None
        shipped = shipped_weight_bytes(entry)  # a pre-quantized checkpoint downloads packed
        download = shipped[0] if shipped else weights_term(entry, parse_precision(checkpoint_float(entry))).bytes
        rows.append(CandidateRow(entry, report.level, need, decode, catalog.is_cached(entry), download))
    return rows


def row_from_result(result: Any, params: int) -> TrialRow:
    m = result.metric
    return TrialRow(result.model, params, result.strategy, result.status, m.value, m.low, m.high,
                    result.speed.get("examples_per_s"), result.memory.get("peak_bytes"))


def row_from_outcome(outcome: Any) -> TrialRow:
    model = outcome.model + (f" {outcome.quant}" if getattr(outcome, "quant", "") else "")  # a quantization rung
    if outcome.result is not None:
        row = row_from_result(outcome.result, outcome.params)
        return TrialRow(**{**row.__dict__, "model": model, "status": outcome.status, "reason": outcome.reason})
    return TrialRow(model, outcome.params, outcome.strategy, outcome.status, reason=outcome.reason)


def run(spec: RunSpec, catalog: Catalog, sink: events.Sink, cancel: threading.Event,
        on_trial: Callable[[TrialRow], None], here: HardwareProfile | None = None,
        skip: threading.Event | None = None) -> RunResult | None:
    """Walk the ladder (`here`: this machine, None to detect); `on_trial` sees each trial as it
    ends. A cancelled run returns what it walked (`finished` False), or None when it was cancelled
    before its first trial."""
    seen = 0

    def tee(event: events.Event) -> None:
        nonlocal seen
        if not isinstance(event, events.RunUpdated):
            return sink(event)
        for t in event.run.trials[seen:]:
            on_trial(row_from_outcome(t))
        seen = len(event.run.trials)

    try:
        return walk(spec, sink=tee, cancel=cancel, catalog=catalog, here=here, skip=skip)
    except TrialCancelled as exc:
        return exc.run
