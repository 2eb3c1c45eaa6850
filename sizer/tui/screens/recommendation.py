"""Step 6: the decision in plain words, reasons, next steps, memory and speed, the equivalent
headless command, and Save to TOML (path dialog, overwrite confirmation, atomic write by the core)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from sizer.core.errors import SizerError
from sizer.tui.fmt import gib, size
from sizer.tui.screens import StepScreen
from sizer.tui.screens.dialogs import save_as

DEFAULT_REPORT = "sizer-report.toml"


def headless_command(task_path: Path | None, models: list[str], strategies: list[str], limit: int | None,
                     profile: str | None, engine: str | None = None) -> str:
    """The `sizer run` line that repeats this run without the app."""
    words = ["sizer", "run", str(task_path or "TASK.toml")]
    if models:
        words += ["--models", ",".join(models)]
    if strategies:
        words += ["--strategies", ",".join(strategies)]
    if limit:
        words += ["--limit", str(limit)]
    if profile:
        words += ["--profile", profile]
    if engine:
        words += ["--engine", engine]
    return shlex.join(words + ["--out", DEFAULT_REPORT])


def _metric(m: dict[str, Any]) -> str:
    return f"{m['name']} {m['value']:.3f} (95% interval {m['low']:.3f}-{m['high']:.3f}, n={m['n']})"


def _figures(rec: Any) -> list[str]:
    """Memory and speed measured here, and the estimate on the planned-for machine."""
    lines = []
    memory = memory_line(rec.memory)
    if memory:
        lines.append(memory)
    if rec.speed.get("examples_per_s"):
        lines.append(f"speed     {rec.speed['examples_per_s']:,.1f} examples/s here")
    p = rec.on_profile
    if p:
        decode = p.get("decode_tokens_per_s")
        lines.append(f"on {p['profile']}: {p['fit']}" + (f" ({p['where']})" if p.get("where") else "")
                     + f", needs {gib(p['predicted_bytes'])}" + (f", ~{decode:,.0f} tokens/s decode" if decode else ""))
    return lines


def memory_line(memory: dict[str, Any]) -> str:
    """Measured peak memory, or the estimator's figure labelled as such when the trial could not
    measure it (e.g. a small model in a process that had freed a larger one)."""
    where = memory.get("device", "?")
    if memory.get("peak_bytes"):
        return f"memory    peak {size(memory['peak_bytes'])} on {where} ({memory.get('measured_by', 'measured')})"
    if memory.get("predicted_bytes"):
        why = memory.get("measured_by", "")
        return (f"memory    {size(memory['predicted_bytes'])} on {where}, estimated"
                + (f" ({why})" if why else " (not measured)"))
    return ""


def _serving(rec: Any) -> list[str]:
    """The engine and quantization that serve the pick, the rungs walked, and the serve command."""
    from sizer.core.decide.recommend import rung_line

    lines = []
    if getattr(rec, "engine", ""):
        lines.append(f"engine    {rec.engine}" + (f", {rec.quant}" if rec.quant else ""))
    lines += [f"rung      {rung_line(r)}" for r in getattr(rec, "rungs", [])]
    for command in getattr(rec, "serve", []):
        lines.append(f"serve     {command}")
    if getattr(rec, "modelfile", ""):
        lines += ["Modelfile"] + [f"  {x}" for x in rec.modelfile.splitlines()]
    if getattr(rec, "python", ""):
        lines += ["Python"] + [f"  {x}" for x in rec.python.splitlines()]
    return lines


def decision_lines(rec: Any) -> list[str]:
    """The recommendation (sizer.core.decide.recommend.Recommendation) as plain lines."""
    if rec.met:
        lines = [f"[b]{escape(rec.model)}[/b] ({escape(rec.precision)}) with [b]{escape(rec.strategy)}[/b] "
                 f"meets the {escape(rec.target)}", f"metric    {_metric(rec.metric)}"]
        lines += [escape(line) for line in _figures(rec)]
        lines += [escape(line) for line in _serving(rec)]
    else:
        lines = [f"[b]Nothing tried meets the {escape(rec.target)}.[/b]"]
    lines += ["", "[b]Why[/b]"] + [f"  • {escape(r)}" for r in rec.reasons]
    if rec.next_steps:
        lines += ["", "[b]Next steps[/b]"] + [f"  • {escape(s)}" for s in rec.next_steps]
    return lines


def _unsaved_note(app: Any) -> str:
    if app.task_path is not None:
        return ""
    if app.task_file is not None:
        return "\n(if you edited the task on 2, save it there first: ctrl+s)"
    return "\n(save the task on 2 with ctrl+s and give its path for TASK.toml)"


class RecommendationScreen(StepScreen):
    STEP = "recommendation"
    BINDINGS = [Binding("ctrl+s,s", "save", "Save TOML")]

    def body(self) -> ComposeResult:
        with VerticalScroll(id="recommendation"):
            yield Static("", id="decision")
            yield Static("", id="command", classes="hint")

    def show_state(self) -> None:
        state = self.sizer.state
        outcome = state.outcome
        if state.running:
            text = "the run is still going (4 shows it)"
        elif outcome is None:
            text = "no run yet (or it was cancelled before its first trial): choose models on 3 and press r"
        elif outcome.recommendation is None:
            text = "the run was cancelled before a decision; r on 3 or 4 runs it again (finished trials come from the cache)"
        else:
            text = "\n".join(decision_lines(outcome.recommendation))
        self.query_one("#decision", Static).update(text)
        profile = state.profile if state.profile is not state.here and state.profile else None
        models = [r.entry.id for r in state.candidates if r.entry.id in state.selected]
        task_file = self.sizer.task_path or self.sizer.task_file
        command = headless_command(task_file, models, state.strategies, state.limit,
                                   profile.name if profile else None, state.engine)
        self.query_one("#command", Static).update(f"Headless: {escape(command)}" + _unsaved_note(self.sizer))

    def action_save(self) -> None:
        if self.sizer.state.outcome is None:
            self.sizer.note_error("nothing to save yet: run some trials first")
            return

        save_as(self.app, "Save the report (TOML) as:", DEFAULT_REPORT, self._write)

    def _write(self, path: Path) -> None:
        from sizer.core.results.report import write_report

        try:
            write_report(path, self.sizer.state.outcome)
        except SizerError as exc:
            self.sizer.note_error(str(exc))
            return
        except OSError as exc:
            self.sizer.note_error(f"{path}: cannot write ({exc.strerror})")
            return
        self.sizer.saved_report = path
        self.notify(f"saved to {path}")
