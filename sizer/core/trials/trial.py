"""One trial: a task's test examples through one model with one strategy, scored, timed and
measured, every prediction kept in the trial cache so an interrupted trial resumes."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Sequence

from sizer.core import events

from sizer.core.engines import library_output

from sizer.core.engines import model_cache
from sizer.core.catalog.model_catalog import ModelEntry, load_catalog
from sizer.core.engines import engine_name, get_engine, trial_model
from sizer.core.engines.protocol import Placement
from sizer.core.errors import SizerError, TrialCancelled
from sizer.core.trials.measure import PeakMemory, percentiles
from sizer.core.trials.runners import make_runner
from sizer.core.trials.scoring import example_scores, metric_for, prediction, score_records
from sizer.core.task.split import split, stratified_split
from sizer.core.results.store import TrialStore, trial_key
from sizer.core.trials.strategies import check_strategy
from sizer.core.trials.types import TrialResult, TrialSpec


class _StoppedEarly(Exception):
    """The interval's upper bound fell below the bar: this trial cannot win."""


MIN_EXAMPLES_TO_STOP = 24  # never judge a trial on fewer scored examples than this


def shuffled(examples: Sequence, seed: int) -> list:
    """A seeded order, so a running metric is measured on a fair sample (task files are often
    grouped by label)."""
    return sorted(examples, key=lambda e: hashlib.sha256(f"order:{seed}:{e.id}".encode()).hexdigest())


def limit_examples(test: Sequence, limit: int | None, seed: int, kind: str) -> list:
    """A stratified subset of at most `limit` test examples (all when `limit` is None)."""
    if limit is None or limit >= len(test):
        return list(test)
    if limit <= 0:
        raise SizerError(f"--limit {limit}: give a positive number of examples")
    stratum = (lambda e: e.label) if kind == "classify" else (lambda e: "")
    _, subset = stratified_split(test, limit, seed, stratum)
    return subset


def run_trial(task: Any, spec: TrialSpec, store: TrialStore | None = None,
              sink: events.Sink = events.null_sink, cancel: threading.Event | None = None,
              catalog=None, position: tuple[int, int] = (1, 1)) -> TrialResult:
    """Run (or resume) one trial and return its result; progress goes to `sink`. `position`: this
    model's place among the models a run may load (n of m), for the "loading MODEL" event."""
    check_strategy(spec.strategy)
    catalog = catalog or load_catalog()
    if spec.endpoint and engine_name(spec.engine) != "openai":
        raise SizerError(f"--endpoint runs the trial on that server; drop --engine {spec.engine}")
    engine = get_engine(spec.engine)
    entry = trial_model(engine, spec, catalog)
    placement = _place(engine, entry, spec)
    device, dtype = placement.device, placement.dtype
    seed = spec.seed if spec.seed is not None else task.seed
    train, test = split(task, seed)
    test = shuffled(limit_examples(test, spec.limit, seed, task.kind), seed)
    notes = []  # with the result's warnings: an error before any scoring stays the only line on stderr
    if spec.limit is not None and len(test) > spec.limit:
        notes.append(f"--limit {spec.limit}: scored {len(test)} examples, at least one per label "
                     "(the subset is stratified by label)")
    revision = f"managed:{spec.managed}" if spec.managed else placement.model_revision
    runner = make_runner(entry, task, spec, placement, seed, engine)
    own_store = store is None
    store = store or TrialStore.open(sink=sink)
    try:
        with PeakMemory(placement.memory_device) as memory:
            began = time.perf_counter()
            _load(runner, entry, placement.local, _LoadReporter(sink, entry.id, *position))
            load_s = time.perf_counter() - began
            reused = model_cache.reused_bytes()
            sink(events.TrialPreparing(entry.id, spec.strategy))
            settings, digest, test = runner.prepare(task, train, test)
            settings = {**settings, "device": device, "dtype": dtype, "seed": seed}
            if spec.managed:  # the server's port changes from run to run; the trial is the same
                settings = {**settings, "endpoint": f"managed: {spec.managed}"}
            settings = {**settings, **engine.key_settings(placement, spec)}
            key = trial_key(entry.id, revision, spec.strategy, digest, settings)
            store.start_trial(key, {"model": entry.id, "revision": revision, "strategy": spec.strategy, "settings": settings, "task": task.name})
            records, timing, status = _predict(task, runner, test, store, key, entry.id, spec, sink, cancel)
        for warning in runner.warnings:
            sink(events.Message(warning, "warning"))
        metric, others, table = score_records(task, records)
        speed = {"load_s": round(load_s, 3), **timing}
        mem = {"peak_bytes": memory.peak_bytes + reused, "device": device,
               "measured_by": memory.method + (" (model reused from the previous trial: its measured load added)" if reused else "")}
        if device == "cpu" and mem["peak_bytes"] < 2**20:
            # The resident set did not grow: the allocator reused memory an earlier, larger model
            # freed in this process. Nothing honest to report; a trial on its own measures it.
            mem = {"peak_bytes": None, "device": device,
                   "measured_by": "not measurable here: the process reused memory freed by an earlier model "
                                  "(run `sizer trial` for this model alone to measure it)"}
        speed, mem = _measured_before(store, key, speed, mem)
        if not engine.capabilities.measured_here:  # a server's memory is not this process's
            speed = {**speed, "measured": "remotely"}
            mem = {"peak_bytes": None, "measured_by": "remote", "device": placement.memory_device}
        else:
            mem.setdefault("predicted_bytes", engine.predicted_peak(entry, placement, settings))
        result = TrialResult(entry.id, revision, spec.strategy, status, metric, settings,
                             {"train": len(train), "test": len(test)}, speed, mem, others, table,
                             list(getattr(task, "warnings", ())) + notes + runner.warnings, key,
                             example_scores(task, {r["example_id"]: r for r in records}))
        if status == "ok":
            store.finish_trial(key, {"status": status, "metric": metric.as_dict(), "speed": speed, "memory": mem})
        reason = f"upper bound below {spec.stop_below:.3f}" if status == "stopped-early" else ""
        sink(events.TrialFinished(entry.id, spec.strategy, status, metric.value, metric.low, metric.high, reason))
        return result
    finally:
        if own_store:
            store.close()


