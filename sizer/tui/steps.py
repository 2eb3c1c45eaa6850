"""The app's steps, in order: the one table the App's modes, number keys and footer labels, and
each screen's title are made from. A new screen is a module under `screens/` and a row here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from textual.binding import Binding


@dataclass(frozen=True)
class Step:
    mode: str      # the App's mode name
    title: str     # shown as "step N TITLE" in the header
    label: str     # the footer's label for the step's number key
    screen: str    # "module:Class", imported when the App mounts


STEPS = (
    Step("hardware", "Hardware", "Hardware", "sizer.tui.screens.hardware:HardwareScreen"),
    Step("task", "Task", "Task", "sizer.tui.screens.task:TaskScreen"),
    Step("candidates", "Models", "Models", "sizer.tui.screens.candidates:CandidatesScreen"),
    Step("run", "Run", "Run", "sizer.tui.screens.run:RunScreen"),
    Step("results", "Results", "Results", "sizer.tui.screens.results:ResultsScreen"),
    Step("recommendation", "Recommendation", "Decision", "sizer.tui.screens.recommendation:RecommendationScreen"),
)


def step_title(mode: str) -> str:
    """ "3 Models" for the candidates step."""
    number = next(i for i, step in enumerate(STEPS, 1) if step.mode == mode)
    return f"{number} {STEPS[number - 1].title}"


def step_bindings() -> list[Binding]:
    """Keys 1..N switch to the steps."""
    return [Binding(str(i), f"step('{step.mode}')", step.label) for i, step in enumerate(STEPS, 1)]


def step_screens() -> dict[str, Any]:
    """Mode name -> screen class, imported now."""
    screens = {}
    for step in STEPS:
        module, cls = step.screen.split(":")
        screens[step.mode] = getattr(importlib.import_module(module), cls)
    return screens
