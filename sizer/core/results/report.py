"""The run report: TOML (tomli-w) written atomically, read back with tomllib.

Schema 2 (documented in README.md): `schema`, `sizer_version`, `created`, `[hardware]`,
`[target_profile]`, `[task]`, `[run]`, `[[trials]]` (with `quant` and `engine`), `[[rungs]]` (the
quantization rungs walked), `[recommendation]` (with `engine`, `quant`, `serve`...). Schema 1
reports (no rungs, no engine in the recommendation) are still read. TOML has no null: absent
values are left out. Secrets never appear: everything passes through `redact`.
"""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path
from typing import Any

import tomli_w

from sizer import __version__
from sizer.core import events
from sizer.core.errors import SizerError
from sizer.core.fileio import atomic_write_text
from sizer.core.results.redact import redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)  # schema 1: written before quantization rungs and serve commands


def _clean(value: Any) -> Any:
    """Drop None (TOML has no null) and turn tuples into lists, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value if v is not None]
    return value


def _task(task: Any, split: dict[str, int]) -> dict[str, Any]:
    target = {"absolute": task.target.absolute, "within": task.target.within}
    return {"name": task.name, "kind": task.kind, "path": str(task.path), "metric": task.metric,
            "examples": len(task.examples), "labels": list(task.labels), "split": split, "target": target,
            "seed": task.seed, **_split_from(task)}


def _split_from(task: Any) -> dict[str, str]:
    """How the test split was made: "drawn" (seeded), or given by "test_file" (named) or a "split column"."""
    source = getattr(task, "examples_file", None)
    test_file = source.test_path if source is not None else None
    return {"split_from": getattr(task, "split_from", "drawn"), "test_file": str(test_file) if test_file else None}


def _trial(outcome: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"model": outcome.model, "params": outcome.params, "kind": outcome.kind,
                           "strategy": outcome.strategy, "status": outcome.status, "reason": outcome.reason,
                           "predicted_bytes": outcome.predicted_bytes, "where": outcome.where,
                           "quant": getattr(outcome, "quant", ""), "engine": getattr(outcome, "engine", "transformers")}
    r = outcome.result
    if r is not None:
        out.update({"revision": r.revision, "settings": r.settings, "metric": r.metric.as_dict(),
                    "other_metrics": {k: m.as_dict() for k, m in r.other_metrics.items()},
                    "speed": r.speed, "memory": r.memory, "split": r.split, "warnings": r.warnings,
                    "key": r.key})
    return out


def to_dict(run: Any) -> dict[str, Any]:
    spec = run.spec
    split = next((t.result.split for t in run.trials if t.result is not None), {})
    data = {
        "schema": SCHEMA,
        "sizer_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "finished": run.finished,
        "hardware": run.here.to_dict(),
        "target_profile": spec.profile.to_dict() if spec.profile else None,
        "task": _task(spec.task, split),
        "run": {"models": list(spec.models or ()), "family": spec.family, "strategies": list(spec.strategies),
                "remote": [{"model": r.model, "url": r.url, "served_model": r.served_model} for r in spec.remote],
                "limit": spec.limit, "target": spec.target, "budget_minutes": spec.budget_minutes,
                "download_budget_gb": spec.download_budget_gb,
                "device": spec.device, "dtype": spec.dtype, "engine": spec.engine,
                "serve": getattr(spec, "serve", None),
                "profile": spec.profile.name if spec.profile else None},
        "candidates": [{"model": c.entry.id, "params": c.entry.params, "fit": c.fit, "cached": c.cached,
                        "usable": c.usable, "predicted_bytes": c.predicted_bytes, "reason": c.reason,
                        "endpoint": c.endpoint, "served_model": c.served_model}
                       for c in run.candidates],
        "trials": [_trial(t) for t in run.trials],
        "rungs": [r.to_dict() for r in getattr(run, "rungs", [])],
        "recommendation": run.recommendation.to_dict() if run.recommendation else None,
    }
    return _clean(redact(data))


def dumps(run: Any) -> str:
    return tomli_w.dumps(to_dict(run))


def write_report(path: str | Path, run: Any) -> None:
    """Write the report atomically; when the disk refuses (full, a file-size limit, no permission)
    the file keeps its previous content and the SizerError says so."""
    try:
        atomic_write_text(path, dumps(run))
    except OSError as exc:
        before = "the previous report is intact" if Path(path).is_file() else "no report was written"
        raise SizerError(f"{path}: cannot write the report ({exc.strerror or exc}); {before}; "
                         "free some space or write it elsewhere; finished trials stay in the trial cache") from exc


class ReportWriter:
    """A sink (sizer.core.events) that writes the report at `path` on every `RunUpdated`, so a
    run stopped at any point leaves the report of the trials it finished, and passes every event
    on to `forward`. `written`: whether this run has written the file yet."""

    def __init__(self, path: str | Path, forward: events.Sink = events.null_sink) -> None:
        self.path, self.forward, self.written = path, forward, False

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.RunUpdated):
            write_report(self.path, event.run)
            self.written = True
        self.forward(event)


REQUIRED = ("task", "hardware")  # tables `show` and `--resume` cannot do without


def read_report(path: str | Path) -> dict[str, Any]:
    """A report as plain data; a missing, malformed, truncated or other-schema file -> SizerError."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SizerError(f"{p}: no such report; give the file written by sizer run --out") from None
    except IsADirectoryError:
        raise SizerError(f"{p}: is a folder; give the report file written by sizer run --out") from None
    except OSError as exc:
        raise SizerError(f"{p}: cannot read the report ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SizerError(f"{p}: not a valid TOML report (not UTF-8 text); give the file written by sizer run --out") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SizerError(_toml_problem(p, text, exc)) from None
    if "schema" not in data:
        raise SizerError(f"{p}: not a sizer report (no schema key); give the file written by sizer run --out")
    schema = data.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise SizerError(f"{p}: report schema {schema!r} is not one this sizer reads "
                         f"({', '.join(map(str, READABLE_SCHEMAS))}); it was written by another sizer version")
    missing = [f"[{name}] table" for name in REQUIRED if not isinstance(data.get(name), dict)]
    if not missing and not isinstance(data["task"].get("path", ""), str):
        missing = ["task path"]
    if missing:
        raise SizerError(f"{p}: not a complete report (no {missing[0]}); it was cut short or edited; "
                         "rerun sizer run --out to write it again")
    return data


def _toml_problem(path: Path, text: str, exc: Exception) -> str:
    """One line for a report tomllib refuses: its line, and whether it looks cut short."""
    message = str(exc)
    found = re.search(r"\(at line (\d+), column \d+\)|\(at end of document\)", message)
    line = found.group(1) if found and found.group(1) else str(max(1, len(text.splitlines())))
    reason = message[: found.start()].strip() if found else message
    cut = not text.endswith("\n")  # sizer always ends its reports with a newline
    hint = ("it looks cut short (a full disk or a killed writer?); continue the run with sizer run --resume "
            "on an intact report, or rerun sizer run --out" if cut else "give the file written by sizer run --out")
    return f"{path}:{line}: not a valid TOML report ({reason}); {hint}"


def trials_from_report(data: dict[str, Any], task: Any, store: Any) -> list[Any]:
    """Finished trials of an earlier report, ready for `walk(reuse=...)` (per-example scores come
    back from the trial cache)."""
    from sizer.core.trials.scoring import Metric, example_scores
    from sizer.core.decide.types import TrialOutcome
    from sizer.core.trials.types import TrialResult

    out = []
    for t in data.get("trials", []):
        if t.get("status") != "ok" or "metric" not in t:
            continue
        key = t.get("key", "")
        result = TrialResult(
            model=t["model"], revision=t.get("revision"), strategy=t["strategy"], status="ok",
            metric=Metric(**t["metric"]), settings=t.get("settings", {}), split=t.get("split", {}),
            speed=t.get("speed", {}), memory=t.get("memory", {}),
            other_metrics={k: Metric(**m) for k, m in t.get("other_metrics", {}).items()},
            warnings=t.get("warnings", []), key=key,
            per_example=example_scores(task, store.done_examples(key)) if key else {},
        )
        out.append(TrialOutcome(model=t["model"], params=t["params"], kind=t["kind"], strategy=t["strategy"],
                                status="ok", reason=t.get("reason", ""), result=result,
                                predicted_bytes=t.get("predicted_bytes", 0), correct=result.per_example,
                                where=t.get("where", "local"), quant=t.get("quant", ""),
                                engine=t.get("engine", "transformers")))
    return out
