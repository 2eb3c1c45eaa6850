"""Number formatting shared by the screens."""

from __future__ import annotations

GIB = 2**30


def gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.1f} GiB"


def size(n: float | None) -> str:
    """Bytes in the unit that reads best: MiB under 1 GiB."""
    if n is None:
        return "-"
    return f"{n / 2**20:.0f} MiB" if n < GIB else f"{n / GIB:.1f} GiB"


def flops(value: float | None) -> str:
    if not value:
        return "-"
    return f"{value / 1e12:,.1f} TFLOP/s" if value >= 1e12 else f"{value / 1e9:,.0f} GFLOP/s"


def params(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}-{high:.3f}]"


def rate(value: float | None) -> str:
    return "-" if not value else f"{value:,.1f}"


def slow_rate(value: float | None) -> str:
    """Like `rate`, with two significant digits below 1 (a slow model's 0.25/s is not 0.2)."""
    if not value:
        return "-"
    return f"{value:,.1f}" if value >= 1 else f"{value:.2g}"
