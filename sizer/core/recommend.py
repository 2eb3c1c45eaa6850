"""The decision and its reasons: the smallest model that meets the target with confidence, with the
cheapest adaptation that gets it there; when none does, what would help most."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sizer.core import verdict
from sizer.core.planning import plan_estimate


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def short(model: str) -> str:
    return model.split("/")[-1]


def trial_line(outcome: Any, spec: Any, reference: Any, bar: float | None) -> str:
    """One plain sentence per trial, e.g. "Qwen2.5-0.5B few-shot: 0.61 (0.52-0.70), below the 0.85 target"."""
    name = f"{short(outcome.model)} {outcome.strategy}"
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
    meeting = [t for t in run.trials if verdict.meets(spec, t, reference, bar)]
    reasons = [trial_line(t, spec, reference, bar) for t in run.trials]
    if not meeting:
        return Recommendation(False, verdict.target_text(spec), reasons=reasons, next_steps=_levers(run, reference))
    chosen = min(meeting, key=lambda t: (t.params, order.get(t.strategy, 99)))
    result = chosen.result
    rec = Recommendation(
        met=True, target=verdict.target_text(spec), model=chosen.model, params=chosen.params,
        strategy=chosen.strategy, precision=result.settings.get("dtype", ""), settings=result.settings,
        metric=result.metric.as_dict(), memory=result.memory, speed=result.speed, reasons=reasons,
    )
    rec.reasons.append(_summary(chosen, run, spec))
    rec.on_profile = _on_profile(run, chosen, spec.profile) if spec.profile else {}
    rec.next_steps = _next_steps(rec, run)
    return rec


def _summary(chosen: Any, run: Any, spec: Any) -> str:
    m = chosen.result.metric
    smaller = [c for c in run.candidates if c.usable and c.entry.params < chosen.params and c.entry.kind == chosen.kind]
    text = (f"{short(chosen.model)} with {chosen.strategy} is the smallest model that meets the "
            f"{verdict.target_text(spec)} with 95% confidence ({m.name} {m.value:.2f}, interval {m.low:.2f}-{m.high:.2f}).")
    if smaller:
        text += f" Smaller {chosen.kind} models here fell short or were not needed to test: {', '.join(short(c.entry.id) for c in smaller)}."
    return text


def _on_profile(run: Any, chosen: Any, profile: Any) -> dict[str, Any]:
    entry = next(c.entry for c in run.candidates if c.entry.id == chosen.model)
    dtype = chosen.result.settings.get("dtype", "fp32")
    report = plan_estimate(entry, profile, dtype=dtype)
    out: dict[str, Any] = {"profile": profile.name, "engine": report.engine, "dtype": report.precision.name,
                           "fit": report.level, "where": report.where,
                           "predicted_bytes": max((s.need_bytes for s in report.shares),
                                                  default=max(m.total_bytes for m in report.memory.values()))}
    if report.speed:
        out["prefill_tokens_per_s"] = report.speed.prefill_tps
        out["decode_tokens_per_s"] = report.speed.decode_tps
    return out


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
