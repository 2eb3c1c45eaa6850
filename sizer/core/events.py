"""Progress events: the one protocol both front ends consume.

Long-running core functions take a `sink: Sink` and call it with these small dataclasses. The
headless CLI prints them as plain lines (or JSON lines) to stderr; the TUI posts them as Textual
messages. Neither front end holds trial logic.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO


@dataclass(frozen=True)
class Event:
    """Base class of every progress event."""

    def as_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Message(Event):
    """A free-form line for the log: level is "info", "warning" or "error"."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class Progress(Event):
    """`done` of `total` units of `stage` (e.g. "benchmark", "scoring", "download")."""

    stage: str
    done: int
    total: int
    detail: str = ""


@dataclass(frozen=True)
class ModelLoading(Event):
    """A model's weights are being loaded: the `index`-th model of the `count` a run may try (1 of 1
    for a single trial). `done`/`total` count the loader's own steps (e.g. GGUF tensors
    de-quantized) when the library reports them; 0/0 when it does not. `step` names them."""

    model: str
    index: int = 1
    count: int = 1
    done: int = 0
    total: int = 0
    step: str = ""


@dataclass(frozen=True)
class TrialPreparing(Event):
    """The model is loaded; the trial builds its prompts, demonstrations or retrieval index, or
    trains (fine-tune), before scoring starts."""

    model: str
    strategy: str


@dataclass(frozen=True)
class TrialStarted(Event):
    model: str
    strategy: str
    examples: int
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialProgress(Event):
    model: str
    strategy: str
    done: int
    total: int
    metric: float | None = None
    low: float | None = None
    high: float | None = None
    examples_per_s: float | None = None


@dataclass(frozen=True)
class TrialFinished(Event):
    model: str
    strategy: str
    status: str
    metric: float | None = None
    low: float | None = None
    high: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class RunStarted(Event):
    """The candidates a run will try (largest first) and its strategies, before its first trial.
    Candidates left out (not downloaded, too large) are said by their own events and the report."""

    task: str
    models: tuple[str, ...]
    strategies: tuple[str, ...]


@dataclass(frozen=True)
class RunUpdated(Event):
    """The run after each trial, and once more when it is decided (`run.finished`): what a report
    writer or a screen of results renders. In-process only: stream sinks leave it out."""

    run: Any = field(compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"event": "RunUpdated", "trials": len(self.run.trials), "finished": bool(self.run.finished)}


@dataclass(frozen=True)
class DownloadStarted(Event):
    """A model's missing files start downloading: `total_bytes` still to fetch (bytes)."""

    model: str
    total_bytes: int


@dataclass(frozen=True)
class DownloadFinished(Event):
    """A model's download ended: status "done", "failed" or "left-out" (not tried: budget, disk,
    HF_HUB_OFFLINE). `command` fetches it by hand when it is not done."""

    model: str
    status: str
    reason: str = ""
    command: str = ""


Sink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """A sink that drops every event."""


def describe(event: Event) -> str:
    """One plain line for a log or a terminal without a TUI."""
    if isinstance(event, Message):
        return event.text if event.level == "info" else f"{event.level}: {event.text}"
    if isinstance(event, Progress):
        tail = f" {event.detail}" if event.detail else ""
        return f"{event.stage}: {event.done}/{event.total}{tail}"
    if isinstance(event, ModelLoading):
        line = f"loading {event.model} ({event.index} of {event.count})"
        if event.total:
            line += f": {event.step or 'step'} {event.done}/{event.total}"
        return line
    if isinstance(event, TrialPreparing):
        return f"trial {event.model} {event.strategy}: preparing"
    if isinstance(event, TrialStarted):
        return f"trial {event.model} {event.strategy}: started on {event.examples} examples"
    if isinstance(event, TrialProgress):
        line = f"trial {event.model} {event.strategy}: {event.done}/{event.total}"
        if event.metric is not None:
            line += f" metric {event.metric:.3f} ({event.low:.3f}-{event.high:.3f})"
        if event.examples_per_s:
            rate = event.examples_per_s
            line += f" {rate:.1f} ex/s" if rate >= 1 else f" {rate:.2g} ex/s"
        return line
    if isinstance(event, TrialFinished):
        line = f"trial {event.model} {event.strategy}: {event.status}"
        if event.metric is not None:
            line += f" {event.metric:.3f} ({event.low:.3f}-{event.high:.3f})"
        return line + (f" - {event.reason}" if event.reason else "")
    if isinstance(event, RunStarted):
        return (f"run {event.task}: {len(event.models)} candidate(s), largest first: {', '.join(event.models)}; "
                f"strategies {', '.join(event.strategies)}")
    if isinstance(event, DownloadStarted):
        return f"download {event.model}: {event.total_bytes / 1e6:.1f} MB to fetch"
    if isinstance(event, DownloadFinished):
        line = f"download {event.model}: {event.status}" + (f" - {event.reason}" if event.reason else "")
        return line + (f"; fetch it with `{event.command}`" if event.command else "")
    return repr(event)


def stream_sink(stream: TextIO | None = None, as_json: bool = False) -> Sink:
    """A sink that writes one line per event to `stream` (stderr by default)."""

    def sink(event: Event) -> None:
        if isinstance(event, RunUpdated):
            return
        out = stream or sys.stderr
        out.write((json.dumps(event.as_dict()) if as_json else describe(event)) + "\n")
        out.flush()

    return sink
