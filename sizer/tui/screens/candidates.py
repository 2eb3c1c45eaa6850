"""Step 3: which catalog models to try, with fit, memory and speed on the active profile, and which
strategies. Space toggles a model; filters and sorting only change what is shown; d downloads the
selected models that are not on this machine (x stops it). A Hub repo id or a model path typed in
the search box that matches no row is sized and added on Enter."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, SelectionList, Static

from sizer.core.estimate.fit import ENGINES, LEVELS
from sizer.core.trials.strategies import STRATEGIES
from sizer.tui.engine import CandidateRow
from sizer.tui.fmt import params, rate, size
from sizer.tui.screens import StepScreen

SORTS = {"size": lambda r: -r.entry.params, "speed": lambda r: -(r.decode_tps or 0.0)}


class CandidatesScreen(StepScreen):
    STEP = "candidates"
    AUTO_FOCUS = "#models"
    BINDINGS = [
        Binding("space", "toggle", "Select"),
        Binding("s", "sort('size')", "By size"),
        Binding("f", "sort('speed')", "By speed"),
        Binding("slash", "search", "Search"),
        Binding("r", "app.run", "Run"),
        Binding("d", "app.download", "Download"),
        Binding("x", "stop_download", "Stop download"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort_key = "size"
        self._families: list[str] = []

    def body(self) -> ComposeResult:
        with Horizontal(id="candidates"):
            with Vertical(id="cand-main"):
                with Horizontal(classes="row"):
                    yield Input(placeholder="search by name (/)", id="search", compact=True)
                    yield Select([], prompt="all families", id="family", compact=True)
                    yield Select([(level, level) for level in LEVELS], prompt="any fit", id="fit", compact=True)
                    yield Select([(e, e) for e in ENGINES], prompt="default engine", id="engine", compact=True)
                yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
                yield Static("", id="cand-status", classes="hint")
                yield Static("", id="download-status", classes="hint")
                yield ProgressBar(show_eta=False, id="download-bar")
            with Vertical(id="cand-side"):
                yield Label("Strategies")
                yield SelectionList[str](*[(s, s, True) for s in STRATEGIES], id="strategies")
                yield Label("Test examples per trial")
                yield Input(placeholder="all", id="limit", type="integer", compact=True)

    def on_mount(self) -> None:
        self.query_one("#models", DataTable).add_columns(" ", "model", "params", "fit", "memory", "tok/s", "on disk", "download")
        super().on_mount()

    def visible(self) -> list[CandidateRow]:
        query = self.query_one("#search", Input).value.strip().lower()
        family = self.query_one("#family", Select).value
        fit = self.query_one("#fit", Select).value
        rows = [r for r in self.sizer.state.candidates
                if query in r.entry.id.lower()
                and (family is Select.NULL or r.entry.family == family)
                and (fit is Select.NULL or r.fit == fit)]
        return sorted(rows, key=SORTS[self.sort_key])

    def show_state(self) -> None:
        state = self.sizer.state
        families = sorted({r.entry.family for r in state.candidates})
        family = self.query_one("#family", Select)
        with self.prevent(Select.Changed, Input.Changed, SelectionList.SelectedChanged):
            if families != self._families:
                family.set_options([(f, f) for f in families])
                self._families = families
            strategies = self.query_one("#strategies", SelectionList)
            for s in STRATEGIES:
                (strategies.select if s in state.strategies else strategies.deselect)(s)
            self.query_one("#limit", Input).value = "" if state.limit is None else str(state.limit)
        self._fill()
        self._show_download()

    def _show_download(self) -> None:
        fetching = self.sizer.state.fetching
        status, bar = self.query_one("#download-status", Static), self.query_one("#download-bar", ProgressBar)
        status.display = bar.display = fetching.active
        if self.changed_since_shown("download-active", fetching.active):
            self.refresh_bindings()
        if fetching.active:
            model = fetching.model or fetching.models[0]
            count = f" ({fetching.finished + 1} of {len(fetching.models)})" if len(fetching.models) > 1 else ""
            status.update(f"downloading {model}{count}: {size(fetching.done)} of {size(fetching.total)}; x stops")
            bar.update(total=max(fetching.total, 1), progress=fetching.done)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_download":
            return self.sizer.state.fetching.active
        return True

    def action_stop_download(self) -> None:
        self.sizer.action_cancel_download()

    def _fill(self) -> None:
        state = self.sizer.state
        shown = (id(state.candidates), frozenset(state.selected), self.sort_key, self.query_one("#search", Input).value,
                 self.query_one("#family", Select).value, self.query_one("#fit", Select).value)
        if not self.changed_since_shown("table", shown):
            return
        table = self.query_one("#models", DataTable)
        row = table.cursor_row
        table.clear()
        selected = self.sizer.state.selected
        for r in self.visible():
            table.add_row("✓" if r.entry.id in selected else " ", r.entry.id, params(r.entry.params), r.fit,
                          size(r.need_bytes), rate(r.decode_tps), "yes" if r.cached else "no",
                          size(r.download_bytes), key=r.entry.id)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        profile = self.sizer.state.profile
        where = profile.name if profile else "..."
        self.query_one("#cand-status", Static).update(
            f"{len(selected)} selected of {len(self.sizer.state.candidates)} models; fit and speed on {where}; "
            f"engine: {state.engine or 'llama.cpp for GGUF types, else transformers'}; context 4096")

    def action_toggle(self) -> None:
        table = self.query_one("#models", DataTable)
        if not table.row_count:
            return
        model = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        selected = self.sizer.state.selected
        selected.symmetric_difference_update({model})
        self._fill()

    def action_sort(self, key: str) -> None:
        self.sort_key = key
        self._fill()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Changed, "#search")
    @on(Select.Changed, "#family")
    @on(Select.Changed, "#fit")
    def _filter(self) -> None:
        self._fill()

    @on(Select.Changed, "#engine")
    def _engine(self, event: Select.Changed) -> None:
        self.sizer.use_engine(None if event.value is Select.NULL else str(event.value))

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        name = self.query_one("#search", Input).value.strip()
        if name and not self.visible() and ("/" in name or name.lower().endswith(".gguf")):
            self.query_one("#search", Input).value = ""  # a Hub repo id or a path: size it and select it
            self.notify(f"adding {name}...")
            self.sizer.add_model(name)
        self.query_one("#models", DataTable).focus()

    @on(Input.Changed, "#limit")
    def _limit(self, event: Input.Changed) -> None:
        value = event.value.strip()
        limit = int(value) if value.isdigit() and int(value) > 0 else None
        self.sizer.use_run_options(limit, self.sizer.state.strategies)

    @on(SelectionList.SelectedChanged, "#strategies")
    def _strategies(self, event: SelectionList.SelectedChanged) -> None:
        self.sizer.use_run_options(self.sizer.state.limit, list(event.selection_list.selected))
