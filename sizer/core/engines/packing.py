"""Pack many (example, label continuations) scoring requests into one sequence over a shared prefix.

Every request shares the prefix (instruction + demonstrations), whose KV cache is computed once.
A pack lays out, for each example, its own prompt tokens followed by each candidate continuation:

    [prefix KV] | s1 c11 c12 c13 | s2 c21 c22 c23 | ...

and an attention mask that lets a token see the prefix, earlier tokens of its own example's prompt,
and earlier tokens of its own continuation, never another continuation or another example. Position
ids restart after the prefix for each example and again after its prompt for each continuation. The
log-likelihood of every continuation is then exactly what a separate forward pass over
prefix + s + c would give, at the cost of one forward pass over the pack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a pack is built, so llama.cpp trials do not load it
    import torch


@dataclass(frozen=True)
class Request:
    """Score each continuation (token ids) after `prompt` (token ids following the shared prefix)."""

    prompt: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return len(self.prompt) + sum(len(c) for c in self.continuations)


@dataclass
class Pack:
    input_ids: torch.Tensor      # (1, q)
    position_ids: torch.Tensor   # (1, q)
    mask: torch.Tensor           # (1, 1, q, prefix + q) bool, True = may attend
    predictors: torch.Tensor     # (n_scored,) pack positions whose logits predict a scored token
    targets: torch.Tensor        # (n_scored,) the scored token ids
    owners: list[tuple[int, int, int]]  # per continuation: (request index, start, end) into targets


def make_packs(requests: list[Request], max_tokens: int, first_tokens: int | None = None) -> list[list[int]]:
    """Group request indices into packs of at most `max_tokens` tokens, in the given order; the
    first pack holds at most `first_tokens` (at least one request), so its scores come back soon."""
    packs: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, request in enumerate(requests):
        limit = first_tokens if first_tokens is not None and not packs else max_tokens
        if current and used + request.size > limit:
            packs.append(current)
            current, used = [], 0
        current.append(index)
        used += request.size
    if current:
        packs.append(current)
    return packs


def build_pack(requests: list[Request], prefix_len: int) -> Pack:
    """Lay out `requests` after a prefix of `prefix_len` tokens (see module docstring)."""
    import torch

    ids: list[int] = []
    positions: list[int] = []
    segment: list[int] = []      # which example a token belongs to
    branch: list[int] = []       # 0 for the example's prompt, j+1 for its j-th continuation
    predictors: list[int] = []
    targets: list[int] = []
    owners: list[tuple[int, int, int]] = []
    for r, request in enumerate(requests):
        ids.extend(request.prompt)
        positions.extend(range(prefix_len, prefix_len + len(request.prompt)))
        segment.extend([r] * len(request.prompt))
        branch.extend([0] * len(request.prompt))
        last_prompt = len(ids) - 1
        for j, cont in enumerate(request.continuations):
            start = len(targets)
            base = len(ids)
            ids.extend(cont)
            positions.extend(range(prefix_len + len(request.prompt), prefix_len + len(request.prompt) + len(cont)))
            segment.extend([r] * len(cont))
            branch.extend([j + 1] * len(cont))
            predictors.extend([last_prompt] + [base + k for k in range(len(cont) - 1)])
            targets.extend(cont)
            owners.append((r, start, len(targets)))
    seg = torch.tensor(segment)
    br = torch.tensor(branch)
    q = len(ids)
    causal = torch.ones(q, q, dtype=torch.bool).tril()
    same_example = seg[:, None] == seg[None, :]
    visible_branch = (br[None, :] == 0) | (br[:, None] == br[None, :])
    local = causal & same_example & visible_branch
    mask = torch.cat([torch.ones(q, prefix_len, dtype=torch.bool), local], dim=1)
    return Pack(
        input_ids=torch.tensor([ids]),
        position_ids=torch.tensor([positions]),
        mask=mask[None, None],
        predictors=torch.tensor(predictors),
        targets=torch.tensor(targets),
        owners=owners,
    )
