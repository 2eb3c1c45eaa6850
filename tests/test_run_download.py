"""Downloads inside `sizer run`, against the local Hub stand-in (tests/hub_fixture.py) serving a
real random-initialised model: a missing candidate is fetched within the download budget and
trialled; one over the budget, under HF_HUB_OFFLINE or gated is left out with its reason and the
`sizer download` command, and the run recommends from what it has (the MiniLM encoder from its
offline package)."""

from __future__ import annotations

import tomllib
from types import SimpleNamespace

import pytest
from hub_fixture import hub_server  # noqa: F401  (pytest fixture)
from test_download import GATED, SHARDED, SINGLE, entries, models  # noqa: F401  (`models` is a fixture)

import tiny_models
from sizer.cli import main
from sizer.core.download.progress import human_bytes
from sizer.core.download import plan as download_plan
from sizer.core.download.in_run import _bisection_order, fetch_models, walk_order
from sizer.core.events import DownloadFinished

BANKING = "examples/banking.toml"
MINILM = tiny_models.MINILM
RUN = ("run", BANKING, "--strategies", "zero-shot", "--limit", "48", "--target", "0.75")


@pytest.fixture
def run_hub(hub_server, models, tmp_path, monkeypatch):
    """The stand-in hosting the tiny model (open and gated); a catalog of it and the offline MiniLM;
    a private HF cache (empty: the tiny model is not downloaded) and trial cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "sizer-cache"))
    hub_server.host(SINGLE, models.single)
    hub_server.host(GATED, models.single, gated=True)
    hosted = entries(models)
    offline = [e for e in tiny_models.offline_entries() if e.id == MINILM]
    catalog = tiny_models.write_catalog(tmp_path / "catalog", offline + [hosted[SINGLE], hosted[GATED]])
    monkeypatch.setenv("SIZER_CATALOG_DIR", str(catalog))
    return hub_server


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def trial_files_size(models) -> int:
    """Bytes a trial needs from the tiny repo: every file but the card and the ONNX export
    (config, generation config, tokenizer files, model.safetensors)."""
    return sum(p.stat().st_size for p in models.single.rglob("*")
               if p.is_file() and p.name not in ("README.md", "model.onnx"))


def test_run_downloads_a_missing_candidate_within_budget_and_trials_it(run_hub, models, tmp_path, capsys):
    out = tmp_path / "rec.toml"
    code, stdout, err = run_cli(capsys, *RUN, "--models", f"{MINILM},{SINGLE}", "--download-budget", "1",
                                "--out", str(out))
    assert code == 0, err
    assert f"download {SINGLE}: done" in err
    assert any(p.endswith("/model.safetensors") for p in run_hub.file_requests())
    data = tomllib.loads(out.read_text())
    cand = {c["model"]: c for c in data["candidates"]}
    assert cand[SINGLE]["cached"] and cand[SINGLE]["usable"]
    assert cand[SINGLE]["reason"] == "downloaded for this run"
    assert data["run"]["download_budget_gb"] == 1.0
    tried = [t for t in data["trials"] if t["model"] == SINGLE]
    # The tiny model is the only causal LM: the top of its own ladder, so it is always tried.
    assert tried and tried[0]["status"] in ("ok", "stopped-early"), tried
    assert tried[0]["metric"]["n"] > 0
    assert "left out" not in stdout


def test_progress_is_json_lines_with_json(run_hub, models, capsys):
    import json

    code, stdout, err = run_cli(capsys, *RUN, "--models", f"{MINILM},{SINGLE}", "--json")
    assert code == 0, err
    # transformers' "Loading weights" bars also reach stderr; the core's events are the JSON lines
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in lines]
    assert kinds.index("DownloadStarted") < kinds.index("DownloadFinished") < kinds.index("TrialStarted")
    started = next(e for e in lines if e["event"] == "DownloadStarted")
    finished = next(e for e in lines if e["event"] == "DownloadFinished")
    assert started["model"] == finished["model"] == SINGLE and finished["status"] == "done"
    bytes_done = [e for e in lines if e["event"] == "Progress" and e["stage"] == "download"]
    # The last progress line counts every byte but config.json's, fetched first (before the
    # download is announced, so that a gated repo fails there).
    config_size = (models.single / "config.json").stat().st_size
    assert bytes_done[-1]["done"] == bytes_done[-1]["total"] == started["total_bytes"] - config_size
    assert started["total_bytes"] == trial_files_size(models)
    json.loads(stdout)


def test_a_budget_smaller_than_the_files_leaves_it_out_and_the_run_recommends_from_what_it_has(
        run_hub, models, tmp_path, capsys):
    out = tmp_path / "rec.toml"
    code, stdout, err = run_cli(capsys, *RUN, "--models", f"{MINILM},{SINGLE}", "--download-budget", "0.001",
                                "--out", str(out))
    assert code == 0, err
    need = trial_files_size(models)
    # 0.001 GB = 1,000,000 bytes; the tiny model's files are ~16 MB (3.2M fp32 weights + tokenizer).
    assert need > 1_000_000
    reason = (f"left out: {human_bytes(need)} to download, more than the 1.0 MB left of the run's download "
              f"budget of 1.0 MB; fetch it with `sizer download {SINGLE}`")
    data = tomllib.loads(out.read_text())
    cand = {c["model"]: c for c in data["candidates"]}
    assert cand[SINGLE]["reason"] == reason and not cand[SINGLE]["usable"]
    assert not any(t["model"] == SINGLE for t in data["trials"])
    assert data["recommendation"]["model"] == MINILM and data["recommendation"]["met"]
    assert not run_hub.file_requests()  # sized from the listing; nothing fetched
    left_lines = [line for line in err.splitlines() if SINGLE in line]
    assert left_lines == [f"download {SINGLE}: left-out - {reason.removeprefix('left out: ').split('; fetch')[0]}"
                          f"; fetch it with `sizer download {SINGLE}`"]
    assert "left out (not downloaded)" in stdout and f"sizer download {SINGLE}" in stdout


def test_task_budget_is_used_without_the_flag(run_hub, tmp_path, capsys):
    labels = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "change_pin")
    task = tiny_models.write_task(tmp_path / "task.toml", tiny_models.banking_rows(labels, 12),
                                  name="budget-zero", kind="classify", instruction="Classify the message.",
                                  labels=list(labels), budget={"download_gb": 0})
    code, _, err = run_cli(capsys, "run", str(task), "--strategies", "zero-shot", "--target", "0.5",
                           "--models", f"{MINILM},{SINGLE}")
    assert code in (0, 1), err
    assert f"download {SINGLE}: left-out" in err and "download budget of 0 B" in err
    assert not run_hub.file_requests()


def test_hf_hub_offline_is_one_line_and_the_run_goes_on(run_hub, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stdout, err = run_cli(capsys, *RUN, "--models", f"{MINILM},{SINGLE}")
    assert code == 0, err
    offline = [line for line in err.splitlines() if "HF_HUB_OFFLINE" in line or SINGLE in line]
    assert len(offline) == 1 and "HF_HUB_OFFLINE" in offline[0] and SINGLE in offline[0], err
    assert run_hub.requests == []  # not one request to the Hub
    assert MINILM in stdout and f"{SINGLE}: HF_HUB_OFFLINE is set; fetch it with `sizer download {SINGLE}`" in stdout


def test_a_gated_repo_without_a_token_is_one_line_naming_it(run_hub, capsys):
    code, stdout, err = run_cli(capsys, *RUN, "--models", f"{MINILM},{GATED}")
    assert code == 0, err
    named = [line for line in err.splitlines() if GATED in line]
    assert len(named) == 1 and "gated" in named[0] and "HF_TOKEN" in named[0], err
    assert not any(p.endswith(".safetensors") for p in run_hub.file_requests())
    assert MINILM in stdout


def test_no_download_keeps_a_missing_candidate_out_without_a_request(run_hub, capsys, tmp_path):
    out = tmp_path / "rec.toml"
    code, _, err = run_cli(capsys, *RUN, "--models", f"{MINILM},{SINGLE}", "--no-download", "--out", str(out))
    assert code == 0, err
    assert run_hub.requests == [] and not [line for line in err.splitlines() if line.startswith("download")]
    cand = {c["model"]: c for c in tomllib.loads(out.read_text())["candidates"]}
    assert cand[SINGLE]["reason"] == f"not downloaded; fetch it with `sizer download {SINGLE}`"


@pytest.mark.parametrize("budget", ["-1", "lots", "nan"])
def test_a_bad_download_budget_is_one_line_exit_2(run_hub, capsys, budget):
    code, out, err = run_cli(capsys, *RUN, "--models", MINILM, "--download-budget", budget)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("sizer: error: --download-budget") and "0 or more" in lines[0]


def test_the_budget_is_shared_by_the_models_in_order(run_hub, models):
    run_hub.host(SHARDED, models.sharded)
    hosted = entries(models)
    need = trial_files_size(models)
    events = []
    # Room for the first model and 1,000 bytes more: the second (same weights, sharded) is left out.
    left_out = fetch_models([hosted[SINGLE], hosted[SHARDED]], need + 1000, events.append)
    assert list(left_out) == [SHARDED]
    assert left_out[SHARDED].split(", more than")[1] == (
        f" the 1.0 KB left of the run's download budget of {human_bytes(need + 1000)}")
    finished = [(e.model, e.status) for e in events if isinstance(e, DownloadFinished)]
    assert finished == [(SINGLE, "done"), (SHARDED, "left-out")]


def test_a_full_disk_leaves_the_model_out_before_any_file_is_fetched(run_hub, models, monkeypatch):
    monkeypatch.setattr(download_plan, "free_bytes", lambda folder: 1_000_000)
    events = []
    left_out = fetch_models([entries(models)[SINGLE]], None, events.append)
    assert "not enough disk space" in left_out[SINGLE] and "1.0 MB free" in left_out[SINGLE]
    assert [(e.status, e.command) for e in events if isinstance(e, DownloadFinished)] == [
        ("left-out", f"sizer download {SINGLE}")]
    assert not run_hub.file_requests()


def _cand(name: str, kind: str, params: int) -> SimpleNamespace:
    return SimpleNamespace(entry=SimpleNamespace(id=name, kind=kind, params=params))


def test_walk_order_puts_the_reference_then_ladder_tops_then_bisection_probes():
    causal = [_cand(f"c{p}", "causal", p) for p in (70, 32, 14, 8, 3, 1)]
    encoders = [_cand(f"e{p}", "encoder", p) for p in (40, 10, 2)]
    order = [c.entry.id for c in walk_order(encoders + causal)]
    # Reference: c70 (the largest); ladder tops: c70, e40. Causal ladder of 6 (indices 0..5):
    # bisection over 1..5 probes 3 (c8) first, then 4..5 -> 4 (c3), 1..2 -> 1 (c32), then 5 (c1), 2 (c14).
    # Encoder ladder of 3: 1..2 -> 1 (e10), then 2 (e2).
    assert order == ["c70", "e40", "c8", "c3", "c32", "c1", "c14", "e10", "e2"]
    assert _bisection_order(1) == [] and _bisection_order(2) == [1]


def test_models_screen_downloads_the_selected_model_with_d(run_hub, models, tmp_path):
    import asyncio

    from sizer.core.catalog.model_catalog import load_catalog
    from sizer.core.hardware.profile import simulated
    from sizer.tui.app import SizerApp
    from sizer.tui.entry import demo_task

    async def go():
        app = SizerApp(demo_task(), here=simulated("1x RTX 4090"))
        async with app.run_test(size=(120, 36)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("3")
            before = {r.entry.id: r.cached for r in app.state.candidates}
            stop_shown_idle = app.screen.check_action("stop_download", ())
            await pilot.press("slash", *"tiny-download", "enter", "space")  # find it, select it
            selected = set(app.state.selected)
            await pilot.press("d")
            await app.workers.wait_for_complete()
            await pilot.pause()
            await app.workers.wait_for_complete()  # the candidates re-estimated after the download
            await pilot.pause()
            after = {r.entry.id: r.cached for r in app.state.candidates}
            return before, stop_shown_idle, selected, after, app.state.fetching, list(app.state.log)

    before, stop_shown_idle, selected, after, fetching, log = asyncio.run(go())
    assert before[SINGLE] is False and before[MINILM] is True
    assert SINGLE in selected
    assert after[SINGLE] is True and after[GATED] is False  # only the selected model was fetched
    assert load_catalog().is_cached(entries(models)[SINGLE])
    # the progress reached the bar's state: every byte but config.json's (fetched first)
    assert not fetching.active and fetching.finished == 1 and fetching.model == SINGLE
    assert fetching.done == fetching.total == trial_files_size(models) - (models.single / "config.json").stat().st_size
    assert f"download {SINGLE}: done" in log
    assert stop_shown_idle is False  # "Stop download" is in the footer only while a download runs


def test_x_on_the_models_screen_stops_a_download_and_leaves_no_partial_file(run_hub, models, tmp_path, monkeypatch):
    import asyncio
    import threading

    from sizer.core.download import in_run as download_run
    from sizer.core.hardware.profile import simulated
    from sizer.tui.app import SizerApp
    from sizer.tui.entry import demo_task

    real_fetch, in_flight = download_run.fetch, threading.Event()

    def held_fetch(plan, sink, cancel):
        """The real fetch, entered only once the test has pressed x (so the stop lands mid-download)."""
        in_flight.set()
        assert cancel.wait(10)
        return real_fetch(plan, sink, cancel)

    monkeypatch.setattr(download_run, "fetch", held_fetch)

    async def go():
        app = SizerApp(demo_task(), here=simulated("1x RTX 4090"))
        async with app.run_test(size=(120, 36)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("3")
            app.state.selected.add(SINGLE)
            await pilot.press("d")
            while not in_flight.is_set():
                await pilot.pause(0.05)
            shown_while_running = app.screen.check_action("stop_download", ())
            bar_visible = app.screen.query_one("#download-bar").display
            await pilot.press("x")
            await app.workers.wait_for_complete()
            await pilot.pause()
            return shown_while_running, bar_visible, app.state.fetching, [str(n.message) for n in app._notifications]

    shown, bar_visible, fetching, notes = asyncio.run(go())
    assert shown is True and bar_visible is True
    assert not fetching.active
    assert any("download stopped" in n for n in notes), notes
    assert not [p for p in (tmp_path / "hf-cache").rglob("*.safetensors") if p.is_file()]
    assert not [p for p in (tmp_path / "hf-cache").rglob("*.incomplete")]
