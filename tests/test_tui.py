"""The Textual app driven by Pilot: the whole demo flow on the real MiniLM encoder, task editing,
profile switching, errors as notifications, 80x24, NO_COLOR, and key handling while a trial runs."""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import time
import tomllib

import pytest
from textual import events as textual_events

from sizer.core import events
from sizer.core.hardware.profile import simulated
from sizer.core.task.spec import load_task
from sizer.tui.app import SizerApp
from sizer.tui.bridge import CoreEvent
from sizer.tui.entry import HEADLESS_HINT, demo_task, launch

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROFILE = "1x RTX 4090"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))


def make_app(**kw) -> SizerApp:
    return SizerApp(kw.pop("task", demo_task()), here=simulated(PROFILE), **kw)


async def ready(app: SizerApp, pilot) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def test_launch_without_a_terminal_prints_one_line_and_exits_2(capsys):
    assert not sys.stdin.isatty()  # pytest captures stdin
    assert launch(None) == 2
    err = capsys.readouterr().err
    assert err == HEADLESS_HINT + "\n" and "sizer run" in err


def test_demo_task_is_a_valid_task():
    task = load_task(demo_task())
    assert task.kind == "classify" and len(task.labels) == 8


def test_progress_messages_coalesce_per_trial_only():
    p1 = CoreEvent(events.TrialProgress("m", "few-shot", 1, 10))
    p2 = CoreEvent(events.TrialProgress("m", "few-shot", 2, 10))
    other = CoreEvent(events.TrialProgress("m", "zero-shot", 2, 10))
    started = CoreEvent(events.TrialStarted("m", "few-shot", 10))
    assert p1.can_replace(p2)
    assert not p1.can_replace(other)
    assert not p1.can_replace(started) and not started.can_replace(started)


def test_steps_switch_with_number_keys_and_header_shows_the_step():
    async def go():
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            seen = []
            for key in "123456":
                await pilot.press(key)
                seen.append((app.current_mode, app.screen.sub_title))
            return seen

    seen = asyncio.run(go())
    assert [mode for mode, _ in seen] == ["hardware", "task", "candidates", "run", "results", "recommendation"]
    assert [title for _, title in seen][2] == "step 3 Models"


def test_task_screen_edits_validate_inline_and_save_reads_back(tmp_path):
    async def go():
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            await pilot.press("2")
            before = len(app.state.form.rows)
            # the demo's examples come from a CSV: the first edit asks (y) before writing them inline
            await pilot.press("a", "y", *"my card never came", "enter", *"card_arrival", "enter")
            added = len(app.state.form.rows) - before
            task_after_add = len(app.state.task.examples)
            await pilot.press("d")  # deletes the row under the cursor (the first)
            after_delete = len(app.state.form.rows)
            await pilot.click("#labels")
            await pilot.press("end", "ctrl+u", *"card_arrival")  # one label only: invalid
            status = str(app.screen.query_one("#task-status").render())
            labels = ", ".join(load_task(demo_task()).labels)
            await pilot.press("ctrl+u", *labels)  # restore them
            await pilot.click("#examples")
            target = tmp_path / "edited.toml"
            await pilot.press("ctrl+s", "end", "ctrl+u", *str(target), "enter")
            await pilot.pause()
            return before, added, task_after_add, after_delete, status, target, app.task_path

    before, added, task_after_add, after_delete, status, target, task_path = asyncio.run(go())
    assert added == 1 and task_after_add == before + 1 and after_delete == before
    assert "labels" in status and "at least two" in status
    data = tomllib.loads(target.read_text())
    assert len(data["examples"]) == before and data["labels"]["card_arrival"]
    assert load_task(target).labels == load_task(demo_task()).labels
    assert task_path == target


def test_switch_profile_from_the_dialog_reestimates_candidates():
    async def go():
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            rtx = {r.entry.id: r.fit for r in app.state.candidates}
            await pilot.press("p", *"1x H100 80GB", "enter")
            await ready(app, pilot)
            return app.state.profile.name, rtx, {r.entry.id: r.fit for r in app.state.candidates}

    name, rtx, h100 = asyncio.run(go())
    assert name == "1x H100 80GB"
    assert rtx["Qwen/Qwen2.5-32B-Instruct"] == "split" and h100["Qwen/Qwen2.5-32B-Instruct"] == "fits"


