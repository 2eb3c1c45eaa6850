"""Snapshots of every screen at 120x36 with deterministic content: a simulated RTX 4090 profile,
an empty Hugging Face cache (only the offline packages count as downloaded), and fixed trial events
and results instead of a live run. Update with `pytest --snapshot-update` after a deliberate change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sizer.core import events
from sizer.core.hardware.profile import simulated
from sizer.core.decide.recommend import Recommendation
from sizer.tui.app import SizerApp
from sizer.tui.bridge import CoreEvent
from sizer.core.decide.types import RunResult, RunSpec
from sizer.tui.engine import TrialRow

REPO = Path(__file__).resolve().parents[1]
SIZE = (120, 36)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"

TRIALS = [
    TrialRow(SMOLLM, 134_515_008, "zero-shot", "ok", 0.150, 0.085, 0.250, 9.5, 610 * 2**20),
    TrialRow(SMOLLM, 134_515_008, "few-shot", "ok", 0.281, 0.190, 0.395, 4.1, 700 * 2**20),
    TrialRow(MINILM, 22_713_216, "zero-shot", "ok", 0.700, 0.590, 0.790, 180.0, 420 * 2**20),
    TrialRow(MINILM, 22_713_216, "few-shot", "ok", 0.925, 0.850, 0.965, 200.0, 460 * 2**20),
]
REC = Recommendation(
    met=True, target="0.85 target", model=MINILM, params=22_713_216, strategy="few-shot", precision="fp32",
    settings={"shots_per_label": 8}, metric={"name": "accuracy", "value": 0.925, "low": 0.85, "high": 0.965,
                                             "n": 80, "method": "wilson"},
    memory={"peak_bytes": 460 * 2**20, "device": "cpu", "measured_by": "RSS high-water mark"},
    speed={"examples_per_s": 200.0},
    on_profile={"profile": "1x RTX 4090", "fit": "fits", "where": "RTX 4090 24GB", "predicted_bytes": 97 * 2**20},
    reasons=["all-MiniLM-L6-v2 with few-shot is the smallest model that meets the 0.85 target."],
    next_steps=["Use sentence-transformers/all-MiniLM-L6-v2 (fp32) with few-shot (shots_per_label=8)."],
)


@pytest.fixture(autouse=True)
def fixed_world(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("SIZER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)


def app() -> SizerApp:
    return SizerApp("examples/banking.toml", here=simulated("1x RTX 4090"))


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def finished(rec: Recommendation) -> RunResult:
    """A finished run as the app keeps it; the screens read its recommendation (the trial rows
    come from state.trials)."""
    return RunResult(RunSpec(task=None), simulated("1x RTX 4090"), [], recommendation=rec, finished=True)


def with_results(pilot) -> None:
    state = pilot.app.state
    state.trials = list(TRIALS)
    state.outcome = finished(REC)


def test_hardware(snap_compare):
    assert snap_compare(app(), terminal_size=SIZE, run_before=settle)


def test_task(snap_compare):
    assert snap_compare(app(), terminal_size=SIZE, press=["2"], run_before=settle)


def test_candidates(snap_compare):
    assert snap_compare(app(), terminal_size=SIZE, press=["3"], run_before=settle)


def test_run(snap_compare):
    async def before(pilot):
        await settle(pilot)
        for event in (events.TrialStarted(MINILM, "few-shot", 80), events.TrialProgress(MINILM, "few-shot", 40, 80, 0.925, 0.80, 0.97, 190.0),
                      events.Message("few-shot: 8 demonstrations per label")):
            pilot.app.post_message(CoreEvent(event))
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, press=["4"], run_before=before)


def test_run_while_a_model_loads(snap_compare):
    """The Run screen names the model loading, its place in the run and the loader's own count."""

    async def before(pilot):
        await settle(pilot)
        pilot.app.post_message(CoreEvent(events.ModelLoading(SMOLLM, 1, 2)))
        pilot.app.post_message(CoreEvent(events.ModelLoading(SMOLLM, 1, 2, 136, 272, "converting and de-quantizing GGUF tensors")))
        await pilot.pause()

    assert snap_compare(app(), terminal_size=SIZE, press=["4"], run_before=before)


def test_results(snap_compare):
    async def before(pilot):
        await settle(pilot)
        with_results(pilot)

    assert snap_compare(app(), terminal_size=SIZE, press=["5"], run_before=before)


def test_recommendation(snap_compare):
    async def before(pilot):
        await settle(pilot)
        with_results(pilot)

    assert snap_compare(app(), terminal_size=SIZE, press=["6"], run_before=before)


def test_hardware_at_80x24(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), run_before=settle)


def test_recommendation_with_estimated_memory(snap_compare):
    """An encoder whose memory the run could not measure: the estimate stands in, labelled."""
    memory = {"peak_bytes": None, "device": "cpu", "predicted_bytes": 97 * 2**20,
              "measured_by": "not measurable here: the process reused memory freed by an earlier model "
                             "(run `sizer trial` for this model alone to measure it)"}

    async def before(pilot):
        await settle(pilot)
        with_results(pilot)
        pilot.app.state.outcome = finished(dataclasses.replace(REC, memory=memory))

    assert snap_compare(app(), terminal_size=SIZE, press=["6"], run_before=before)
