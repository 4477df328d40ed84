"""Small-sample statistics for comparing models over seeds: Student t intervals and Welch's test.

Pure Python (``math`` only), so the report needs no SciPy. The one special function is the
regularized incomplete beta ``I_x(a, b)``, evaluated by its continued fraction (modified Lentz,
as in Numerical Recipes' ``betacf``); Student's t CDF follows from it exactly:

    P(T <= t) = 1 - I_{df / (df + t^2)}(df / 2, 1 / 2) / 2      (t >= 0)

and the t quantile is found by bisection on that CDF (to 1e-12), not by an approximation.
``tests/test_sweep_stats.py`` checks them against closed forms (df = 1: Cauchy, df = 2) and
printed t tables.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

INTERVAL_METHOD = (
    "Student t: mean ± t(0.975, n-1) · s/√n, with s the sample std (n-1 in the denominator); "
    "the t quantile is computed exactly (bisection on the t CDF, via the regularized incomplete beta)"
)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function ``P(T <= t)`` with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf needs df > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs 0 < p < 1, got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """A sample's mean, sample std and two-sided t interval (``lo``/``hi`` None with one value)."""

    n: int
    mean: float
    std: Optional[float]  # sample std (n - 1); None for n = 1
    lo: Optional[float]
    hi: Optional[float]
    level: float = 0.95

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "sample_std": self.std, "ci": [self.lo, self.hi], "level": self.level}


def mean_interval(values: Sequence[float], level: float = 0.95) -> Optional[Interval]:
    """Mean, sample std and the Student t interval of ``values``; None when there are none."""
    v = [float(x) for x in values]
    if not v:
        return None
    mean = statistics.fmean(v)
    if len(v) < 2:
        return Interval(len(v), mean, None, None, None, level)
    std = statistics.stdev(v)
    half = t_quantile(0.5 + level / 2.0, len(v) - 1) * std / math.sqrt(len(v))
    return Interval(len(v), mean, std, mean - half, mean + half, level)


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t test of two samples: statistic, Welch–Satterthwaite df, two-sided p."""

    t: float
    df: float
    p: float


def welch_test(a: Sequence[float], b: Sequence[float]) -> Optional[Welch]:
    """Welch's t test of mean(a) = mean(b); None when it is undefined (a sample of one, or no spread at all)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0.0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    p = betainc(df / 2.0, 0.5, df / (df + t * t))  # 2 P(T > |t|), without 1 - (1 - p) rounding
    return Welch(t, df, min(1.0, p))


def overlap(x: Interval, y: Interval) -> Optional[bool]:
    """Whether two intervals share a point; None when either has no interval (one value)."""
    if x.lo is None or y.lo is None or x.hi is None or y.hi is None:
        return None
    return x.lo <= y.hi and y.lo <= x.hi