def test_core_errors_are_notifications_not_crashes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "classify"\nlabels = ["a"]\n')

    async def go():
        app = make_app(task=None)
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            await pilot.press("2", "o", "end", "ctrl+u", *str(bad), "enter")
            await pilot.press("3", "r")  # no task: running is refused with a message
            await pilot.pause()
            return [n.message for n in app._notifications], app.is_running, app.state.running

    messages, alive, running = asyncio.run(go())
    assert any(str(bad) in m for m in messages) and any("no task" in m for m in messages)
    assert alive and not running


def test_every_screen_renders_at_80x24():
    async def go():
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(app, pilot)
            sizes = {}
            for key, widget in zip("12345", ("#hw-summary", "#examples", "#models", "#run-log", "#trials")):
                await pilot.press(key)
                sizes[key] = app.screen.query_one(widget).region.height
            return sizes

    sizes = asyncio.run(go())
    assert all(height >= 3 for height in sizes.values()), sizes


def test_no_color_renders_without_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(app, pilot)
            return app.no_color, app.export_screenshot()

    no_color, svg = asyncio.run(go())
    import re

    fills = {m.lower() for m in re.findall(r"fill: ?#([0-9a-fA-F]{6})", svg)}
    channels = [(int(f[0:2], 16), int(f[2:4], 16), int(f[4:6], 16)) for f in fills]
    coloured = [c for c in channels if max(c) - min(c) > 8]  # greys only (the export's default text is c5c8c6)
    assert no_color and fills and not coloured, coloured


@pytest.mark.slow
def test_whole_flow_on_the_demo_task_keyboard_only(tmp_path):
    """Demo task, MiniLM only, few-shot, 16 test examples: run, read the decision, save, read back."""
    report = tmp_path / "report.toml"

    async def go():
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            await pilot.press("3", "slash", *"SmolLM2-135", "enter", "space")  # deselect the 135M LM
            await pilot.click("#limit")
            await pilot.press(*"16")
            await pilot.click("#strategies")
            strategies = app.state.strategies
            for s in strategies:  # keep few-shot only
                if s != "few-shot":
                    await pilot.press("space")
                await pilot.press("down")
            await pilot.click("#models")
            await pilot.press("r")
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("6")
            decision = str(app.screen.query_one("#decision").render())
            await pilot.press("s", "end", "ctrl+u", *str(report), "enter")
            await pilot.pause()
            first = tomllib.loads(report.read_text())
            report.write_text("stale")
            await pilot.press("s", "end", "ctrl+u", *str(report), "enter")
            asked = type(app.screen).__name__
            await pilot.press("y")  # overwrite, confirmed
            await pilot.pause()
            return app.state, decision, first, asked

    state, decision, first, asked = asyncio.run(go())
    assert state.selected == {MINILM} and state.strategies == ["few-shot"] and state.limit == 16
    assert [(t.model, t.strategy, t.status) for t in state.trials] == [(MINILM, "few-shot", "ok")]
    rec = state.outcome.recommendation
    assert rec is not None and rec.model in decision or "Nothing tried meets" in decision
    data = tomllib.loads(report.read_text())
    assert data["recommendation"]["met"] == rec.met and data["recommendation"].get("model", "") == rec.model
    assert [t["model"] for t in data["trials"]] == [MINILM]
    assert asked == "ConfirmDialog"
    assert data["recommendation"] == first["recommendation"] and data["trials"] == first["trials"]


async def key_latency(app: SizerApp, key: str, handled) -> float:
    """Seconds from a key event reaching the app to `handled()` turning true. (Pilot.press is no
    measure here: it also waits, up to 2 s, for the whole process to go idle.)"""
    began = time.perf_counter()
    app.post_message(textual_events.Key(key, None))
    while not handled():
        await asyncio.sleep(0.001)
    return time.perf_counter() - began


