"""Step 2: create or edit a task: kind, instruction, labels, target and the examples table.

Every edit is checked by the core (`task_form.validate` loads the form through `load_task`); its
one-line message shows under the form, and a valid form becomes the App's task. Saving writes the
core's `dump_task` of the form atomically: keys the form does not show are kept. Examples read from
a file stay in that file until a row is edited, and the screen asks before writing them inline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, Select, Static

from sizer.core.errors import SizerError
from sizer.core.fileio import atomic_write_text
from sizer.tui import task_form
from sizer.tui.screens import StepScreen
from sizer.tui.screens.dialogs import ConfirmDialog, PathDialog, RowDialog, TextDialog, save_as

TEXT_WIDTH = 60


class TaskScreen(StepScreen):
    STEP = "task"
    AUTO_FOCUS = "#examples"
    BINDINGS = [
        Binding("o", "open", "Open"),
        Binding("ctrl+s", "save", "Save"),
        Binding("a", "add_row", "Add"),
        Binding("e", "edit_row", "Edit"),
        Binding("delete,d", "delete_row", "Delete"),
        Binding("v", "paste", "Paste CSV"),
        Binding("l", "load_rows", "Load file"),
        Binding("n", "app.step('candidates')", "Next"),
    ]

    def body(self) -> ComposeResult:
        with Vertical(id="task"):
            with Horizontal(classes="row"):
                yield Label("Name", classes="field-label")
                yield Input(id="name", classes="short", compact=True)
                yield Label("Kind", classes="field-label")
                yield Select([(k, k) for k in task_form.KINDS], id="kind", allow_blank=False, classes="short", compact=True)
                yield Label("Target", classes="field-label")
                yield Input(id="target", placeholder="0.9 or within 0.03", classes="short", compact=True)
            with Horizontal(classes="row"):
                yield Label("Instruction", classes="field-label")
                yield Input(id="instruction", compact=True)
            with Horizontal(classes="row"):
                yield Label("Labels", classes="field-label", id="labels-label")
                yield Input(id="labels", placeholder="comma-separated", compact=True)
            yield Static("", id="task-status")
            yield DataTable(id="examples", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#examples", DataTable).add_columns("text", "label")
        super().on_mount()

    def show_state(self) -> None:
        form = self.sizer.state.form
        with self.prevent(Input.Changed, Select.Changed):
            self.query_one("#name", Input).value = form.name
            self.query_one("#kind", Select).value = form.kind
            self.query_one("#target", Input).value = form.target
            self.query_one("#instruction", Input).value = form.instruction
            plural = form.fields if form.kind == "extract" else form.labels
            self.query_one("#labels", Input).value = ", ".join(plural)
        self.query_one("#labels-label", Label).update("Fields" if form.kind == "extract" else "Labels")
        if self.changed_since_shown("rows", id(form.rows)):
            self._fill_table()
        self._show_status()

    def _fill_table(self) -> None:
        table = self.query_one("#examples", DataTable)
        row = table.cursor_row
        table.clear()
        for i, (text, answer, *_) in enumerate(self.sizer.state.form.rows):
            shown = text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"
            table.add_row(shown, answer, key=str(i))
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def _show_status(self, error: str = "") -> None:
        task, form = self.sizer.state.task, self.sizer.state.form
        status = self.query_one("#task-status", Static)
        status.set_class(bool(error), "error")
        if error:
            status.update(error)
        elif task is None:
            status.update("no task yet: fill in the form and add examples, or o to open a task file")
        else:
            where = str(self.sizer.task_path) if self.sizer.task_path else "not saved"
            source = f" from {form.examples_file.path.name}" if form.examples_file else ""
            given = {"test_file": ", test set given by test_file",
                     "split column": ", test set given by the split column"}.get(task.split_from, "")
            status.update(f"{len(form.rows)} examples{source}{given}, {len(task.labels) or len(task.fields) or 0} "
                          f"{'labels' if task.kind == 'classify' else 'fields'}; valid ({where})")

    # ------------------------------------------------------------------ edits

    def _edited(self) -> None:
        """Check the form with the core; a valid one becomes the App's task (unsaved)."""
        try:
            task = task_form.validate(self.sizer.state.form)
        except SizerError as exc:
            self._show_status(str(exc))
            return
        self.sizer.use_task(task, None)

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        if event.value != event.input.value:
            return  # stale: show_state has set the field since
        form, value = self.sizer.state.form, event.value
        if event.input.id in ("name", "instruction", "target"):
            setattr(form, event.input.id, value.strip())
        elif event.input.id == "labels":
            items = [x.strip() for x in value.split(",") if x.strip()]
            if form.kind == "extract":
                form.fields = items
            else:
                form.labels = items
        self._edited()

    @on(Select.Changed, "#kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        if event.value != event.select.value or event.value == self.sizer.state.form.kind:
            # stale (the Select's first value, posted on mount after show_state set the task's) or no change
            return
        self.sizer.state.form.kind = str(event.value)
        self.query_one("#labels-label", Label).update("Fields" if event.value == "extract" else "Labels")
        self._edited()

    def _set_rows(self, rows: list[task_form.FormRow]) -> None:
        self.sizer.state.form.rows = rows  # a new list: show_state refills the table
        self._edited()
        self.show_state()

    def _inline_then(self, edit: Callable[[], None]) -> None:
        """Run `edit` on the rows; when they come from a file, first ask to write them inline."""
        form = self.sizer.state.form
        if form.examples_file is None:
            edit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                form.examples_file = None
                edit()

        files = " and ".join(str(p) for p in (form.examples_file.path, form.examples_file.test_path) if p)
        self.app.push_screen(ConfirmDialog(
            f"The {len(form.rows)} examples come from {files}. Editing them writes them into the task "
            "file instead (the data file stays as it is). Go on?"), answered)

    def _answer_name(self) -> str:
        return "label" if self.sizer.state.form.kind == "classify" else "reference"

    def action_add_row(self) -> None:
        def added(row: tuple[str, str] | None) -> None:
            if row:
                self._set_rows(self.sizer.state.form.rows + [task_form.FormRow(*row)])

        self._inline_then(lambda: self.app.push_screen(RowDialog(answer_name=self._answer_name()), added))

    def action_edit_row(self) -> None:
        rows = self.sizer.state.form.rows
        index = self.query_one("#examples", DataTable).cursor_row
        if not rows or index >= len(rows):
            return

        def edited(row: tuple[str, str] | None) -> None:
            if row:
                self._set_rows(rows[:index] + [rows[index]._replace(text=row[0], answer=row[1])] + rows[index + 1:])

        old = rows[index]
        self._inline_then(lambda: self.app.push_screen(
            RowDialog(old.text, old.answer, answer_name=self._answer_name()), edited))

    def action_delete_row(self) -> None:
        rows = self.sizer.state.form.rows
        index = self.query_one("#examples", DataTable).cursor_row
        if rows and index < len(rows):
            self._inline_then(lambda: self._set_rows(rows[:index] + rows[index + 1:]))

    def action_paste(self) -> None:
        def pasted(text: str | None) -> None:
            if not text:
                return
            try:
                added = task_form.rows_from_csv(text)
            except SizerError as exc:
                self.sizer.note_error(str(exc))
                return
            self._inline_then(lambda: self._set_rows(self.sizer.state.form.rows + added))

        self.app.push_screen(TextDialog("Paste CSV rows: text,label (one example per line)"), pasted)

    def action_load_rows(self) -> None:
        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                added = task_form.rows_from_file(Path(path).expanduser(), self.sizer.state.form.kind)
            except SizerError as exc:
                self.sizer.note_error(str(exc))
                return
            self._inline_then(lambda: self._set_rows(self.sizer.state.form.rows + added))

        self.app.push_screen(PathDialog("Add examples from a CSV, JSONL or task TOML file:", ""), chosen)

    # ------------------------------------------------------------------ files

    def action_open(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.sizer.open_task(Path(path).expanduser())

        current = str(self.sizer.task_path or "")
        self.app.push_screen(PathDialog("Open a task TOML file:", current), chosen)

    def action_save(self) -> None:
        form = self.sizer.state.form
        try:
            task_form.validate(form)
        except SizerError as exc:
            self.sizer.note_error(f"not saved: {exc}")
            return
        default = self.sizer.task_path.with_name(self.sizer.task_path.stem + "-edited.toml") if self.sizer.task_path \
            else Path(f"{form.name}.toml")

        def write(path: Path) -> None:
            try:
                atomic_write_text(path, task_form.to_toml(form, path))
            except OSError as exc:
                self.sizer.note_error(f"{path}: cannot write ({exc.strerror})")
                return
            self.sizer.open_task(path)
            self.notify(f"task saved to {path}")

        save_as(self.app, "Save the task as:", str(default), write)
