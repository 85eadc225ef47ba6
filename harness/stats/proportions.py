"""Confidence intervals and tests for proportions.

* :func:`wilson` — Wilson score interval, exactly R ``prop.test(x, n, correct=FALSE)$conf.int``
  (``correct=True`` gives R's continuity-corrected version).
* :func:`clopper_pearson` — exact interval, R ``binom.test(x, n)$conf.int``.
* :func:`tango_paired_ci` / :func:`tango_noninferiority` — Tango (1998, Stat Med 17:891–908)
  score interval and non-inferiority test for the difference of two *paired* proportions.
  Use these when two readings are made on the **same exams** (AI vs the original reader:
  sensitivity on the same cancers, recall rate on the same screens); only the discordant
  counts carry information and the pairs are not independent.
* :func:`rate_ratio_score_ci` — Miettinen & Nurminen (1985, Stat Med 4:213–226) score interval
  for the ratio of two **independent** proportions (e.g. CDR or recall rate of two separate
  programmes or arms). For AI vs reader on the same exams the groups are *paired*; this interval
  then ignores the positive correlation and is conservative. The paired comparison in this
  package is the Tango difference interval; a paired ratio interval (Nam & Blackwelder 2002,
  Tang et al. 2003) is not implemented.

All root finding uses :func:`scipy.optimize.brentq` with ``xtol=1e-15``, ``rtol=4*eps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import beta, norm

from harness.errors import UsageError
from harness.stats.roc import check_level

__all__ = [
    "NIResult",
    "clopper_pearson",
    "rate_ratio_score_ci",
    "tango_noninferiority",
    "tango_paired_ci",
    "tango_score",
    "wilson",
]

_XTOL = 1e-15
_RTOL = 4.0 * np.finfo(float).eps


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float | np.floating) and float(value).is_integer():
            value = int(value)
        else:
            raise UsageError(f"{name} must be a whole count, got {value!r}")
    if value < 0:
        raise UsageError(f"{name} must be >= 0, got {value!r}")
    return int(value)


def _k_n(k: object, n: object) -> tuple[int, int]:
    kk, nn = _count(k, "k"), _count(n, "n")
    if nn == 0:
        raise UsageError("n must be >= 1: a proportion of nothing has no confidence interval")
    if kk > nn:
        raise UsageError(f"k ({kk}) must not exceed n ({nn})")
    return kk, nn


def wilson(k: int, n: int, level: float = 0.95, correct: bool = False) -> tuple[float, float]:
    """Wilson score interval for k successes out of n, as R ``prop.test(k, n, correct=...)``.

    R's form: with z22n = z^2/(2n) and p_c = k/n -+ Y/n,
    bound = (p_c + z22n -+ z sqrt(p_c(1-p_c)/n + z22n/(2n))) / (1 + 2 z22n), set to 0 / 1 when
    p_c <= 0 / >= 1. Y = 0 without correction; with ``correct=True`` R uses
    Y = min(0.5, |k - n/2|) (its default null p = 0.5), reproduced here.
    """
    kk, nn = _k_n(k, n)
    lvl = check_level(level)
    z = float(norm.ppf((1.0 + lvl) / 2.0))
    est = kk / nn
    yates = min(0.5, abs(kk - nn * 0.5)) if correct else 0.0
    z22n = z * z / (2.0 * nn)
    pc = est + yates / nn
    hi = (
        1.0
        if pc >= 1.0
        else (pc + z22n + z * math.sqrt(pc * (1 - pc) / nn + z22n / (2 * nn))) / (1 + 2 * z22n)
    )
    pc = est - yates / nn
    lo = (
        0.0
        if pc <= 0.0
        else (pc + z22n - z * math.sqrt(pc * (1 - pc) / nn + z22n / (2 * nn))) / (1 + 2 * z22n)
    )
    return max(lo, 0.0), min(hi, 1.0)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson exact interval, as R ``binom.test(k, n, conf.level=level)$conf.int``.

    lo = qbeta(a/2, k, n-k+1) (0 if k == 0); hi = qbeta(1-a/2, k+1, n-k) (1 if k == n).
    """
    kk, nn = _k_n(k, n)
    lvl = check_level(level)
    a = 1.0 - lvl
    lo = 0.0 if kk == 0 else float(beta.ppf(a / 2.0, kk, nn - kk + 1))
    hi = 1.0 if kk == nn else float(beta.ppf(1.0 - a / 2.0, kk + 1, nn - kk))
    return lo, hi


# --------------------------------------------------------------------------- paired difference (Tango)


