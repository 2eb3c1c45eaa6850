"""User-facing errors: one line that names the file/field/model and what to do."""

from __future__ import annotations


class SizerError(Exception):
    """A problem the user can fix. The CLI prints it as one line and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TrialCancelled(SizerError):
    """The user stopped the run (Ctrl-C, the app's cancel): what was scored is kept in the cache."""

    exit_code = 130
