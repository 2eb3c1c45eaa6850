"""Step 1: the hardware profile: devices with memory bars, measured or datasheet speed."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from sizer.core.hardware import gpu_specs
from sizer.core.hardware.devices import Figures, HardwareProfile
from sizer.tui.fmt import flops, gib
from sizer.tui.screens import StepScreen
from sizer.tui.screens.dialogs import ProfileDialog
from sizer.tui.widgets.membar import MemoryBar


def speed_line(label: str, figures: Figures) -> str:
    bandwidth = f"{figures.bandwidth_gbs:,.0f} GB/s" if figures.bandwidth_gbs else "-"
    return (f"{label:<10} {bandwidth:>11}  fp32 {flops(figures.flops.get('fp32')):>15}  "
            f"bf16 {flops(figures.flops.get('bf16')):>15}  ({figures.source})")


def profile_lines(profile: HardwareProfile) -> list[str]:
    cpu = profile.cpu
    title = f"[b]{escape(profile.name)}[/b]" + (" [i](simulated)[/i]" if profile.simulated else "")
    lines = [title, f"CPU  {cpu.model}: {cpu.physical_cores} physical / {cpu.logical_cores} logical cores",
             f"RAM  {gib(cpu.ram_total_bytes)} total, {gib(cpu.ram_available_bytes)} available"
             + (f"; {escape(cpu.ram_source)}" if cpu.ram_source else ""), "",
             speed_line("cpu", cpu.figures)]
    lines += [speed_line(f"gpu {g.index}", g.figures) for g in profile.gpus]
    return lines


class HardwareScreen(StepScreen):
    STEP = "hardware"
    BINDINGS = [
        Binding("p", "profile", "Simulate"),
        Binding("t", "this_machine", "This machine"),
        Binding("m", "remeasure", "Re-measure"),
        Binding("n", "app.step('task')", "Next"),
    ]

    def body(self) -> ComposeResult:
        with VerticalScroll(id="hardware"):
            yield Static("detecting this machine and measuring its speed...", id="hw-summary")
            yield VerticalScroll(id="hw-bars")
            yield Static("", id="hw-notes", classes="hint")

    def show_state(self) -> None:
        profile = self.sizer.state.profile
        if profile is None or not self.changed_since_shown("profile", id(profile)):
            return
        self.query_one("#hw-summary", Static).update("\n".join(profile_lines(profile)))
        bars = self.query_one("#hw-bars")
        bars.remove_children()
        devices = [(f"GPU {g.index} {g.name}", g.total_bytes, g.free_bytes) for g in profile.gpus]
        devices.append(("RAM", profile.cpu.ram_total_bytes, profile.cpu.ram_available_bytes))
        bars.mount_all(MemoryBar(*d) for d in devices)
        notes = list(profile.notes) + [f"{f.source}: {f.what}" for f in self._figures(profile) if f.what]
        self.query_one("#hw-notes", Static).update("\n".join(dict.fromkeys(notes)))

    @staticmethod
    def _figures(profile: HardwareProfile) -> list[Figures]:
        return [profile.cpu.figures] + [g.figures for g in profile.gpus]

    def action_profile(self) -> None:
        def chosen(spec: str | None) -> None:
            if spec is not None:
                self.sizer.use_profile(None if spec == ProfileDialog.THIS else spec)

        self.app.push_screen(ProfileDialog(gpu_specs.known_names()), chosen)

    def action_this_machine(self) -> None:
        self.sizer.use_profile(None)

    def action_remeasure(self) -> None:
        self.notify("measuring this machine (a few seconds)...")
        self.sizer.detect_hardware(remeasure=True)