def _measured_before(store: TrialStore, key: str, speed: dict, mem: dict) -> tuple[dict, dict]:
    """When every prediction came from the cache nothing was timed now: keep the speed and memory
    measured when the trial last ran in full."""
    previous = (store.get_trial(key) or {}).get("summary") or {}
    if speed["scored"] or not previous.get("speed"):
        return speed, mem
    old_speed = {**previous["speed"], "scored": 0, "cached": speed["cached"], "measured_earlier": True}
    return old_speed, {**previous.get("memory", mem), "measured_earlier": True}


def _place(engine: Any, entry: ModelEntry, spec: TrialSpec) -> Placement:
    """The engine's placement of this trial, once it is known to run the model's kind and the strategy."""
    name = engine_name(spec.engine)
    if entry.kind not in engine.kinds:
        raise SizerError(f"{entry.id}: the {name} engine runs {' and '.join(engine.kinds)} models, not {entry.kind} models")
    if spec.strategy not in engine.strategies:
        title = getattr(engine, "title", f"--engine {name}")
        raise SizerError(f"{title} runs {', '.join(engine.strategies)} trials, not {spec.strategy}")
    return engine.place(entry, spec)


LOAD_REPORT_S = 1.0  # at most one loading-progress event a second, besides the first and the last


class _LoadReporter:
    """Says "loading MODEL (n of m)" when the model really loads (not when the held one is reused),
    then the loader's own progress bars, at most once a second."""

    def __init__(self, sink: events.Sink, model: str, index: int, count: int) -> None:
        self.sink, self.model, self.index, self.count = sink, model, index, count
        self.last = 0.0

    def started(self) -> None:
        self.sink(events.ModelLoading(self.model, self.index, self.count))

    def bar(self, done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if done < total and now - self.last < LOAD_REPORT_S:
            return
        self.last = now
        step = what[:1].lower() + what[1:]
        self.sink(events.ModelLoading(self.model, self.index, self.count, done, total, step))


def _load(runner: Any, entry: ModelEntry, local: Any, reporter: _LoadReporter) -> None:
    """Load the model, turning the loaders' errors into one line naming the model and folder."""
    try:
        with model_cache.announcing(reporter.started), library_output.report_bars(reporter.bar):
            runner.load()
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise SizerError(f"{entry.id}: the model needs its own code to load; pass --trust-remote-code if you trust it") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SizerError(f"{entry.id}: cannot load the files in {local.path}: {first}") from exc


def _predict(task, runner, test, store, key, model, spec, sink, cancel) -> tuple[list[dict], dict[str, float], str]:
    strategy = spec.strategy
    done = store.done_examples(key)
    wanted = {e.id for e in test}
    records = [r for i, r in done.items() if i in wanted]
    todo = [e for e in test if e.id not in done]
    sink(events.TrialStarted(model, strategy, len(test), {"cached": len(records)}))
    new: list[dict] = []
    began = time.perf_counter()

    def on_batch(rows: list[dict]) -> None:
        store.add_predictions(key, rows)
        new.extend(rows)
        if cancel is not None and cancel.is_set():
            raise TrialCancelled(f"trial {model} {strategy} cancelled; {len(records) + len(new)} examples kept in the cache")
        seen = records + new
        metric = metric_for(task.kind, task.metric, [r["gold"] for r in seen], [prediction(task, r) for r in seen],
                            task.labels, task.fields)
        rate = len(new) / max(time.perf_counter() - began, 1e-9)
        sink(events.TrialProgress(model, strategy, len(seen), len(test), metric.value, metric.low, metric.high, rate))
        if spec.stop_below is not None and len(seen) >= MIN_EXAMPLES_TO_STOP and metric.high < spec.stop_below:
            raise _StoppedEarly

    status = "ok"
    try:
        if todo:
            runner.predict(task, todo, on_batch)
    except _StoppedEarly:
        status = "stopped-early"
    elapsed = time.perf_counter() - began
    p50, p95 = percentiles([r["latency_s"] for r in new])
    tokens = sum(r.get("tokens", 0) for r in new)
    timing = {"scored": len(new), "cached": len(records), "seconds": round(elapsed, 3),
              "examples_per_s": round(len(new) / elapsed, 2) if new else 0.0,
              "p50_latency_s": round(p50, 4), "p95_latency_s": round(p95, 4),
              "tokens_per_s": round(tokens / elapsed, 1) if new else 0.0}
    return records + new, timing, status
