"""One screen per step. Each renders from `app.state` in `show_state()`; none changes state itself
except through the App's methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from sizer.tui.steps import step_title

if TYPE_CHECKING:
    from sizer.tui.app import SizerApp



class StepScreen(Screen):
    STEP = ""
    _ready = False

    @property
    def sizer(self) -> "SizerApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.sub_title = f"step {step_title(self.STEP)}"
        self._ready = True
        self.show_state()

    def render_state(self) -> None:
        """Called by the App after a state change; a no-op until the screen is composed."""
        if self._ready:
            self.show_state()

    def on_screen_resume(self) -> None:
        self.show_state()

    def show_state(self) -> None:
        """Render the parts of the state this screen shows."""

    def changed_since_shown(self, key: str, signature: object) -> bool:
        """True (and remembered) when `signature` differs from the one last shown under `key`:
        screens rebuild tables and charts only when what they show has changed."""
        shown = self.__dict__.setdefault("_shown", {})
        if key in shown and shown[key] == signature:
            return False
        shown[key] = signature
        return True
