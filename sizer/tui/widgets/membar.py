"""A memory bar: the device's name, a bar of used memory, and free of total."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from sizer.tui.fmt import gib


class MemoryBar(Horizontal):
    def __init__(self, name: str, total: int, free: int) -> None:
        super().__init__(classes="membar")
        self.device, self.total, self.free = name, total, free

    def compose(self) -> ComposeResult:
        yield Label(self.device, classes="membar-name")
        bar = ProgressBar(total=max(self.total, 1), show_eta=False, show_percentage=False)
        bar.progress = self.total - self.free
        yield bar
        yield Label(f"{gib(self.free)} free of {gib(self.total)}", classes="membar-text")
