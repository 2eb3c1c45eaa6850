"""How many test examples would separate two models scored on the same examples (paired).

For 0/1 per-example scores (accuracy-like metrics) this is McNemar's test's sample size, Connor's
formula (R. J. Connor, "Sample size for testing differences in proportions for the paired-sample
design", Biometrics 43(1):207-211, 1987):

    n = ( z_{1-a/2} * sqrt(psi) + z_{1-b} * sqrt(psi - delta^2) )^2 / delta^2

where psi is the discordant-pair rate (the share of examples exactly one of the two gets right,
p10 + p01) and delta = p10 - p01 the difference in accuracy, both as observed on the shared
examples; a = 0.05 two-sided, power 1 - b = 0.8. For graded scores (token F1, field match) the
paired-t normal approximation n = (z_{1-a/2} + z_{1-b})^2 * var(d) / delta^2 is used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z_ALPHA = NormalDist().inv_cdf(0.975)   # 1.95996: 95% two-sided
Z_POWER = NormalDist().inv_cdf(0.80)    # 0.84162: 80% power


@dataclass(frozen=True)
class PairedGap:
    """Two trials on the same `n` examples: the mean difference (a - b), its 95% half-width and,
    when that interval includes 0, the examples needed to separate them (None: no difference seen)."""

    n: int
    delta: float
    half_width: float
    needed: int | None

    @property
    def separated(self) -> bool:
        return abs(self.delta) > self.half_width


def mcnemar_n(discordant: float, delta: float, z_alpha: float = Z_ALPHA, z_power: float = Z_POWER) -> int:
    """Connor's sample size (examples) for a paired difference `delta` at discordant rate `discordant`."""
    if delta == 0:
        raise ValueError("no difference: no sample size separates two equal rates")
    psi = max(discordant, delta * delta)
    root = z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - delta * delta, 0.0))
    return math.ceil(root * root / (delta * delta))


def paired_gap(a: dict[str, float], b: dict[str, float]) -> PairedGap | None:
    """The gap between per-example scores `a` and `b` (example id -> score in [0, 1]) over the
    examples both scored; None when they share none."""
    shared = sorted(set(a) & set(b))
    if not shared:
        return None
    diffs = [a[i] - b[i] for i in shared]
    n = len(diffs)
    delta = sum(diffs) / n
    var = sum((d - delta) ** 2 for d in diffs) / max(n - 1, 1)
    half = Z_ALPHA * math.sqrt(var / n)
    if abs(delta) > half or delta == 0:
        return PairedGap(n, delta, half, None)
    binary = all(a[i] in (0.0, 1.0) and b[i] in (0.0, 1.0) for i in shared)
    if binary:
        needed = mcnemar_n(sum(1 for d in diffs if d != 0) / n, delta)
    else:
        needed = math.ceil((Z_ALPHA + Z_POWER) ** 2 * var / (delta * delta))
    return PairedGap(n, delta, half, needed)
