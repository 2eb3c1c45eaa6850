"""Packed scoring over a reused prefix KV cache gives the same log-likelihoods as one plain
forward pass per (prompt, continuation), on a small random-initialised model."""

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from oracles import brute_force_loglik
from sizer.core.engines.causal_lm import CausalLM
from sizer.core.engines.packing import Request, build_pack, make_packs


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def lm(request):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=211, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        attn_implementation=request.param,
    )
    model = LlamaForCausalLM(config).eval()
    return CausalLM(model, tokenizer=None, device=torch.device("cpu"))


def _requests(rng, n, labels):
    return [
        Request(
            prompt=tuple(rng.randrange(211) for _ in range(rng.randint(1, 12))),
            continuations=tuple(tuple(rng.randrange(211) for _ in range(k)) for k in labels),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("prefix_len", [0, 1, 17])
def test_packed_scores_match_brute_force(lm, prefix_len):
    rng = random.Random(prefix_len)
    prefix = [rng.randrange(211) for _ in range(prefix_len)]
    requests = _requests(rng, 7, labels=[1, 3, 2, 4])
    scores = lm.score(prefix, requests, max_pack_tokens=40)  # several packs
    for request, per_label in zip(requests, scores):
        assert len(per_label) == len(request.continuations)
        for cont, score in zip(request.continuations, per_label):
            expected = brute_force_loglik(lm.model, prefix + list(request.prompt) + list(cont), len(cont))
            assert score.logprob == pytest.approx(expected, abs=1e-4)
            assert score.tokens == len(cont)


def test_greedy_flag_matches_argmax(lm):
    rng = random.Random(5)
    prefix = [rng.randrange(211) for _ in range(9)]
    prompt = [rng.randrange(211) for _ in range(5)]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([prefix + prompt])).logits[0, -1]
    best = int(logits.argmax())
    other = (best + 1) % 211
    [[hit, miss]] = lm.score(prefix, [Request(tuple(prompt), ((best,), (other,)))])
    assert hit.greedy and not miss.greedy


def test_cache_is_restored_between_packs(lm):
    rng = random.Random(9)
    prefix = [rng.randrange(211) for _ in range(11)]
    requests = _requests(rng, 5, labels=[2, 2])
    one_by_one = lm.score(prefix, requests, max_pack_tokens=1)
    all_at_once = lm.score(prefix, requests, max_pack_tokens=10_000)
    for a, b in zip(one_by_one, all_at_once):
        assert [s.logprob for s in a] == pytest.approx([s.logprob for s in b], abs=1e-4)


def test_make_packs_respects_budget_and_order():
    reqs = [Request((1,) * n, ((2,),)) for n in (9, 5, 5, 3, 1)]
    packs = make_packs(reqs, max_tokens=12)
    assert [i for p in packs for i in p] == [0, 1, 2, 3, 4]
    assert all(sum(reqs[i].size for i in p) <= 12 or len(p) == 1 for p in packs)


def test_pack_mask_isolates_continuations_and_examples():
    pack = build_pack([Request((5, 6), ((7,), (8, 9))), Request((4,), ((3,),))], prefix_len=2)
    mask = pack.mask[0, 0]
    # token order: 5 6 7 8 9 | 4 3 ; columns: 2 prefix tokens then the 7 pack tokens
    assert mask[:, :2].all()
    assert not mask[3, 2 + 2]          # continuation "8" cannot see continuation "7"
    assert mask[4, 2 + 3] and mask[4, 2 + 1]  # "9" sees "8" and the prompt's "6"
    assert not mask[5, 2 + 0]          # the second example cannot see the first
    assert pack.position_ids[0].tolist() == [2, 3, 4, 4, 5, 2, 3]


def test_generation_from_a_shared_prefix_cache_matches_plain_generation(lm):
    rng = random.Random(3)
    prefix = [rng.randrange(211) for _ in range(23)]
    shared = lm.prefix_cache(prefix)
    for n in (1, 6):
        prompt = prefix + [rng.randrange(211) for _ in range(n)]
        assert lm.generate_ids(prompt, 12, shared) == lm.generate_ids(prompt, 12)
    assert shared.get_seq_length() == len(prefix)  # each generation works on a copy


def test_a_prefix_cache_computed_beforehand_and_a_small_first_pack_change_no_score(lm):
    """lm_classify computes the prefix before scoring starts and scores one example first."""
    rng = random.Random(5)
    prefix = [rng.randrange(211) for _ in range(13)]
    requests = _requests(rng, 6, labels=[1, 3])
    plain = lm.score(prefix, requests, max_pack_tokens=10_000)
    cache = lm.prefix_cache(prefix)
    packs = []
    early = lm.score(prefix, requests, max_pack_tokens=10_000, cache=cache, first_pack_tokens=1,
                     on_pack=lambda indices, scores: packs.append(indices))
    assert packs == [[0], [1, 2, 3, 4, 5]]
    assert cache.get_seq_length() == len(prefix)  # handed back holding the prefix only
    for a, b in zip(plain, early):
        assert [s.logprob for s in a] == pytest.approx([s.logprob for s in b], abs=1e-4)
