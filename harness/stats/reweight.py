"""Programme metrics of an enriched reference set, reweighted to screening prevalence.

A reference set is enriched with cancers (e.g. 20% cases) while a screening population has
about 6 per 1000. Sensitivity and specificity do not depend on prevalence; recall rate, cancer
detection rate (CDR) and PPV do. Each case gets weight w_case = prev / (m/N), each control
w_control = (1 - prev) / (n/N) (m cases, n controls, N = m + n), so the weighted set has the
population prevalence. The weighted proportions reduce to closed forms:

    recall = prev * sens + (1 - prev) * fpr,   CDR = prev * sens,   PPV = prev * sens / recall.

At the set's natural prevalence (prev = m/N) every weight is 1 and the metrics are the plain
ones ((tp + fp)/N, tp/N, tp/(tp + fp)).

Confidence intervals (prevalence is a fixed population constant; sens and fpr are independent
binomials on the cases and the controls):
* sensitivity, specificity: Wilson score (:func:`harness.stats.proportions.wilson`);
* CDR: the Wilson interval of sensitivity times prev (exact transformation);
* recall rate: MOVER-Wilson for a weighted sum of two independent proportions (Zou & Donner
  2008, Stat Med 27:1693; Newcombe 1998 method 10 is the difference case):
  L = R - sqrt((prev (s - l_s))^2 + ((1-prev)(f - l_f))^2), U likewise with the upper limits;
* PPV: PPV = 1 / (1 + k r) with k = (1-prev)/prev and r = fpr / sens, a decreasing function of
  r, so its CI is the image of the Miettinen–Nurminen score CI of the ratio fpr/sens
  (:func:`harness.stats.proportions.rate_ratio_score_ci`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.errors import UsageError
from harness.stats.proportions import rate_ratio_score_ci, wilson
from harness.stats.roc import check_level

__all__ = ["Estimate", "ProgrammeMetrics", "reweighted_programme", "screening_weights"]


@dataclass(frozen=True)
class Estimate:
    """A value with its confidence interval and the name of the CI method."""

    value: float
    ci_low: float
    ci_high: float
    method: str


@dataclass(frozen=True)
class ProgrammeMetrics:
    """Screening-programme metrics at population prevalence ``prevalence_per_1000``.

    ``recall_rate`` and ``ppv`` are fractions, ``cdr_per_1000`` per 1000 screens; ``n`` exams.
    """

    recall_rate: Estimate
    cdr_per_1000: Estimate
    ppv: Estimate
    sensitivity: Estimate
    specificity: Estimate
    n: int
    n_cases: int
    n_controls: int
    prevalence_per_1000: float
    level: float


def _check(
    flags: ArrayLike, labels: ArrayLike, prevalence_per_1000: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], float]:
    f = np.asarray(flags)
    y = np.asarray(labels)
    if f.ndim != 1 or f.shape != y.shape:
        raise UsageError(
            f"flags and labels must be 1-D and the same length, got shapes {f.shape} and {y.shape}"
        )
    if not np.all((f == 0) | (f == 1)):
        raise UsageError("flags must be 0 (not recalled) or 1 (recalled)")
    if not np.all((y == 0) | (y == 1)):
        raise UsageError("labels must be 0 (control) or 1 (case)")
    is_case = y == 1
    if not is_case.any():
        raise UsageError("no cases (label 1): sensitivity and CDR cannot be reweighted")
    if is_case.all():
        raise UsageError("no controls (label 0): recall rate and PPV cannot be reweighted")
    try:
        prev = float(prevalence_per_1000) / 1000.0
    except (TypeError, ValueError):
        raise UsageError(
            f"prevalence_per_1000 must be a number, got {prevalence_per_1000!r}"
        ) from None
    if not 0.0 < prev < 1.0:
        raise UsageError(
            f"prevalence_per_1000 must be between 0 and 1000 exclusive (e.g. 6.0), got {prevalence_per_1000!r}"
        )
    return f == 1, is_case, prev


def screening_weights(labels: ArrayLike, prevalence_per_1000: float) -> NDArray[np.float64]:
    """Per-exam weights that move the set to the population prevalence (mean weight 1)."""
    y = np.asarray(labels)
    _, is_case, prev = _check(np.zeros(y.shape, np.int8), y, prevalence_per_1000)
    big_n, m = is_case.size, int(is_case.sum())
    return np.where(is_case, prev / (m / big_n), (1.0 - prev) / ((big_n - m) / big_n))


def reweighted_programme(
    flags: ArrayLike, labels: ArrayLike, prevalence_per_1000: float, level: float = 0.95
) -> ProgrammeMetrics:
    """Recall rate, CDR, PPV, sensitivity and specificity at population prevalence, with CIs.

    ``flags``: 1 = recalled/flagged (score >= operating point); ``labels``: 1 = cancer.
    See the module docstring for the weights and the CI methods.
    """
    recalled, is_case, prev = _check(flags, labels, prevalence_per_1000)
    lvl = check_level(level)
    m, n = int(is_case.sum()), int((~is_case).sum())
    tp = int(np.count_nonzero(recalled & is_case))
    fp = int(np.count_nonzero(recalled & ~is_case))
    sens, fpr = tp / m, fp / n
    s_lo, s_hi = wilson(tp, m, lvl)
    f_lo, f_hi = wilson(fp, n, lvl)

    recall = prev * sens + (1.0 - prev) * fpr
    r_lo = recall - math.hypot(prev * (sens - s_lo), (1.0 - prev) * (fpr - f_lo))
    r_hi = recall + math.hypot(prev * (s_hi - sens), (1.0 - prev) * (f_hi - fpr))

    if tp == 0 and fp == 0:
        ppv = Estimate(math.nan, math.nan, math.nan, "undefined: nothing recalled")
    else:
        k = (1.0 - prev) / prev
        ratio_lo, ratio_hi = rate_ratio_score_ci(fp, n, tp, m, lvl)
        value = prev * sens / recall
        ppv = Estimate(
            value,
            1.0 / (1.0 + k * ratio_hi) if math.isfinite(ratio_hi) else 0.0,
            1.0 / (1.0 + k * ratio_lo),
            "Miettinen-Nurminen score CI of fpr/sens, transformed",
        )
    return ProgrammeMetrics(
        recall_rate=Estimate(recall, max(r_lo, 0.0), min(r_hi, 1.0), "MOVER-Wilson"),
        cdr_per_1000=Estimate(
            1000.0 * prev * sens, 1000.0 * prev * s_lo, 1000.0 * prev * s_hi, "Wilson x prevalence"
        ),
        ppv=ppv,
        sensitivity=Estimate(sens, s_lo, s_hi, "Wilson"),
        specificity=Estimate((n - fp) / n, *wilson(n - fp, n, lvl), "Wilson"),
        n=m + n,
        n_cases=m,
        n_controls=n,
        prevalence_per_1000=prev * 1000.0,
        level=lvl,
    )
