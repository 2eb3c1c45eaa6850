"""Messages the app's workers post to the App (results of long work in threads); core progress
events arrive as `sizer.tui.bridge.CoreEvent`."""

from __future__ import annotations

from textual.message import Message

from sizer.core.decide.types import RunResult
from sizer.core.hardware.devices import HardwareProfile
from sizer.tui import engine


class TrialDone(Message):
    def __init__(self, row: engine.TrialRow) -> None:
        super().__init__()
        self.row = row


class RunDone(Message):
    def __init__(self, outcome: RunResult | None, error: str = "") -> None:
        super().__init__()
        self.outcome, self.error = outcome, error


class ProfileReady(Message):
    def __init__(self, profile: HardwareProfile | None, here: bool, error: str = "") -> None:
        super().__init__()
        self.profile, self.here, self.error = profile, here, error


class CandidatesReady(Message):
    def __init__(self, rows: list[engine.CandidateRow], error: str = "", added: str = "") -> None:
        super().__init__()
        self.rows, self.error, self.added = rows, error, added  # added: a model just added by name


class DownloadsDone(Message):
    def __init__(self, left_out: dict[str, str], cancelled: bool = False, error: str = "") -> None:
        super().__init__()
        self.left_out, self.cancelled, self.error = left_out, cancelled, error
