"""The ladder walk: the largest model that fits first (the reference), then down the sizes, at each
size the strategies cheapest first, stopping at the first that meets the target with confidence.

Models of one kind (causal LMs, encoders) form one ladder each. Within a ladder, "meets the target"
is assumed to be monotone in size, so the walk binary-searches for the smallest size that meets it
instead of trying every size; trials whose interval's upper bound falls below the bar stop early.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from sizer.core import events

from sizer.core.engines import estimate_engine, get_engine, model_cache, needs_files, run_device, trial_engine
from sizer.core.catalog.model_catalog import Catalog, load_catalog
from sizer.core.catalog.lookup import resolve_model
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import detect
from sizer.core.hardware.devices import HardwareProfile
from sizer.core.trials.placement import choose_device, choose_dtype
from sizer.core.estimate.planning import plan_estimate
from sizer.core.results.store import TrialStore
from sizer.core.trials.strategies import STRATEGIES
from sizer.core.errors import TrialCancelled
from sizer.core.trials.served import run_trial_spec
from sizer.core.trials.types import TrialSpec
from sizer.core.decide import verdict
from sizer.core.decide.types import Candidate, RemoteModel, RunResult, RunSpec, TrialOutcome

SERVED_ENGINE = "openai"  # the engine a candidate on a server (given or managed) runs on


def candidates(spec: RunSpec, catalog: Catalog | None = None, here: HardwareProfile | None = None) -> list[Candidate]:
    """Catalog models for this task, largest first, with fit on this machine and disk status."""
    catalog = catalog or load_catalog()
    here = here or detect()
    if spec.models:
        entries = [resolve_model(m, catalog) for m in spec.models]
    elif spec.family:
        entries = catalog.family(spec.family)
    else:
        entries = list(catalog.entries)
    if spec.task.kind != "classify":
        entries = [e for e in entries if e.kind != "encoder"]
    device = run_device(spec.engine, spec.device)
    engine = estimate_engine(spec.engine)
    out = []
    for entry in sorted(entries, key=lambda e: -e.params):
        dtype = choose_dtype(device, spec.dtype, entry.kind)
        report = plan_estimate(entry, here, engine, None if engine in ("llama.cpp", "vllm") else dtype)
        predicted = max((s.need_bytes for s in report.shares), default=max(m.total_bytes for m in report.memory.values()))
        cached = catalog.is_cached(entry) or not needs_files(entry, spec.engine)
        reason = "" if cached else f"not downloaded; fetch it with `sizer download {entry.id}`"
        if report.level == "no":
            from sizer.core.engines.device_map import unplaceable_reason

            reason = "does not fit this machine's free memory; " + unplaceable_reason(report)
        out.append(Candidate(entry, report.level, predicted, cached, cached and report.level != "no", reason))
    out += [_remote_candidate(r, catalog) for r in spec.remote]
    return sorted(out, key=lambda c: -c.entry.params)


def _remote_candidate(remote: RemoteModel, catalog: Catalog) -> Candidate:
    entry = catalog.find(remote.model)
    if entry is None:
        raise SizerError(f"--endpoint-model {remote.model!r}: give the catalog id of the served weights "
                         "(their size places them on the ladder); see `sizer catalog list`")
    return Candidate(entry, "remote", 0, True, True, f"served at {remote.url}", remote.url, remote.served_model,
                     SERVED_ENGINE)


def _ladder_order(sizes: int) -> Callable[[Callable[[int], bool]], int | None]:
    """Binary search over sizes ordered largest (index 0) to smallest: the largest index i with
    meets(i) true, assuming meets is monotone and meets(0) was already found true."""

    def search(meets: Callable[[int], bool]) -> int | None:
        best, lo, hi = 0, 1, sizes - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            if meets(mid):
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best

    return search


class _AnySet:
    """Set when any of its events is: a trial stops for the run's cancel or for its own skip."""

    def __init__(self, *items: threading.Event | None) -> None:
        self.items = [e for e in items if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.items)


