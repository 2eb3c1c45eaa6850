"""Several GPUs with transformers: the from_pretrained kwargs built from the plan for a simulated
"2x RTX 4090" machine (no GPU here), the reason a model that cannot be placed is not usable, and
the loading path with a device_map run on the CPU."""

from __future__ import annotations

import pytest

from sizer.core.catalog.model_catalog import load_catalog
from sizer.core.engines.device_map import GIB, device_map_kwargs, planned_placement
from sizer.core.errors import SizerError
from sizer.core.hardware.profile import simulated
from sizer.core.estimate.planning import plan_estimate
from sizer.core.decide.walk import candidates
from sizer.core.decide.types import RunSpec


@pytest.fixture(scope="module")
def two_4090():
    # simulated: each card 24 GiB total, free = 24 - max(1 GiB, reserve) = 23 GiB; usable = 0.9 x 23 = 20.7 GiB
    return simulated("2x RTX 4090")


def test_a_model_one_card_holds_needs_no_device_map(two_4090):
    # Qwen2.5-7B in bf16: 14.2 GiB of weights + 1.4 GiB beside them = 15.6 GiB <= 20.7 GiB on one card
    report = plan_estimate(load_catalog().find("Qwen/Qwen2.5-7B-Instruct"), two_4090, "transformers", "bf16")
    assert report.level == "fits" and len(report.shares) == 1
    assert device_map_kwargs(report, two_4090) is None


def test_a_model_the_plan_splits_over_both_cards_gets_balanced_with_per_card_caps(two_4090):
    report = plan_estimate(load_catalog().find("Qwen/Qwen2.5-14B-Instruct"), two_4090, "transformers", "bf16")
    assert report.level == "fits" and report.where == "2 GPUs, balanced device_map"
    kwargs = device_map_kwargs(report, two_4090)
    assert kwargs["device_map"] == "balanced" and set(kwargs["max_memory"]) == {0, 1}  # no CPU: nothing offloaded
    for index, share in enumerate(report.shares):
        # cap = usable (20.7 GiB) - what the plan keeps beside the weights (KV, activations, overhead: ~1.6 GiB)
        cap = kwargs["max_memory"][index]
        assert cap == share.usable_bytes - (share.need_bytes - share.weight_bytes)
        assert 19.0 * GIB < cap < 19.3 * GIB
        assert cap >= share.weight_bytes  # each card's planned share of the weights (13.8 GiB) fits its cap
    # together the caps hold every weight (2 x 13.8 = 27.5 GiB of bf16 weights < 2 x 19.1 GiB)
    assert sum(kwargs["max_memory"].values()) >= sum(s.weight_bytes for s in report.shares)


def test_a_model_the_plan_offloads_gets_cpu_ram_too(two_4090):
    report = plan_estimate(load_catalog().find("Qwen/Qwen2.5-32B-Instruct"), two_4090, "transformers", "bf16")
    assert report.level == "split" and report.offloaded_bytes > 20 * GIB  # 65 GB of bf16 weights, 2 x 19.2 GiB on the cards
    kwargs = device_map_kwargs(report, two_4090)
    cpu = next(f for f in report.devices if f.device.kind == "cpu")
    assert set(kwargs["max_memory"]) == {0, 1, "cpu"} and kwargs["max_memory"]["cpu"] == cpu.usable_bytes
    assert kwargs["max_memory"]["cpu"] >= report.offloaded_bytes


def test_a_model_that_cannot_be_placed_is_refused_and_listed_as_not_usable(two_4090):
    from conftest import TINY  # noqa: F401  (the catalog fixture is not needed: the shipped catalog has the 70B)

    entry = load_catalog().find("meta-llama/Llama-3.3-70B-Instruct")
    report = plan_estimate(entry, two_4090, "transformers", "bf16")
    assert report.level == "no"
    # 70.6B parameters x 2 bytes = 131 GiB of weights alone > 2 x 20.7 GiB + 51.8 GiB of usable RAM
    with pytest.raises(SizerError, match=r"cannot be placed: needs 13\d\.\d GiB \(bf16, transformers\), this machine "
                                         r"has 2 GPUs 41\.4 GiB usable \+ RAM 51\.8 GiB usable"):
        device_map_kwargs(report, two_4090)

    class _Task:
        kind = "classify"

    cands = candidates(RunSpec(task=_Task(), models=(entry.id,), dtype="bf16"), here=two_4090)
    assert not cands[0].usable and "cannot be placed: needs" in cands[0].reason


def test_no_placement_without_two_cuda_gpus():
    assert planned_placement("HuggingFaceTB/SmolLM2-135M-Instruct", "fp32") is None  # this machine: CPU only


def test_a_device_map_load_scores_as_a_plain_load(trial_env):
    """The placement path (accelerate dispatch, inputs to the embeddings' device) on the CPU, the
    one device here, gives the same log-likelihoods as the plain load."""
    import torch

    from conftest import TINY
    from sizer.core.engines.causal_lm import CausalLM
    from sizer.core.engines.packing import Request
    from sizer.core.catalog.resolve import locate

    local = locate(load_catalog().find(TINY))
    plain = CausalLM.load(local, "cpu", torch.float32)
    placed = CausalLM.load(local, "cpu", torch.float32, placement={"device_map": "balanced", "max_memory": {"cpu": 2 * GIB}})
    assert placed.device == torch.device("cpu")  # the device of the embeddings, where inputs go
    requests = [Request(prompt=(5, 6, 7), continuations=((8,), (9, 10)))]
    a = plain.score([1, 2, 3], requests)[0]
    b = placed.score([1, 2, 3], requests)[0]
    assert [round(s.logprob, 4) for s in a] == [round(s.logprob, 4) for s in b]
