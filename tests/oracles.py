"""Reference computations the tests check sizer's fast paths against."""

from __future__ import annotations

import math
from typing import Any

import torch


def brute_force_loglik(model: Any, ids: list[int], continuation_len: int) -> float:
    """Reference: the log-likelihood of the last `continuation_len` tokens of `ids` from one plain
    forward pass, no cache, no packing. The oracle `CausalLM.score` is checked against."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    n = len(ids)
    total = 0.0
    for position in range(n - continuation_len, n):
        total += float(logprobs[position - 1, ids[position]])
    assert math.isfinite(total)
    return total