@pytest.mark.slow
def test_key_presses_are_handled_within_100ms_while_a_trial_runs():
    """While a SmolLM2 trial scores (one pack of 24 examples: seconds of work in one forward pass
    on the worker thread), cursor keys on the Models table are handled."""

    async def go():
        app = make_app(limit=24)
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            app.state.selected, app.state.strategies = {SMOLLM}, ["zero-shot"]
            await pilot.press("3")
            app.action_run()
            while app.state.running and not app.state.live.model:  # until scoring has started
                await asyncio.sleep(0.05)
            await pilot.press("3")
            table = app.screen.query_one("#models")
            latencies = []
            while app.state.running and len(latencies) < 20:
                row = table.cursor_row
                elapsed = await key_latency(app, "down" if row == 0 else "up", lambda: table.cursor_row != row)
                if app.state.running and app.state.live.done < app.state.live.total:
                    latencies.append(elapsed)  # handled while the trial was still scoring
                await asyncio.sleep(0.1)
            app.action_cancel_run()
            await app.workers.wait_for_complete()
            return latencies

    latencies = asyncio.run(go())
    assert len(latencies) >= 5, f"the trial ended after {len(latencies)} presses"
    print(f"key latency during a trial: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} presses")
    assert statistics.median(latencies) < 0.1


@pytest.mark.slow
def test_run_screen_shows_loading_then_a_live_metric_within_a_second_of_each_trial_starting():
    """`r` on the demo (both offline models, zero-shot and few-shot, 16 test examples, then the
    quantization rungs): the Run screen says which model loads, and within a second of each
    trial's scoring starting it shows a running metric and examples/s. The screen's text is read
    after every state change."""

    async def go():
        app = make_app(limit=16)
        seen: list[tuple[float, str, tuple[str, str], str, str]] = []
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            app.state.strategies = ["zero-shot", "few-shot"]
            await pilot.press("4")
            render = app.changed

            def changed() -> None:
                render()
                live, screen = app.state.live, app.screen
                seen.append((time.perf_counter(), live.phase, (live.model, live.strategy),
                             str(screen.query_one("#run-trial").render()), str(screen.query_one("#run-stats").render())))

            app.changed = changed
            await pilot.press("r")
            while app.state.running:
                await asyncio.sleep(0.1)
            await app.workers.wait_for_complete()
            return seen, [(t.model, t.strategy, t.status) for t in app.state.trials]

    seen, trials = asyncio.run(go())
    titles = {title for _, _, _, title, _ in seen}
    assert f"loading {SMOLLM} (1 of 2)" in titles and f"loading {MINILM} (2 of 2)" in titles, titles
    started: dict[tuple[str, str], float] = {}
    shown: dict[tuple[str, str], float] = {}
    for when, phase, trial, title, stats in seen:
        if phase != "scoring" or title != f"{trial[0]} · {trial[1]}":
            continue
        started.setdefault(trial, when)
        figures = re.search(r"metric (\S+) .*?(\S+) examples/s", stats)
        if figures and "-" not in (figures.group(1), figures.group(2)):
            shown.setdefault(trial, when)
    scored = {(m, s) for m, s, status in trials if status in ("ok", "stopped-early")}
    assert len(scored) >= 3 and scored <= set(started) == set(shown), (trials, started, shown)
    delays = {f"{m.split('/')[-1]} {s}": round(shown[(m, s)] - started[(m, s)], 2) for m, s in started}
    print("seconds from a trial's scoring start to its metric on screen:", delays)
    assert max(delays.values()) < 1.0, delays


def test_headless_command_names_the_task_file_after_the_task_screen_was_visited():
    async def go():
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            await pilot.press("2", "6")
            await pilot.pause()
            return str(app.screen.query_one("#command").render())

    command = asyncio.run(go())
    assert f"sizer run {demo_task()} " in command.replace("\n", " ") and "TASK.toml" not in command


def test_the_engine_selector_reestimates_every_candidate_for_that_engine():
    """On a 1x RTX 4090, SmolLM2 as transformers holds fp32/bf16 float weights; as llama.cpp it
    holds its Q4_1 GGUF: the Models screen's figures must change with the selector, and the run it
    starts (and the headless command it shows) must use that engine."""
    from textual.widgets import Select

    async def go():
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await ready(app, pilot)
            await pilot.press("3")
            need = {r.entry.id: r.need_bytes for r in app.state.candidates}
            app.screen.query_one("#engine", Select).value = "llama.cpp"
            await pilot.pause()
            await ready(app, pilot)
            return app.state.engine, need, {r.entry.id: r.need_bytes for r in app.state.candidates}, app._run_spec()

    chosen, before, after, spec = asyncio.run(go())
    assert chosen == "llama.cpp" and spec.engine == "llama.cpp"
    assert after[SMOLLM] < before[SMOLLM]  # 4.5-bit GGUF weights against 16-bit floats