class _Walker:
    def __init__(self, spec: RunSpec, run: RunResult, store: TrialStore, sink: events.Sink,
                 cancel: threading.Event | None, catalog: Catalog | None,
                 reuse: dict[tuple, TrialOutcome]) -> None:
        self.spec, self.run, self.store, self.sink, self.cancel = spec, run, store, sink, cancel
        self.catalog, self.reuse = catalog, reuse
        minutes = spec.budget_minutes if spec.budget_minutes is not None else spec.task.budget_minutes
        self.deadline = time.monotonic() + minutes * 60
        self.bar: float | None = verdict.absolute_bar(spec)
        self.reference: TrialOutcome | None = None
        self.exhaustive = False
        self.skip: threading.Event | None = None

    def trial(self, cand: Candidate, strategy: str, quant: str = "", sink: events.Sink | None = None) -> TrialOutcome:
        """One trial of `cand` (at quantization rung `quant` when given), recorded in the run."""
        cached = self.reuse.get((cand.entry.id, strategy, cand.where, quant))
        if cached is not None and cached.status == "ok":
            outcome = cached
            self._finished(outcome, "kept from the earlier run")
        elif strategy not in self._strategies(cand):
            outcome = TrialOutcome(cand.entry.id, cand.entry.params, cand.entry.kind, strategy, "skipped",
                                   f"a serving engine runs {' and '.join(self._strategies(cand))} trials only",
                                   where=cand.where, engine=self._fixed_engine(cand))
            self._finished(outcome, outcome.reason)
        elif time.monotonic() > self.deadline:
            outcome = TrialOutcome(cand.entry.id, cand.entry.params, cand.entry.kind, strategy, "skipped",
                                   "the run's time budget is spent", predicted_bytes=cand.predicted_bytes,
                                   where=cand.where)
            self._finished(outcome, outcome.reason)
        else:
            outcome = self._run(cand, strategy, quant, sink or self.sink)
        outcome.quant = quant
        self.run.trials.append(outcome)
        self.sink(events.RunUpdated(self.run))
        return outcome

    def _finished(self, outcome: TrialOutcome, reason: str) -> None:
        """Say so for a trial that did not run now (skipped, or kept from an earlier run)."""
        metric = outcome.result.metric if outcome.result is not None else None
        self.sink(events.TrialFinished(outcome.model, outcome.strategy, outcome.status,
                                       metric.value if metric else None, metric.low if metric else None,
                                       metric.high if metric else None, reason))

    def _run(self, cand: Candidate, strategy: str, quant: str = "", sink: events.Sink | None = None) -> TrialOutcome:
        sink = sink or self.sink
        engine = self._engine(cand, strategy)
        base = TrialOutcome(cand.entry.id, cand.entry.params, cand.entry.kind, strategy, "error",
                            predicted_bytes=cand.predicted_bytes, where=cand.where, engine=engine)
        ts = TrialSpec(model=cand.entry.id, strategy=strategy, limit=self.spec.limit, device=self.spec.device,
                       dtype=None if engine == "llama.cpp" else self.spec.dtype,
                       stop_below=None if self.exhaustive else self.bar,
                       budget_s=self._training_budget(strategy), endpoint=cand.endpoint,
                       served_model=cand.served_model, engine=engine, quant=quant,
                       serve=self.spec.serve if self._served(cand) else None)
        try:
            result = run_trial_spec(self.spec.task, ts, self.store, sink, _AnySet(self.cancel, self.skip),
                               catalog=self.catalog, position=self._position(cand))
        except TrialCancelled:
            if self.cancel is not None and self.cancel.is_set():
                raise
            self.skip.clear()
            base.status, base.reason = "skipped", "skipped by the user"
            sink(events.TrialFinished(cand.entry.id, strategy, "skipped", reason=base.reason))
            return base
        except (MemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            base.status, base.reason = "oom", "out of memory: " + detail
            sink(events.TrialFinished(cand.entry.id, strategy, "oom", reason=base.reason))
            return base
        except SizerError as exc:
            base.reason = str(exc)
            sink(events.TrialFinished(cand.entry.id, strategy, "error", reason=base.reason))
            return base
        base.status, base.result = result.status, result
        base.correct = result.per_example
        return base

    def _position(self, cand: Candidate) -> tuple[int, int]:
        """(n, m): `cand` is the n-th distinct model this run tries, of the m it may try."""
        tried = list(dict.fromkeys((t.model, t.where) for t in self.run.trials))
        here = (cand.entry.id, cand.where)
        n = tried.index(here) + 1 if here in tried else len(tried) + 1
        return n, max(n, sum(1 for c in self.run.candidates if c.usable))

    def _served(self, cand: Candidate) -> bool:
        """Whether this candidate's trials run on a managed server (`RunSpec.serve`)."""
        return bool(self.spec.serve) and not cand.engine and cand.entry.kind == "causal"

    def _fixed_engine(self, cand: Candidate) -> str:
        """The engine every trial of `cand` runs on: its own (a given server's), the OpenAI-compatible
        one on a managed server, else "" (each strategy chooses: `trial_engine`)."""
        return cand.engine or (SERVED_ENGINE if self._served(cand) else "")

    def _engine(self, cand: Candidate, strategy: str) -> str:
        return self._fixed_engine(cand) or trial_engine(cand.entry, strategy, self.spec.engine)

    def _strategies(self, cand: Candidate) -> tuple[str, ...]:
        """The strategies `cand` can be tried with: its fixed engine's, else all (a strategy the
        run's engine cannot run falls back to transformers)."""
        fixed = self._fixed_engine(cand)
        return tuple(get_engine(fixed).strategies) if fixed else STRATEGIES

    def _training_budget(self, strategy: str) -> float | None:
        """Fine-tuning gets its default budget, but never more than half the run's time left."""
        if strategy != "fine-tune":
            return None
        from sizer.core.trials.finetune import default_budget_s

        half_left = max(30.0, (self.deadline - time.monotonic()) / 2)
        return min(default_budget_s(choose_device(self.spec.device)), half_left)

    def meets(self, outcome: TrialOutcome) -> bool:
        return verdict.meets(self.spec, outcome, self.reference, self.bar)

    def size(self, cand: Candidate, strategies: Sequence[str]) -> TrialOutcome | None:
        """Strategies cheapest first at one size; the first outcome that meets the bar, else None."""
        for strategy in strategies:
            outcome = self.trial(cand, strategy)
            if outcome.status == "ok" and self.meets(outcome):
                return outcome
        return None


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def walk(spec: RunSpec, store: TrialStore | None = None, sink: events.Sink = events.null_sink,
         cancel: threading.Event | None = None, catalog: Catalog | None = None,
         here: HardwareProfile | None = None,
         reuse: Sequence[TrialOutcome] = (), exhaustive: bool = False,
         skip: threading.Event | None = None) -> RunResult:
    """Walk the ladders and decide. `reuse` holds finished trials from an earlier, interrupted run.
    `exhaustive` runs the whole grid (every candidate x strategy, no early stop) instead: the
    yardstick the walk is measured against. Setting `skip` stops the trial in flight (recorded as
    skipped) and the walk goes on; setting `cancel` stops the whole run: TrialCancelled, with the
    run walked so far as its `run`.

    Progress goes to `sink`: every trial ends with a TrialFinished (skips and trials kept from
    `reuse` included), then a RunUpdated carrying the run; the last RunUpdated has the decision."""
    from sizer.core.decide.recommend import decide

    here = here or detect()
    catalog = catalog or load_catalog()  # read once: every trial of the walk looks its model up in it
    cands = candidates(spec, catalog, here)
    if spec.download:
        cands = _fetch_missing(spec, cands, sink, cancel)
    run = RunResult(spec, here, cands)
    usable = [c for c in cands if c.usable]
    if not usable:
        raise SizerError("no candidate model is both on this machine and small enough for it: "
                         "see `sizer catalog list --fits`, download one, or name models with --models")
    sink(events.RunStarted(spec.task.name, tuple(c.entry.id + ("" if c.where == "local" else f" at {c.where}") for c in usable),
                           tuple(spec.strategies)))
    own_store = store is None
    store = store or TrialStore.open(sink=sink)
    walker = _Walker(spec, run, store, sink, cancel, catalog, {(t.model, t.strategy, t.where, t.quant): t for t in reuse})
    walker.exhaustive, walker.skip = exhaustive, skip
    try:
        (_grid if exhaustive else _walk_ladders)(walker, usable)
        if not exhaustive:
            _walk_rungs(walker)
        run.recommendation = decide(run, walker.reference, walker.bar)
        run.finished = True
        sink(events.RunUpdated(run))
        return run
    except TrialCancelled as exc:
        exc.run = run  # what was walked before the cancel, for a partial report
        raise
    finally:
        model_cache.release()  # a finished run holds no weights (the app stays open after it)
        if own_store:
            store.close()


def _fetch_missing(spec: RunSpec, cands: list[Candidate], sink: events.Sink,
                   cancel: threading.Event | None) -> list[Candidate]:
    """Candidates with the missing ones fetched within the run's download budget (see sizer.core.download.in_run)."""
    from sizer.core.download.progress import DownloadCancelled
    from sizer.core.download.in_run import budget_bytes, fetch_missing

    gigabytes = spec.download_budget_gb if spec.download_budget_gb is not None else spec.task.budget_download_gb
    try:
        return fetch_missing(cands, budget_bytes(gigabytes), sink, cancel)
    except DownloadCancelled:
        raise TrialCancelled("the run was stopped while downloading") from None


def _walk_ladders(walker: _Walker, usable: list[Candidate]) -> None:
    spec = walker.spec
    ladders = [[c for c in usable if c.entry.kind == kind] for kind in ("causal", "encoder")]
    ladders = [ladder for ladder in ladders if ladder]
    # The reference: the largest candidate. Under an absolute target its strategies stop at the
    # first that meets it; under a margin every strategy runs, since its best sets the bar.
    reference_cand = max(usable, key=lambda c: c.entry.params)
    if walker.bar is not None:
        walker.size(reference_cand, spec.strategies)
        walker.reference = verdict.best(t for t in walker.run.trials
                                        if (t.model, t.where) == (reference_cand.entry.id, reference_cand.where))
    else:
        walker.reference = verdict.best(walker.trial(reference_cand, s) for s in spec.strategies)
        if walker.reference is not None:
            walker.bar = verdict.margin_bar(spec, walker.reference)
    for ladder in ladders:
        top = ladder[0]
        if top is reference_cand:
            top_ok = walker.reference is not None and walker.meets(walker.reference)
        else:
            top_ok = walker.size(top, spec.strategies) is not None
        if not top_ok or len(ladder) == 1:
            continue
        _ladder_order(len(ladder))(lambda i: walker.size(ladder[i], spec.strategies) is not None)


def rung_bases(walker: _Walker) -> list[TrialOutcome]:
    """Per ladder, the outcome whose model is walked down its quantizations: the smallest size that
    meets the target (cheapest strategy), else - nothing in that ladder meets it - its best-scoring
    prompt trial (finished or stopped early; no training per rung), so the report still shows what
    quantization costs that model on the task."""
    order = {s: i for i, s in enumerate(walker.spec.strategies)}
    out = []
    for kind in ("causal", "encoder"):
        local = [t for t in walker.run.trials if t.kind == kind and t.where == "local" and not t.quant
                 and t.result is not None and t.status in ("ok", "stopped-early")]
        meeting = [t for t in local if walker.meets(t)]
        prompts = [t for t in local if t.strategy != "fine-tune"] or local
        base = (min(meeting, key=lambda t: (t.params, order.get(t.strategy, 99))) if meeting
                else max(prompts, key=lambda t: t.result.metric.value, default=None))
        if base is not None:
            out.append(base)
    return out


def _walk_rungs(walker: _Walker) -> None:
    from sizer.core.quant.rungs import walk_rungs

    for base in rung_bases(walker):
        walker.run.rungs += walk_rungs(walker, base)


def _grid(walker: _Walker, usable: list[Candidate]) -> None:
    spec = walker.spec
    reference_cand = max(usable, key=lambda c: c.entry.params)
    outcomes = {c.entry.id: [walker.trial(c, s) for s in spec.strategies] for c in usable}
    walker.reference = verdict.best(outcomes[reference_cand.entry.id])
    if walker.bar is None and walker.reference is not None:
        walker.bar = verdict.margin_bar(spec, walker.reference)