def _paired_counts(b: object, c: object, n: object) -> tuple[int, int, int]:
    bb, cc, nn = _count(b, "b"), _count(c, "c"), _count(n, "n")
    if nn == 0:
        raise UsageError("n (number of paired exams) must be >= 1")
    if bb + cc > nn:
        raise UsageError(
            f"discordant counts b + c ({bb} + {cc}) exceed the number of pairs n ({nn})"
        )
    return bb, cc, nn


def tango_score(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic T(delta) for H0: p_first - p_second = delta.

    Orientation used throughout this module: ``b`` = pairs positive on the *first* method only
    (e.g. AI+ reader-), ``c`` = positive on the *second* only (AI- reader+), ``n`` = all pairs;
    the difference is p_first - p_second = (b - c)/n.

    T(delta) = (b - c - n delta) / sqrt(n (2 q + delta (1 - delta))), where q is the restricted
    MLE of the probability of the second-only cell given delta, the larger root of
    2n q^2 + (-b - c + (2n - b + c) delta) q - c delta (1 - delta) = 0 (Tango 1998, eq. 5, with
    the cells named for this orientation). T(0) is McNemar's z, (b - c)/sqrt(b + c).
    """
    bb, cc, nn = _paired_counts(b, c, n)
    num = bb - cc - nn * delta
    if num == 0.0:
        return 0.0  # also covers b = c = 0 at delta = 0, where the variance is 0 too
    bq = -bb - cc + (2.0 * nn - bb + cc) * delta
    disc = bq * bq + 8.0 * nn * cc * delta * (1.0 - delta)
    q = (-bq + math.sqrt(max(disc, 0.0))) / (4.0 * nn)
    var = nn * (2.0 * q + delta * (1.0 - delta))
    if var <= 0.0:
        return math.copysign(math.inf, num)
    return num / math.sqrt(var)


def _tango_interval(bb: int, cc: int, nn: int, z: float) -> tuple[float, float]:
    """{delta : -z <= T(delta) <= z}; T decreases in delta, from +inf at -1 to -inf at +1."""
    est = (bb - cc) / nn
    lo_edge = math.nextafter(-1.0, 0.0)
    hi_edge = math.nextafter(1.0, 0.0)
    # T is +inf at delta = -1 unless every pair is second-only (then est = -1 is the bound)
    if est <= -1.0 or tango_score(bb, cc, nn, lo_edge) <= z:
        lo = -1.0
    else:
        lo = brentq(lambda d: tango_score(bb, cc, nn, d) - z, lo_edge, est, xtol=_XTOL, rtol=_RTOL)
    if est >= 1.0 or tango_score(bb, cc, nn, hi_edge) >= -z:
        hi = 1.0
    else:
        hi = brentq(lambda d: tango_score(bb, cc, nn, d) + z, est, hi_edge, xtol=_XTOL, rtol=_RTOL)
    return float(lo), float(hi)


def tango_paired_ci(b: int, c: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Tango (1998) score CI for p_first - p_second = (b - c)/n from paired binary readings.

    ``b``: pairs positive on the first method only (e.g. AI+ reader-); ``c``: positive on the
    second only; ``n``: all pairs (concordant included). Handles b = 0 or c = 0.
    Cross-checked against PropCIs ``scoreci.mp`` (which reports p_second - p_first with its
    own b/c naming, i.e. the mirror image).
    """
    bb, cc, nn = _paired_counts(b, c, n)
    lvl = check_level(level)
    return _tango_interval(bb, cc, nn, float(norm.ppf((1.0 + lvl) / 2.0)))


@dataclass(frozen=True)
class NIResult:
    """Non-inferiority of the first method vs the second, on the difference p_first - p_second.

    ``ci_low``/``ci_high`` is the two-sided 1 - 2 alpha Tango interval, so
    ``noninferior`` == (ci_low > -margin) == (p < alpha).
    """

    diff: float
    ci_low: float
    ci_high: float
    z: float
    p: float
    noninferior: bool


def tango_noninferiority(b: int, c: int, n: int, margin: float, alpha: float = 0.025) -> NIResult:
    """Tango score test of H0: p_first - p_second <= -margin vs H1: > -margin (one-sided).

    For a proportion where *higher is better* (sensitivity, cancer detection): the first method
    (AI) is non-inferior if T(-margin) > z_{1-alpha}; p = 1 - Phi(T(-margin)). For a proportion
    where lower is better (recall rate, false positives) pass the counts mirrored (b <-> c),
    which tests p_second - p_first <= -margin, i.e. p_first - p_second >= +margin.
    """
    bb, cc, nn = _paired_counts(b, c, n)
    try:
        mg = float(margin)
    except (TypeError, ValueError):
        raise UsageError(f"margin must be a number in (0, 1), got {margin!r}") from None
    if not 0.0 < mg < 1.0:
        raise UsageError(
            f"margin must be a positive difference of proportions below 1 (e.g. 0.05), got {margin!r}"
        )
    a = check_level(alpha, "alpha")
    if a >= 0.5:
        raise UsageError(
            f"alpha must be below 0.5 for a one-sided test (e.g. 0.025), got {alpha!r}"
        )
    zq = float(norm.ppf(1.0 - a))
    t = tango_score(bb, cc, nn, -mg)
    lo, hi = _tango_interval(bb, cc, nn, zq)
    p = float(norm.sf(t))
    return NIResult(diff=(bb - cc) / nn, ci_low=lo, ci_high=hi, z=t, p=p, noninferior=bool(t > zq))


# --------------------------------------------------------------------------- ratio of independent proportions


def _mn_score(x1: int, n1: int, x2: int, n2: int, theta: float) -> float:
    """Miettinen–Nurminen score statistic for H0: p1/p2 = theta (independent binomials).

    Restricted MLE (MN 1985, appendix): with N = n1 + n2, A = N theta,
    B = -(n1 theta + x1 + n2 + x2 theta), C = x1 + x2: p2~ = (-B - sqrt(B^2 - 4AC)) / (2A),
    p1~ = theta p2~. Z = (p1^ - theta p2^) / sqrt((p1~(1-p1~)/n1 + theta^2 p2~(1-p2~)/n2) N/(N-1));
    the N/(N-1) factor is what distinguishes MN from the Farrington–Manning score.
    """
    big_n = n1 + n2
    a = big_n * theta
    bq = -(n1 * theta + x1 + n2 + x2 * theta)
    cq = x1 + x2
    disc = max(bq * bq - 4.0 * a * cq, 0.0)
    # numerically stable smaller root: 2C / (-B + sqrt(disc)) (B < 0, so no cancellation)
    p2 = (2.0 * cq) / (-bq + math.sqrt(disc))
    p1 = theta * p2
    num = x1 / n1 - theta * x2 / n2
    if num == 0.0:
        return 0.0
    var = (p1 * (1.0 - p1) / n1 + theta * theta * p2 * (1.0 - p2) / n2) * big_n / (big_n - 1.0)
    if var <= 0.0:
        return math.copysign(math.inf, num)
    return num / math.sqrt(var)


def rate_ratio_score_ci(
    x1: int, n1: int, x2: int, n2: int, level: float = 0.95
) -> tuple[float, float]:
    """Miettinen–Nurminen score CI for p1/p2 of two **independent** proportions.

    {theta : |Z(theta)| <= z}, solved on the log scale. Lower bound 0 when x1 == 0, upper bound
    inf when x2 == 0. Swapping the groups gives exactly the reciprocal interval. For AI vs
    reader on the same exams use the paired :func:`tango_paired_ci` (see module docstring).
    """
    xx1, nn1, xx2, nn2 = _count(x1, "x1"), _count(n1, "n1"), _count(x2, "x2"), _count(n2, "n2")
    if nn1 == 0 or nn2 == 0:
        raise UsageError("n1 and n2 must be >= 1 for a ratio of proportions")
    if xx1 > nn1 or xx2 > nn2:
        raise UsageError(f"counts exceed their totals: x1={xx1}/n1={nn1}, x2={xx2}/n2={nn2}")
    if xx1 == 0 and xx2 == 0:
        raise UsageError("x1 and x2 are both 0: the ratio of two zero proportions is undefined")
    lvl = check_level(level)
    z = float(norm.ppf((1.0 + lvl) / 2.0))
    if xx1 > 0 and xx2 > 0:
        start = math.log((xx1 / nn1) / (xx2 / nn2))
    else:
        start = 0.0
    lo = 0.0 if xx1 == 0 else _log_root(lambda th: _mn_score(xx1, nn1, xx2, nn2, th) - z, start)
    hi = (
        math.inf if xx2 == 0 else _log_root(lambda th: _mn_score(xx1, nn1, xx2, nn2, th) + z, start)
    )
    return lo, hi


def _log_root(g: Callable[[float], float], start: float) -> float:
    """Root in theta of a function decreasing in theta, bracketed by doubling steps in log theta."""
    h = lambda t: g(math.exp(t))  # noqa: E731
    step = 1.0
    if h(start) > 0.0:
        lo = start
        hi = start + step
        while h(hi) > 0.0:
            lo, step = hi, 2.0 * step
            hi = start + step
            if hi > 700.0:
                raise UsageError("ratio CI bound did not converge: counts too extreme")
    else:
        hi = start
        lo = start - step
        while h(lo) <= 0.0:
            hi, step = lo, 2.0 * step
            lo = start - step
            if lo < -700.0:
                raise UsageError("ratio CI bound did not converge: counts too extreme")
    return math.exp(brentq(h, lo, hi, xtol=_XTOL, rtol=_RTOL))
