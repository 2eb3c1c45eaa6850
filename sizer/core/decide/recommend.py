"""The decision and its reasons: the smallest model that meets the target with confidence, with the
cheapest adaptation that gets it there; when none does, what would help most."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sizer.core.decide import verdict
from sizer.core.estimate.planning import plan_estimate


@dataclass
class Recommendation:
    met: bool
    target: str
    model: str = ""
    params: int = 0
    strategy: str = ""
    precision: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    metric: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)
    on_profile: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    engine: str = ""             # the engine that serves it: llama.cpp (GGUF), vllm, sentence-transformers
    quant: str = ""              # llama.cpp file type of the GGUF file served ("" for safetensors)
    file: str = ""               # the GGUF file
    on_engine: dict[str, Any] = field(default_factory=dict)  # estimate on that engine and precision, this machine
    serve: list[str] = field(default_factory=list)           # shell lines that serve it
    modelfile: str = ""          # Ollama Modelfile text (GGUF)
    python: str = ""             # Python that loads it (encoders)
    rungs: list[dict[str, Any]] = field(default_factory=list)  # sizer.core.quant.rungs.RungResult of the pick's model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def short(model: str) -> str:
    return model.split("/")[-1]


def trial_line(outcome: Any, spec: Any, reference: Any, bar: float | None) -> str:
    """One plain sentence per trial, e.g. "Qwen2.5-0.5B few-shot: 0.61 (0.52-0.70), below the 0.85 target"."""
    quant = getattr(outcome, "quant", "")
    name = f"{short(outcome.model)}{' ' + quant if quant else ''} {outcome.strategy}"
    if outcome.result is None:
        return f"{name}: {outcome.status} - {outcome.reason}"
    m = outcome.result.metric
    figure = f"{m.name} {m.value:.2f} ({m.low:.2f}-{m.high:.2f}, n={m.n})"
    if outcome.status == "stopped-early":
        return f"{name}: {figure}, stopped early - its upper bound is below the {verdict.target_text(spec)}"
    if outcome is reference and verdict.absolute_bar(spec) is None:
        return f"{name}: {figure}, the reference (largest model, best strategy)"
    ok = verdict.meets(spec, outcome, reference, bar)
    return f"{name}: {figure}, {'meets' if ok else 'below'} the {verdict.target_text(spec)}"


def decide(run: Any, reference: Any, bar: float | None) -> Recommendation:
    spec = run.spec
    order = {s: i for i, s in enumerate(spec.strategies)}
    meeting = [t for t in run.trials if not getattr(t, "quant", "") and verdict.meets(spec, t, reference, bar)]
    reasons = [trial_line(t, spec, reference, bar) for t in run.trials]
    rung_rows = [r.to_dict() for r in getattr(run, "rungs", [])]
    reasons += [rung_line(r) for r in rung_rows]
    if not meeting:
        return Recommendation(False, verdict.target_text(spec), reasons=reasons, next_steps=_levers(run, reference),
                              rungs=rung_rows)
    chosen = min(meeting, key=lambda t: (t.params, order.get(t.strategy, 99)))
    picked = _kept_rung_outcome(run, chosen)
    result = picked.result
    rec = Recommendation(
        met=True, target=verdict.target_text(spec), model=chosen.model, params=chosen.params,
        strategy=chosen.strategy, precision=result.settings.get("dtype", ""), settings=result.settings,
        metric=result.metric.as_dict(), memory=result.memory, speed=result.speed, reasons=reasons,
    )
    rec.reasons.append(_summary(chosen, run, spec))
    rec.rungs = [r for r in rung_rows if r["model"] == chosen.model]
    _engine_and_serve(rec, run, chosen, picked)
    rec.on_profile = _on_profile(run, chosen, spec.profile, rec) if spec.profile else {}
    rec.next_steps = _next_steps(rec, run) + more_examples_steps(run, chosen, picked)
    return rec


def rung_line(r: dict[str, Any]) -> str:
    """One plain sentence per quantization rung: metric, loss against the best precision, file size."""
    name = f"{short(r['model'])} {r['quant']}"
    size = f"{r['file_bytes'] / 1e6:.0f} MB file" if r.get("file_bytes") else "file size unknown"
    if r.get("best"):
        m = r["metric"]
        return f"{name}: {m['name']} {m['value']:.2f}, {size}, the highest precision tried (the rungs' yardstick)"
    if not r.get("metric"):
        return f"{name}: {r['status']} - {r.get('reason', '')}, {size}"
    m = r["metric"]
    bound = f", paired 95% bound {r['loss_bound']:+.3f}" if r.get("loss_bound") is not None else ""
    verdict_text = "kept" if r.get("kept") else "not kept"
    return (f"{name}: {m['name']} {m['value']:.2f} ({m['low']:.2f}-{m['high']:.2f}), loss {r['loss']:+.3f} against the "
            f"best precision{bound}, {size}: {verdict_text}")


def _kept_rung_outcome(run: Any, chosen: Any) -> Any:
    """The trial of the lowest-bit rung kept for the chosen model and strategy, else the chosen trial."""
    from sizer.core.quant.rungs import RungResult, kept_rung

    rows = [r for r in getattr(run, "rungs", []) if isinstance(r, RungResult) and r.model == chosen.model]
    kept = kept_rung(rows)
    if kept is None:
        return chosen
    return next((t for t in run.trials if t.model == chosen.model and t.strategy == chosen.strategy
                 and getattr(t, "quant", "") == kept.quant and t.result is not None), chosen)


def _engine_and_serve(rec: Recommendation, run: Any, chosen: Any, picked: Any) -> None:
    """Name the serving engine and quantization, estimate it on this machine, and write its command."""
    from sizer.core.quant.rungs import base_quant
    from sizer.core.engines.serve_command import serve_plan

    entry = next(c.entry for c in run.candidates if c.entry.id == chosen.model)
    quant = getattr(picked, "quant", "") or _gguf_quant(picked.result)
    path = _gguf_path(entry, quant, rec.rungs) if quant else None
    if quant and path is None:
        quant = ""
    plan = serve_plan(entry, run.spec.task, picked.result.settings, quant, path)
    rec.engine, rec.quant, rec.file = plan.engine, quant, str(path or "")
    rec.serve, rec.modelfile, rec.python = plan.commands, plan.modelfile, plan.python
    rec.precision = quant or base_quant(picked.result)
    rec.on_engine = _estimate_dict(entry, run.here, quant)


def _gguf_quant(result: Any) -> str:
    from sizer.core.quant.gguf_types import FILE_TYPES
    from sizer.core.quant.rungs import base_quant

    quant = base_quant(result)
    return quant if quant in FILE_TYPES and quant not in ("F32",) and (result.revision or "").endswith(".gguf") else ""


def _gguf_path(entry: Any, quant: str, rungs: list[dict[str, Any]]) -> Any:
    from pathlib import Path

    from sizer.core.quant.rungs import ladder

    row = next((r for r in rungs if r["quant"] == quant and r.get("path")), None)
    if row is not None:
        return Path(row["path"])
    return next((r.path for r in ladder(entry, make=False) if r.quant == quant), None)


def _estimate_dict(entry: Any, profile: Any, quant: str, dtype: str = "") -> dict[str, Any]:
    """plan_estimate of `entry` on `profile` under llama.cpp at `quant`, else transformers at `dtype`."""
    from sizer.core.errors import SizerError

    try:
        report = plan_estimate(entry, profile, "llama.cpp" if quant else "transformers", quant or dtype or None)
    except SizerError as exc:
        return {"engine": "llama.cpp" if quant else "transformers", "error": str(exc)}
    out: dict[str, Any] = {"engine": report.engine, "dtype": report.precision.name, "fit": report.level,
                           "where": report.where,
                           "predicted_bytes": max((s.need_bytes for s in report.shares),
                                                  default=max(m.total_bytes for m in report.memory.values()))}
    if report.speed:
        out["prefill_tokens_per_s"] = report.speed.prefill_tps
        out["decode_tokens_per_s"] = report.speed.decode_tps
    return out


def more_examples_steps(run: Any, chosen: Any, picked: Any) -> list[str]:
    """When the pick and the next smaller candidate (or the next lower rung) cannot be told apart
    on the shared test examples, how many examples would (sizer.core.decide.sample_size)."""
    from sizer.core.decide.sample_size import paired_gap

    steps = []
    smaller = [t for t in run.trials if t.kind == chosen.kind and t.params < chosen.params and not getattr(t, "quant", "")
               and t.status in ("ok", "stopped-early") and t.correct]
    by_size = max(smaller, key=lambda t: (t.params, t.result.metric.value if t.result else 0), default=None)
    pick_quant = getattr(picked, "quant", "")
    rung_trials = [t for t in run.trials if t.model == chosen.model and t.strategy == chosen.strategy
                   and getattr(t, "quant", "") and t is not picked and t.correct]
    lower = None
    if rung_trials:
        order = [r["quant"] for r in getattr_rungs(run, chosen.model)]
        after = order[order.index(pick_quant) + 1:] if pick_quant in order else order[1:]
        lower = next((t for q in after for t in rung_trials if t.quant == q), None)
    for other, what in ((by_size, "the next smaller candidate"), (lower, "the next lower quantization")):
        if other is None:
            continue
        gap = paired_gap(picked.correct, other.correct)
        if gap is None or gap.separated:
            continue
        name = f"{short(other.model)}{' ' + other.quant if getattr(other, 'quant', '') else ''} {other.strategy}"
        if gap.needed is None:
            steps.append(f"{name} ({what}) scored the same as the pick on all {gap.n} shared test examples: "
                         "no number of examples is expected to separate them.")
        else:
            more = max(gap.needed - gap.n, 0)
            steps.append(f"The interval cannot yet separate the pick from {name} ({what}): difference {gap.delta:+.3f} "
                         f"± {gap.half_width:.3f} on {gap.n} shared examples; about {gap.needed} test examples "
                         f"({more} more) would, at 80% power (McNemar, Connor 1987).")
    return steps


def getattr_rungs(run: Any, model: str) -> list[dict[str, Any]]:
    return [r.to_dict() for r in getattr(run, "rungs", []) if r.model == model]


def _summary(chosen: Any, run: Any, spec: Any) -> str:
    m = chosen.result.metric
    smaller = [c for c in run.candidates if c.usable and c.entry.params < chosen.params and c.entry.kind == chosen.kind]
    text = (f"{short(chosen.model)} with {chosen.strategy} is the smallest model that meets the "
            f"{verdict.target_text(spec)} with 95% confidence ({m.name} {m.value:.2f}, interval {m.low:.2f}-{m.high:.2f}).")
    if smaller:
        text += f" Smaller {chosen.kind} models here fell short or were not needed to test: {', '.join(short(c.entry.id) for c in smaller)}."
    return text


def _on_profile(run: Any, chosen: Any, profile: Any, rec: Recommendation) -> dict[str, Any]:
    """The estimate on the --profile machine, for the engine and quantization recommended."""
    entry = next(c.entry for c in run.candidates if c.entry.id == chosen.model)
    dtype = chosen.result.settings.get("dtype", "fp32")
    return {"profile": profile.name, **_estimate_dict(entry, profile, rec.quant, dtype)}


def _next_steps(rec: Recommendation, run: Any) -> list[str]:
    steps = []
    spec = run.spec
    detail = ", ".join(f"{k}={v}" for k, v in rec.settings.items() if k in ("shots_per_label", "shots", "top_k", "rank"))
    steps.append(f"Use {rec.model} ({rec.precision}) with {rec.strategy}" + (f" ({detail})" if detail else "") + ".")
    if rec.settings.get("adapter_path"):
        steps.append(f"Keep the adapter saved at {rec.settings['adapter_path']}.")
    if spec.limit is not None:
        steps.append("The decision used a --limit subset of the test split; rerun without --limit to confirm it.")
    if rec.metric and rec.metric["high"] - rec.metric["low"] > 0.15:
        steps.append("The interval is wide: more labelled test examples would narrow it.")
    return steps


def _levers(run: Any, reference: Any) -> list[str]:
    """When nothing meets the target: the most promising levers, most likely first."""
    spec = run.spec
    tried = {t.strategy for t in run.trials}
    steps = []
    for t in run.trials:
        curve = t.result.settings.get("learning_curve") if t.result else None
        words = curve.get("estimate", {}).get("words") if isinstance(curve, dict) else None
        if words:
            steps.append(f"{short(t.model)} {t.strategy}, learning curve: {words}")
    if "fine-tune" not in tried:
        steps.append("Fine-tune: labelled examples usually move small models most; add fine-tune to the strategies.")
    if spec.task.kind != "classify" and not spec.task.documents:
        steps.append("Add documents the answers come from (task `documents`) so retrieval (RAG) can supply the facts.")
    too_big = [c for c in run.candidates if c.fit == "no"]
    if reference is None or not verdict.meets(spec, reference, reference, verdict.absolute_bar(spec)):
        where = f" ({', '.join(short(c.entry.id) for c in too_big[:3])} do not fit here)" if too_big else ""
        steps.append("A bigger model than fits here" + where + ": plan with `sizer fit --all --profile \"1x H100 80GB\"` "
                     "or trial one on a serving engine.")
    return steps
