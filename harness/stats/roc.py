"""ROC analysis with pROC's conventions: AUC, DeLong variance and tests, curve, coordinates.

Every function here uses one fixed direction, the one pROC gets from
``roc(response, predictor, levels = c(0, 1), direction = "<")``: label 1 is a case (cancer),
label 0 a control, and a *higher* score is more suspicious. The direction is never flipped
automatically (pROC's default ``direction = "auto"`` would silently turn a model that ranks
backwards into one with AUC > 0.5; a certifier must not do that).

Methods
-------
* AUC: the Mann–Whitney statistic with kernel psi(x, y) = 1 if x > y, 1/2 if x == y, else 0,
  computed from mid-ranks (what pROC's trapezoidal AUC equals for the empirical curve).
* DeLong variance: DeLong, DeLong & Clarke-Pearson (1988), computed with the fast algorithm of
  Sun & Xu (2014, IEEE Signal Processing Letters 21:1389) from mid-ranks in O(N log N). The
  placements are pROC's ``delongPlacements``; variances use pROC's divisors (m - 1, n - 1).
* CIs and tests follow pROC 1.18.0 ``ci.auc(method = "delong")`` and
  ``roc.test(method = "delong", paired = TRUE / FALSE)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t

from harness.errors import UsageError

__all__ = [
    "AucResult",
    "OperatingPoint",
    "PairedAucTest",
    "RocCurve",
    "UnpairedAucTest",
    "auc",
    "delong",
    "delong_paired",
    "delong_unpaired",
    "operating_point",
    "roc_curve",
    "sensitivity_at_specificity",
]


# --------------------------------------------------------------------------- input checks


def check_level(level: float, name: str = "level") -> float:
    """Return ``level`` as float if it is a confidence level strictly between 0 and 1."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise UsageError(
            f"{name} must be a number between 0 and 1 (e.g. 0.95), got {level!r}"
        ) from None
    if not 0.0 < value < 1.0:
        raise UsageError(f"{name} must be strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return value


def check_scores_labels(
    scores: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Validate one score per exam and a 0/1 label per exam; return (scores float64, is_case).

    Raises :class:`UsageError` for mismatched lengths, labels other than 0/1, non-finite scores,
    and sets without cases or without controls (an AUC needs both).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise UsageError(
            f"scores and labels must be 1-D sequences, got shapes {s.shape} and {y.shape}"
        )
    if s.shape != y.shape:
        raise UsageError(
            f"scores and labels must have the same length, got {s.size} scores and {y.size} labels"
        )
    if not np.all(np.isfinite(s)):
        bad = int(np.count_nonzero(~np.isfinite(s)))
        raise UsageError(
            f"scores contain {bad} NaN or infinite value(s); drop or fix those exams before ROC analysis"
        )
    if y.dtype == np.bool_:
        is_case = y
    else:
        if not np.all((y == 0) | (y == 1)):
            raise UsageError("labels must be 0 (control) or 1 (case); found other values")
        is_case = y == 1
    n_cases = int(np.count_nonzero(is_case))
    if n_cases == 0:
        raise UsageError("no cases (label 1) in the data: sensitivity and AUC are undefined")
    if n_cases == is_case.size:
        raise UsageError("no controls (label 0) in the data: specificity and AUC are undefined")
    return s, is_case


# --------------------------------------------------------------------------- AUC and DeLong


@dataclass(frozen=True)
class AucResult:
    """AUC with its DeLong variance and confidence interval (pROC ``ci.auc(method="delong")``)."""

    auc: float
    var: float
    ci_low: float
    ci_high: float
    n_cases: int
    n_controls: int


@dataclass(frozen=True)
class PairedAucTest:
    """Paired DeLong test of two scores on the same exams (pROC ``roc.test(paired=TRUE)``).

    ``diff = auc_a - auc_b``; ``p_greater`` is for H1: auc_a > auc_b, ``p_less`` for auc_a < auc_b;
    ``ci_low``/``ci_high`` is the CI of the difference (pROC >= 1.18 ``conf.int``).
    """

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p_two_sided: float
    p_greater: float
    p_less: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class UnpairedAucTest:
    """Unpaired DeLong test (pROC ``roc.test(paired=FALSE)``): Welch-type t with ``df``."""

    auc_a: float
    auc_b: float
    diff: float
    statistic: float
    df: float
    p_two_sided: float


def _placements(
    cases: NDArray[np.float64], controls: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """AUC and DeLong placements (V10 per case, V01 per control) via Sun & Xu mid-ranks.

    With Tx, Ty the mid-ranks within cases / controls and Tz those in the pooled sample:
    theta = (sum Tz_cases - m(m+1)/2) / (mn); V10_i = (Tz_i - Tx_i)/n; V01_j = 1 - (Tz_{m+j} - Ty_j)/m.
    Tz_i - Tx_i counts the controls below case i plus half the tied ones, exactly psi summed.
    """
    m, n = cases.size, controls.size
    tz = rankdata(np.concatenate([cases, controls]), method="average")
    tx = rankdata(cases, method="average")
    ty = rankdata(controls, method="average")
    # rank sums are exact in float64 (half-integers far below 2**53), so theta is exact up to one division
    theta = (float(tz[:m].sum()) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    return theta, v10, v01


def _split(
    s: NDArray[np.float64], is_case: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return s[is_case], s[~is_case]


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Empirical AUC (Mann–Whitney, ties count 1/2), direction fixed: higher score = case.

    Equals pROC ``auc(roc(labels, scores, levels=c(0,1), direction="<"))``. Never flipped:
    a model that ranks backwards gets an AUC below 0.5.
    """
    s, is_case = check_scores_labels(scores, labels)
    m, n = int(is_case.sum()), int((~is_case).sum())
    ranks = rankdata(s, method="average")
    return (float(ranks[is_case].sum()) - m * (m + 1) / 2.0) / (m * n)


def _delong_cov(
    v10: NDArray[np.float64], v01: NDArray[np.float64], theta: NDArray[np.float64]
) -> NDArray[np.float64]:
    """DeLong covariance matrix S = S10/m + S01/n for k rows of placements.

    Centred on theta, as pROC does (``sum((V$X - V$theta)^2)/(m-1)``): the mean of the
    placements equals theta mathematically, pROC just uses theta.
    """
    m, n = v10.shape[1], v01.shape[1]
    d10 = v10 - theta[:, None]
    d01 = v01 - theta[:, None]
    return (d10 @ d10.T) / ((m - 1) * m) + (d01 @ d01.T) / ((n - 1) * n)


def _need_two_each(m: int, n: int) -> None:
    if m < 2 or n < 2:
        raise UsageError(
            f"the DeLong variance needs at least 2 cases and 2 controls, got {m} case(s) and {n} control(s)"
        )


def delong(scores: ArrayLike, labels: ArrayLike, level: float = 0.95) -> AucResult:
    """AUC with DeLong variance and CI, as pROC ``ci.auc(roc, method="delong", conf.level=level)``.

    The CI is ``qnorm(c(a/2, 1-a/2), mean=auc, sd=sqrt(var))`` clipped to [0, 1] (pROC clamps the
    same way). Needs at least 2 cases and 2 controls (the sample variances have divisor m-1, n-1).
    """
    lvl = check_level(level)
    s, is_case = check_scores_labels(scores, labels)
    cases, controls = _split(s, is_case)
    _need_two_each(cases.size, controls.size)
    theta, v10, v01 = _placements(cases, controls)
    var = float(_delong_cov(v10[None, :], v01[None, :], np.array([theta]))[0, 0])
    z = float(norm.ppf(1.0 - (1.0 - lvl) / 2.0))
    sd = float(np.sqrt(var))
    return AucResult(
        auc=theta,
        var=var,
        ci_low=min(max(theta - z * sd, 0.0), 1.0),
        ci_high=min(max(theta + z * sd, 0.0), 1.0),
        n_cases=int(cases.size),
        n_controls=int(controls.size),
    )


def delong_paired(
    scores_a: ArrayLike, scores_b: ArrayLike, labels: ArrayLike, level: float = 0.95
) -> PairedAucTest:
    """Paired DeLong test of AUC(a) vs AUC(b) on the same exams, as pROC ``roc.test(paired=TRUE)``.

    d = auc_a - auc_b, se = sqrt(L S L') with L = (1, -1), z = d / se (0 when d == se == 0, pROC's
    special case); p two-sided = 2 Phi(-|z|), greater = Phi(-z), less = Phi(z);
    CI of d = d -+ z_{1-alpha/2} se.
    """
    lvl = check_level(level)
    sa, is_case = check_scores_labels(scores_a, labels)
    sb, _ = check_scores_labels(scores_b, labels)
    ca, cona = _split(sa, is_case)
    cb, conb = _split(sb, is_case)
    _need_two_each(ca.size, cona.size)
    ta, v10a, v01a = _placements(ca, cona)
    tb, v10b, v01b = _placements(cb, conb)
    cov = _delong_cov(np.vstack([v10a, v10b]), np.vstack([v01a, v01b]), np.array([ta, tb]))
    diff = ta - tb
    var_d = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = float(np.sqrt(max(var_d, 0.0)))
    if se == 0.0:
        # pROC: a zero difference with zero variance is z = 0; a non-zero one is +-Inf
        z = 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    else:
        z = diff / se
    q = float(norm.ppf(1.0 - (1.0 - lvl) / 2.0))
    return PairedAucTest(
        auc_a=ta,
        auc_b=tb,
        diff=diff,
        se=se,
        z=z,
        p_two_sided=float(2.0 * norm.cdf(-abs(z))),
        p_greater=float(norm.cdf(-z)),
        p_less=float(norm.cdf(z)),
        ci_low=diff - q * se,
        ci_high=diff + q * se,
    )


def delong_unpaired(
    scores_a: ArrayLike, labels_a: ArrayLike, scores_b: ArrayLike, labels_b: ArrayLike
) -> UnpairedAucTest:
    """Unpaired DeLong test of two independent sets, as pROC ``roc.test(paired=FALSE)``.

    D = (auc_a - auc_b) / sqrt(V_a + V_b); Welch-type
    df = (V_a + V_b)^2 / (V_a^2/(N_a - 1) + V_b^2/(N_b - 1)) with N = cases + controls of each set;
    two-sided p from Student's t.
    """
    a = delong(scores_a, labels_a)
    b = delong(scores_b, labels_b)
    na, nb = a.n_cases + a.n_controls, b.n_cases + b.n_controls
    diff = a.auc - b.auc
    tot = a.var + b.var
    if tot == 0.0:
        raise UsageError(
            "both AUC variances are 0 (perfectly separated sets); the unpaired DeLong test is undefined"
        )
    stat = diff / np.sqrt(tot)
    df = tot**2 / (a.var**2 / (na - 1) + b.var**2 / (nb - 1))
    return UnpairedAucTest(
        auc_a=a.auc,
        auc_b=b.auc,
        diff=diff,
        statistic=float(stat),
        df=float(df),
        p_two_sided=float(2.0 * student_t.sf(abs(stat), df)),
    )


# --------------------------------------------------------------------------- curve and coordinates


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC curve in pROC's order: thresholds ascending from -inf to +inf.

    At threshold t an exam is positive if score >= t (pROC ``direction="<"``), so ``tpr`` and
    ``fpr`` fall from 1 to 0 along the arrays. Unpacks as ``fpr, tpr, thresholds``.
    """

    fpr: NDArray[np.float64]
    tpr: NDArray[np.float64]
    thresholds: NDArray[np.float64]

    def __iter__(self) -> Iterator[NDArray[np.float64]]:
        return iter((self.fpr, self.tpr, self.thresholds))


def proc_thresholds(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """pROC ``roc.utils.thresholds`` for direction "<": midpoints between sorted unique values.

    -inf and +inf at the ends; midpoints are halved first when huge (pROC's overflow guard); a
    midpoint that rounds onto the lower of two adjacent doubles is moved to the upper one
    (pROC's near-tie fix), so "score >= threshold" still separates the two values.
    """
    u = np.unique(values)
    lo = np.concatenate([[-np.inf], u])
    hi = np.concatenate([u, [np.inf]])
    with np.errstate(over="ignore", invalid="ignore"):
        t1 = (lo + hi) / 2.0
    t2 = lo / 2.0 + hi / 2.0
    t = np.where(np.abs(t1) > 1e100, t2, t1)
    fix = np.isin(t, u) & (t == lo)
    t[fix] = hi[fix]
    return t


def _curve_counts(
    s: NDArray[np.float64], is_case: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Thresholds (ascending) and the number of cases / controls with score >= each threshold."""
    u, inv = np.unique(s, return_inverse=True)
    case_n = np.bincount(inv[is_case], minlength=u.size)
    ctrl_n = np.bincount(inv[~is_case], minlength=u.size)
    # counts at or above level k = reverse cumulative sums; threshold k sits just below level k
    tp = np.concatenate([np.cumsum(case_n[::-1])[::-1], [0]])
    fp = np.concatenate([np.cumsum(ctrl_n[::-1])[::-1], [0]])
    return proc_thresholds(s), tp, fp


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> RocCurve:
    """Empirical ROC curve with pROC's thresholds (see :func:`proc_thresholds`).

    Equals pROC ``roc(...)$thresholds``, ``1 - $specificities`` and ``$sensitivities``.
    Specificity is computed as pROC does, (n_controls - fp) / n_controls, so exact-equality
    look-ups (``coords``) behave the same.
    """
    s, is_case = check_scores_labels(scores, labels)
    thr, tp, fp = _curve_counts(s, is_case)
    m, n = int(is_case.sum()), int((~is_case).sum())
    spec = (n - fp) / n
    return RocCurve(fpr=1.0 - spec, tpr=tp / m, thresholds=thr)


def sens_at_spec_from_curve(
    se: NDArray[np.float64], sp: NDArray[np.float64], specificity: float
) -> float:
    """pROC ``coords(input="specificity")`` on a curve sorted by ascending specificity.

    If ``specificity`` occurs exactly, the first such point (lowest threshold, i.e. the highest
    sensitivity among the tied points) is returned; otherwise sensitivity is interpolated
    linearly between the two neighbouring points, with pROC's exact arithmetic.
    """
    exact = np.flatnonzero(sp == specificity)
    if exact.size:
        return float(se[exact[0]])
    nxt = int(np.argmax(sp > specificity))
    proportion = (specificity - sp[nxt]) / (sp[nxt - 1] - sp[nxt])
    return float(se[nxt] + proportion * (se[nxt - 1] - se[nxt]))


def check_specificity(specificity: float) -> float:
    try:
        value = float(specificity)
    except (TypeError, ValueError):
        raise UsageError(f"specificity must be a number in [0, 1], got {specificity!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(
            f"specificity must be in [0, 1] (a fraction, not a percentage), got {specificity!r}"
        )
    return value


def sensitivity_at_specificity(scores: ArrayLike, labels: ArrayLike, specificity: float) -> float:
    """Sensitivity at a fixed specificity, exactly pROC ``coords(roc, x=sp, input="specificity")``.

    Empirical curve, no smoothing; ties and interpolation as in :func:`sens_at_spec_from_curve`.
    Note this is a point on the *interpolated* curve, not necessarily an achievable threshold;
    use :func:`operating_point` for a vendor's declared threshold.
    """
    sp_target = check_specificity(specificity)
    s, is_case = check_scores_labels(scores, labels)
    _, tp, fp = _curve_counts(s, is_case)
    m, n = int(is_case.sum()), int((~is_case).sum())
    # specificity exactly as pROC computes it, so exact matches are found as pROC finds them
    return sens_at_spec_from_curve(tp / m, (n - fp) / n, sp_target)


@dataclass(frozen=True)
class OperatingPoint:
    """Confusion counts at one threshold; positive (flag/recall) if score >= threshold.

    Unpacks as ``sens, spec, tp, fn, tn, fp``.
    """

    sens: float
    spec: float
    tp: int
    fn: int
    tn: int
    fp: int

    def __iter__(self) -> Iterator[float | int]:
        return iter((self.sens, self.spec, self.tp, self.fn, self.tn, self.fp))


def operating_point(scores: ArrayLike, labels: ArrayLike, threshold: float) -> OperatingPoint:
    """Sensitivity, specificity and counts at ``threshold`` (score >= threshold = positive).

    This is the rule of a vendor-declared operating point (DESIGN 3.2 ``operating_point``).
    """
    s, is_case = check_scores_labels(scores, labels)
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise UsageError(f"threshold must be a number, got {threshold!r}") from None
    if np.isnan(thr):
        raise UsageError("threshold is NaN; give the vendor's declared operating point")
    pos = s >= thr
    tp = int(np.count_nonzero(pos & is_case))
    fp = int(np.count_nonzero(pos & ~is_case))
    m, n = int(is_case.sum()), int((~is_case).sum())
    return OperatingPoint(sens=tp / m, spec=(n - fp) / n, tp=tp, fn=m - tp, tn=n - fp, fp=fp)


def threshold_for_specificity(
    scores: np.ndarray, labels: np.ndarray, target: float
) -> float | None:
    """The lowest score threshold whose specificity reaches ``target`` (score >= t is positive),
    i.e. the most sensitive operating point that keeps the specificity; None if none does."""
    controls = np.sort(scores[labels == 0])
    candidates = np.unique(np.concatenate([scores, [np.inf]]))
    # specificity(t) = share of controls with score < t, non-decreasing in t
    spec = np.searchsorted(controls, candidates, side="left") / len(controls)
    ok = np.nonzero(spec >= target)[0]
    return float(candidates[ok[0]]) if len(ok) and np.isfinite(candidates[ok[0]]) else None
