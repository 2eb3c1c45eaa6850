"""Modal dialogs: pick a profile, enter a path, confirm, paste text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, OptionList, TextArea
from textual.widgets.option_list import Option


class _Dialog(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class ProfileDialog(_Dialog):
    """A simulated machine by name ("1x H100 80GB", "8 vCPU 32GB"), or this machine."""

    THIS = "this machine"

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Plan for which machine? Type e.g. 2x RTX 4090, M2 Max 64GB, 8 vCPU 32GB, or pick one.")
            yield Input(placeholder="machine", suggester=SuggestFromList(self.names, case_sensitive=False), id="spec")
            yield OptionList(Option(self.THIS, id="__here__"), *[Option(f"1x {n}") for n in self.names], id="names")

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.THIS if event.option.id == "__here__" else str(event.option.prompt))


class PathDialog(_Dialog):
    """Ask for a file path; returns it, or None on Escape."""

    def __init__(self, prompt: str, value: str) -> None:
        super().__init__()
        self.prompt, self.value = prompt, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt)
            yield Input(self.value, id="path")
            yield Label("Enter to accept, Escape to cancel", classes="hint")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class ConfirmDialog(_Dialog):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class TextDialog(_Dialog):
    """Multi-line text (pasted CSV, an example's fields). ctrl+s accepts."""

    BINDINGS = [Binding("ctrl+s", "accept", "Accept"), Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, prompt: str, text: str = "") -> None:
        super().__init__()
        self.prompt, self.text = prompt, text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog tall"):
            yield Label(self.prompt)
            yield TextArea(self.text, id="text")
            yield Label("ctrl+s to accept, Escape to cancel", classes="hint")

    def action_accept(self) -> None:
        self.dismiss(self.query_one(TextArea).text)


class RowDialog(_Dialog):
    """One example: its text and its label (or reference). Returns (text, answer) or None."""

    def __init__(self, text: str = "", answer: str = "", answer_name: str = "label") -> None:
        super().__init__()
        self.text, self.answer, self.answer_name = text, answer, answer_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Example text")
            yield Input(self.text, id="row-text")
            yield Label(self.answer_name.capitalize())
            yield Input(self.answer, id="row-answer")
            yield Label("Enter to accept, Escape to cancel", classes="hint")

    @on(Input.Submitted, "#row-text")
    def _next(self) -> None:
        self.query_one("#row-answer", Input).focus()

    @on(Input.Submitted, "#row-answer")
    def _done(self) -> None:
        self.dismiss((self.query_one("#row-text", Input).value.strip(), self.query_one("#row-answer", Input).value.strip()))


def save_as(app: Any, prompt: str, default: str, write: Callable[[Path], None]) -> None:
    """Ask for a path (PathDialog), confirm before overwriting an existing file, then `write(path)`."""

    def chosen(answer: str | None) -> None:
        if not answer:
            return
        path = Path(answer).expanduser()
        if path.exists():
            app.push_screen(ConfirmDialog(f"{path} exists. Overwrite it?"), lambda yes: write(path) if yes else None)
        else:
            write(path)

    app.push_screen(PathDialog(prompt, default), chosen)
