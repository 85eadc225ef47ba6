"""Vectorised bootstrap CIs for AUC and sensitivity, with pROC's conventions.

Stratified bootstrap (pROC ``ci.auc(method="bootstrap")``, ``ci.se``): cases and controls are
resampled *separately*, each with replacement and its own size; B = 2000 replicates by default;
CI = percentile interval ``quantile(stat, c(a/2, 1-a/2))`` with R's type-7 quantiles (numpy
``method="linear"``); pROC reports the bootstrap *median* as the middle value (kept here as
``median``), while ``estimate`` is the statistic on the original data.

Why it is fast and still exact ("binned" method): a replicate's AUC and its pROC sensitivity at
a fixed specificity depend on the resampled controls only through how many of them fall into
each of 2K+1 categories around the K distinct case scores (below case level 0, tied with it,
between levels 0 and 1, ...). Resampling n controls uniformly with replacement gives category
counts that are Multinomial(n, category sizes / n), so the controls are drawn directly as those
counts; the cases are drawn as indices, as pROC's ``sample()`` does. Each replicate's statistic
is then computed from the counts with cumulative sums. :func:`_loop_auc` and
:func:`_loop_sens_at_spec` are the plain per-replicate references (materialise the resample,
call :mod:`harness.stats.roc`); given the same index draws, the vectorised core returns the same
numbers (the tests check it draw for draw).

How the control counts are drawn (:class:`_ControlSampler`): numpy's ``multinomial`` is a chain
of binomials whose cost grows with n, so it dominated at 10 % prevalence. Instead, Poissonisation
with an exact completion: draw independent X_c ~ Poisson(lam * size_c / n) with
lam = n - 5 sqrt(n); given their total N, X is Multinomial(N, sizes / n). A row with N > n
(probability ~3e-7) is redrawn; the remaining n - N controls are drawn as plain indices and
added. Given any N <= n the result is Multinomial(n, sizes / n), so it is that exactly. The
Poisson variates come from one uniform each by table inversion: per-category CDF from
``scipy.special.pdtr`` over mean +- 10 SD (+10 above; the mass outside is < 1e-20), cut after
the first value that rounds to 1.0, and a guide table with a power-of-two number of buckets so
every comparison is exact in floating point. Every probability is thus right to float64
resolution (numpy's uniforms are multiples of 2^-53), as with numpy's own samplers.

Cluster bootstrap (:func:`cluster_bootstrap_auc`): resample the independent unit (the woman)
with replacement and carry all her exams/breasts/images; the statistic is the AUC with each unit
weighted by how often its cluster was drawn. Replicates without a case or a control are dropped
(pROC drops NA replicates the same way) and counted in ``n_valid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.special import pdtr

from harness.errors import UsageError
from harness.stats.roc import (
    auc,
    check_level,
    check_scores_labels,
    check_specificity,
    sensitivity_at_specificity,
)

__all__ = [
    "BootstrapResult",
    "bootstrap_auc",
    "bootstrap_sens_at_spec",
    "bootstrap_sens_at_threshold",
    "bootstrap_stratified_totals",
    "cluster_bootstrap_auc",
    "percentile_interval",
]

DEFAULT_N_BOOT = 2000
# replicates per chunk are derived from the data size only, never from the machine, so a seed
# gives the same draws everywhere; ~4M cells per chunk keeps memory under ~100 MB
_CELLS_PER_CHUNK = 1 << 22
# control sampler: Poisson total mean n - _HEADROOM_SD sqrt(n) (a row over n, redrawn, has
# probability ~3e-7); CDF tables span mean +- _TABLE_SD SD (+10 above): mass outside < 1e-20.
# Both are fixed numbers, never tuned to the machine: they decide the draws for a seed.
_HEADROOM_SD = 5.0
_TABLE_SD = 10.0


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap result. ``replicates`` holds the valid replicate values in draw order."""

    estimate: float
    ci_low: float
    ci_high: float
    median: float
    level: float
    n_boot: int
    n_valid: int
    replicates: NDArray[np.float64] = field(repr=False, compare=False)


# --------------------------------------------------------------------------- shared pieces


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise UsageError(
            f"rng must be a numpy Generator (np.random.default_rng(seed) from the standard's seed), got {type(rng).__name__}"
        )
    return rng


def _check_n_boot(n_boot: object) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise UsageError(f"n_boot must be a whole number >= 2 (pROC default 2000), got {n_boot!r}")
    return int(n_boot)


def _percentile(
    reps: NDArray[np.float64], estimate: float, level: float, n_boot: int
) -> BootstrapResult:
    valid = reps[np.isfinite(reps)]
    if valid.size == 0:
        raise UsageError(
            "every bootstrap replicate was undefined (no case or no control drawn); the set is too small"
        )
    a = 1.0 - level
    lo, med, hi = np.quantile(valid, [a / 2.0, 0.5, 1.0 - a / 2.0], method="linear")  # R type 7
    return BootstrapResult(
        estimate=float(estimate),
        ci_low=float(lo),
        ci_high=float(hi),
        median=float(med),
        level=level,
        n_boot=n_boot,
        n_valid=int(valid.size),
        replicates=valid,
    )


@dataclass(frozen=True)
class _Binned:
    """Cases by distinct case score (level); controls by category around those levels.

    Category 2k: controls strictly between case level k-1 and k (below level 0 for k = 0);
    category 2k+1: controls tied with case level k; category 2K: above every case.
    """

    case_scores: NDArray[np.float64]
    control_scores: NDArray[np.float64]
    levels: NDArray[np.float64]
    case_level: NDArray[np.intp]
    control_cat: NDArray[np.intp]
    cat_sizes: NDArray[np.int64]

    @property
    def m(self) -> int:
        return int(self.case_scores.size)

    @property
    def n(self) -> int:
        return int(self.control_scores.size)

    @property
    def k(self) -> int:
        return int(self.levels.size)

    @cached_property
    def control_sampler(self) -> _ControlSampler:
        return _ControlSampler.build(self.cat_sizes, self.control_cat)


@dataclass(frozen=True)
class _ControlSampler:
    """Control category counts ~ Multinomial(n, sizes / n), by Poissonisation (module docstring).

    Works on the non-empty categories ``cats``. Poisson variates: one uniform u each, inverted
    through the category's CDF table, variate = ``lo_c + #{table entries <= u}``. ``cdf`` holds
    the tables back to back, each ending in exactly 1.0 (u < 1 never runs past it); ``guide``
    gives, for bucket j = floor(u * buckets_c), the first entry > j / buckets_c, from which a
    few exact comparisons step forward. buckets_c is a power of two, so u * buckets_c and the
    bucket edges are exact in floating point.
    """

    n: int
    width: int  # all categories, 2K+1
    lam: float  # Poisson total mean
    cats: NDArray[np.intp]  # non-empty categories, ascending
    control_cat: NDArray[np.intp]  # per control: its index into ``cats``
    cdf: NDArray[np.float64]
    buckets: NDArray[np.float64]  # per category: a power of two >= its table length
    guide_offset: NDArray[np.intp]  # per category: where its buckets start in ``guide``
    guide: NDArray[np.intp]  # per bucket: index into ``cdf`` of the first entry > bucket edge
    start: NDArray[np.intp]  # per category: where its table starts in ``cdf``
    lo: NDArray[np.intp]  # per category: the value of its first table entry
    base: NDArray[np.intp]  # start - lo, so variate = index into ``cdf`` - base

    @classmethod
    def build(cls, sizes: NDArray[np.int64], control_cat: NDArray[np.intp]) -> _ControlSampler:
        n = int(sizes.sum())
        lam = max(0.0, n - _HEADROOM_SD * np.sqrt(n))
        cats = np.flatnonzero(sizes)
        mu = lam * sizes[cats] / n
        sd = np.sqrt(mu)
        lo = np.floor(np.maximum(mu - _TABLE_SD * sd, 0.0)).astype(np.intp)
        hi = np.ceil(mu + _TABLE_SD * sd + 10.0).astype(np.intp)
        owner = np.repeat(np.arange(cats.size), hi - lo + 1)
        first = np.cumsum(hi - lo + 1) - (hi - lo + 1)
        cdf = pdtr(np.arange(owner.size) - first[owner] + lo[owner], mu[owner])
        # drop the entries after a category's first exact 1.0 (unreachable: u < 1)
        same = np.r_[False, owner[1:] == owner[:-1]]
        keep = ~(same & np.r_[False, cdf[:-1] == 1.0])
        cdf, owner = cdf[keep], owner[keep]
        length = np.bincount(owner, minlength=cats.size)
        start = np.cumsum(length) - length
        cdf[start + length - 1] = 1.0  # the tail beyond the table (< 2^-53) joins the last entry
        falls = (owner[1:] == owner[:-1]) & (np.diff(cdf) < 0)
        for c in np.unique(owner[1:][falls]):  # keep every table monotone (rounding)
            seg = slice(start[c], start[c] + length[c])
            cdf[seg] = np.maximum.accumulate(cdf[seg])
        buckets = np.left_shift(1, np.frexp(length - 1)[1]).astype(np.intp)  # 2^ceil(log2 L)
        guide_offset = np.cumsum(buckets + 1) - (buckets + 1)
        # entry i of category c is <= edge j / buckets_c iff ceil(cdf_i * buckets_c) <= j; the
        # entries of earlier categories all have smaller keys, so the running count is the index
        key = guide_offset[owner] + np.ceil(cdf * buckets[owner]).astype(np.intp)
        guide = np.cumsum(np.bincount(key, minlength=int((buckets + 1).sum())))
        return cls(
            n=n,
            width=int(sizes.size),
            lam=float(lam),
            cats=cats,
            control_cat=np.searchsorted(cats, control_cat).astype(np.intp),
            cdf=cdf,
            buckets=buckets.astype(np.float64),
            guide_offset=guide_offset,
            guide=guide.astype(np.intp),
            start=start,
            lo=lo,
            base=start - lo,
        )

    def invert(self, u: NDArray[np.float64]) -> NDArray[np.intp]:
        """Poisson variates from uniforms u in [0, 1), one column per category in ``cats``."""
        pos = self.guide[self.guide_offset + (u * self.buckets).astype(np.intp)]
        flat, uf = pos.reshape(-1), u.reshape(-1)
        step = np.flatnonzero(self.cdf[flat] <= uf)
        while step.size:
            flat[step] += 1
            step = step[self.cdf[flat[step]] <= uf[step]]
        return pos - self.base

    def counts(self, rng: np.random.Generator, reps: int) -> NDArray[np.int64]:
        """(reps, width) category counts, each row Multinomial(n, sizes / n).

        Draw order: reps x len(cats) uniforms; the uniforms of rows whose total exceeds n,
        redrawn until none does; the completion draws (control indices) of all rows in order.
        """
        x = self.invert(rng.random((reps, self.cats.size)))
        total = x.sum(axis=1)
        over = np.flatnonzero(total > self.n)
        while over.size:
            x[over] = self.invert(rng.random((over.size, self.cats.size)))
            total[over] = x[over].sum(axis=1)
            over = over[total[over] > self.n]
        short = self.n - total
        rows = np.repeat(np.arange(reps, dtype=np.intp) * self.cats.size, short)
        extra = self.control_cat[rng.integers(0, self.n, size=int(short.sum()))]
        x += np.bincount(rows + extra, minlength=x.size).reshape(x.shape)
        out = np.zeros((reps, self.width), dtype=np.int64)
        at = self.cats + (np.arange(reps, dtype=np.intp) * self.width)[:, None]
        out.reshape(-1)[at.reshape(-1)] = x.reshape(-1)
        return out


def _bin(cases: NDArray[np.float64], controls: NDArray[np.float64]) -> _Binned:
    levels, case_level = np.unique(cases, return_inverse=True)
    pos = np.searchsorted(levels, controls, side="left")  # case levels strictly below
    tied = (pos < levels.size) & (levels[np.minimum(pos, levels.size - 1)] == controls)
    cat = 2 * pos + tied.astype(np.intp)
    sizes = np.bincount(cat, minlength=2 * levels.size + 1)
    return _Binned(cases, controls, levels, case_level.astype(np.intp), cat.astype(np.intp), sizes)


def _row_bincount(
    idx: NDArray[np.intp], width: int, weights: NDArray[np.float64] | None = None
) -> NDArray:
    """bincount of each row of ``idx`` into ``width`` bins, in one call (row offset trick)."""
    rows = idx.shape[0]
    flat = (idx + (np.arange(rows, dtype=np.intp) * width)[:, None]).ravel()
    out = np.bincount(
        flat, weights=None if weights is None else weights.ravel(), minlength=rows * width
    )
    return out.reshape(rows, width)


def _chunks(n_boot: int, width: int) -> list[int]:
    size = max(1, min(n_boot, _CELLS_PER_CHUNK // max(width, 1)))
    full, rest = divmod(n_boot, size)
    return [size] * full + ([rest] if rest else [])


def _draw(
    rng: np.random.Generator, b: _Binned, reps: int
) -> tuple[NDArray[np.integer], NDArray[np.int64]]:
    """One chunk of stratified draws: case indices (reps, m) and control category counts (reps, 2K+1).

    Case indices as uniform integers (numpy draws the same values as int32 as it does as int64
    for a range below 2^32, only faster); control counts from :meth:`_ControlSampler.counts`,
    after the case indices.
    """
    case_idx = rng.integers(0, b.m, size=(reps, b.m), dtype=np.int32 if b.m < 2**31 else np.int64)
    return case_idx, b.control_sampler.counts(rng, reps)


# --------------------------------------------------------------------------- vectorised cores


def _auc_from_counts(case_w: NDArray, control_w: NDArray) -> NDArray[np.float64]:
    """AUC per row from case weights per level (r, K) and control weights per category (r, 2K+1).

    AUC = sum_k case_w[k] (controls below level k + 1/2 controls tied with it) / (W_case W_control).
    Integer counts make every sum exact; NaN where a row has no case or no control weight.
    """
    below = np.cumsum(control_w[:, :-1], axis=1)[:, 0::2]  # categories 0..2k inclusive
    tied = control_w[:, 1::2]
    num = (case_w * (below + 0.5 * tied)).sum(axis=1)
    den = case_w.sum(axis=1) * control_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _curve_from_counts(
    case_w: NDArray, control_w: NDArray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Collapsed ROC points per row in ascending threshold order: (se, sp), pROC's arithmetic.

    Points: below everything; just below and just above each case level; above everything.
    Several control-only levels between two case levels are one horizontal move here; pROC has
    more points on that segment but with equal sensitivity, so coords() answers identically.
    """
    r, k = case_w.shape
    m = case_w.sum(axis=1, keepdims=True)
    n = control_w.sum(axis=1, keepdims=True)
    cb = np.cumsum(control_w, axis=1)  # controls at or below category j
    kb = np.cumsum(case_w, axis=1)  # cases at or below level k
    ctrl_below = np.zeros((r, 2 * k + 2), dtype=cb.dtype)
    case_below = np.zeros((r, 2 * k + 2), dtype=kb.dtype)
    ctrl_below[:, 1:-1] = cb[:, :-1]
    ctrl_below[:, -1] = n[:, 0]
    case_below[:, 2:-1:2] = kb  # index 2k+2, just above level k: cases at or below level k
    case_below[:, 3:-1:2] = kb[:, :-1]  # index 2k+1, just below level k: cases below level k
    case_below[:, -1] = m[:, 0]
    fp = n - ctrl_below
    tp = m - case_below
    return tp / m, (n - fp) / n


def _sens_at_spec_rows(
    se: NDArray[np.float64], sp: NDArray[np.float64], target: float
) -> NDArray[np.float64]:
    """pROC coords(input="specificity") per row, vectorised (see roc.sens_at_spec_from_curve)."""
    rows = np.arange(se.shape[0])
    exact = sp == target
    has_exact = exact.any(axis=1)
    first_exact = exact.argmax(axis=1)
    nxt = np.maximum((sp > target).argmax(axis=1), 1)
    # rows with an exact match compute a meaningless (possibly 0/0) interpolation, discarded below
    with np.errstate(divide="ignore", invalid="ignore"):
        prop = (target - sp[rows, nxt]) / (sp[rows, nxt - 1] - sp[rows, nxt])
        interp = se[rows, nxt] + prop * (se[rows, nxt - 1] - se[rows, nxt])
    return np.where(has_exact, se[rows, first_exact], interp)


# --------------------------------------------------------------------------- public API


def bootstrap_auc(
    scores: ArrayLike,
    labels: ArrayLike,
    rng: np.random.Generator,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
) -> BootstrapResult:
    """Stratified percentile bootstrap CI of the AUC (pROC ``ci.auc(method="bootstrap")``)."""
    gen, nb, lvl = _check_rng(rng), _check_n_boot(n_boot), check_level(level)
    s, is_case = check_scores_labels(scores, labels)
    b = _bin(s[is_case], s[~is_case])
    reps = []
    for r in _chunks(nb, max(b.m, 2 * b.k + 1)):
        ci, cc = _draw(gen, b, r)
        reps.append(_auc_from_counts(_row_bincount(b.case_level[ci], b.k), cc))
    return _percentile(np.concatenate(reps), auc(s, is_case.astype(np.int8)), lvl, nb)


def bootstrap_sens_at_spec(
    scores: ArrayLike,
    labels: ArrayLike,
    specificity: float,
    rng: np.random.Generator,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
) -> BootstrapResult:
    """Stratified bootstrap CI of pROC's sensitivity at a fixed specificity (pROC ``ci.se``)."""
    gen, nb, lvl = _check_rng(rng), _check_n_boot(n_boot), check_level(level)
    target = check_specificity(specificity)
    s, is_case = check_scores_labels(scores, labels)
    b = _bin(s[is_case], s[~is_case])
    reps = []
    for r in _chunks(nb, max(b.m, 4 * b.k + 4)):
        ci, cc = _draw(gen, b, r)
        se, sp = _curve_from_counts(_row_bincount(b.case_level[ci], b.k), cc)
        reps.append(_sens_at_spec_rows(se, sp, target))
    return _percentile(
        np.concatenate(reps),
        sensitivity_at_specificity(s, is_case.astype(np.int8), target),
        lvl,
        nb,
    )


def bootstrap_sens_at_threshold(
    scores: ArrayLike,
    labels: ArrayLike,
    threshold: float,
    rng: np.random.Generator,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
) -> BootstrapResult:
    """Stratified bootstrap CI of sensitivity at a fixed threshold (score >= threshold = positive).

    Only the resampled cases matter; controls are still drawn (as category counts) so the random
    stream is the same as for the other stratified statistics.
    """
    gen, nb, lvl = _check_rng(rng), _check_n_boot(n_boot), check_level(level)
    s, is_case = check_scores_labels(scores, labels)
    thr = float(threshold)
    if np.isnan(thr):
        raise UsageError("threshold is NaN; give the vendor's declared operating point")
    b = _bin(s[is_case], s[~is_case])
    hit = (b.case_scores >= thr).astype(np.int64)
    reps = []
    for r in _chunks(nb, max(b.m, 2 * b.k + 1)):
        ci, _ = _draw(gen, b, r)
        reps.append(hit[ci].sum(axis=1) / b.m)
    return _percentile(np.concatenate(reps), float(hit.sum() / b.m), lvl, nb)


def cluster_bootstrap_auc(
    scores: ArrayLike,
    labels: ArrayLike,
    clusters: ArrayLike,
    rng: np.random.Generator,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
) -> BootstrapResult:
    """Cluster (woman-level) percentile bootstrap CI of the AUC.

    Each replicate draws as many clusters as there are, with replacement; every unit of a drawn
    cluster enters with weight = times its cluster was drawn; the AUC is the weighted
    Mann–Whitney statistic. Not stratified (a woman may contribute cases and controls).
    """
    gen, nb, lvl = _check_rng(rng), _check_n_boot(n_boot), check_level(level)
    s, is_case = check_scores_labels(scores, labels)
    cl = np.asarray(clusters)
    if cl.shape != s.shape:
        raise UsageError(
            f"clusters must give one id per score, got {cl.size} ids for {s.size} scores"
        )
    n_cl, case_inc, ctrl_inc, k = _cluster_incidence(s, is_case, cl)
    reps = []
    for r in _chunks(nb, max(n_cl, 2 * k + 1)):
        draws = gen.integers(0, n_cl, size=(r, n_cl))
        reps.append(_weighted_auc(draws, n_cl, case_inc, ctrl_inc))
    return _percentile(np.concatenate(reps), auc(s, is_case.astype(np.int8)), lvl, nb)


# --------------------------------------------------------------------------- per-replicate references


def _loop_auc(
    case_scores: NDArray, control_scores: NDArray, case_idx: NDArray, control_idx: NDArray
) -> NDArray[np.float64]:
    """Reference: materialise each replicate's resample and compute its AUC with :func:`auc`."""
    m, n = case_idx.shape[1], control_idx.shape[1]
    labels = np.concatenate([np.ones(m, np.int8), np.zeros(n, np.int8)])
    return np.array(
        [
            auc(np.concatenate([case_scores[ci], control_scores[cj]]), labels)
            for ci, cj in zip(case_idx, control_idx, strict=True)
        ]
    )


def _loop_sens_at_spec(
    case_scores: NDArray,
    control_scores: NDArray,
    case_idx: NDArray,
    control_idx: NDArray,
    specificity: float,
) -> NDArray[np.float64]:
    """Reference: materialise each replicate and call :func:`sensitivity_at_specificity`."""
    m, n = case_idx.shape[1], control_idx.shape[1]
    labels = np.concatenate([np.ones(m, np.int8), np.zeros(n, np.int8)])
    return np.array(
        [
            sensitivity_at_specificity(
                np.concatenate([case_scores[ci], control_scores[cj]]), labels, specificity
            )
            for ci, cj in zip(case_idx, control_idx, strict=True)
        ]
    )


def _loop_cluster_auc(
    scores: NDArray, labels: NDArray, clusters: NDArray, cluster_draws: NDArray
) -> NDArray[np.float64]:
    """Reference: per replicate, concatenate the units of the drawn clusters and compute the AUC."""
    ids, cluster_of = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(cluster_of == c) for c in range(ids.size)]
    out = []
    for draw in cluster_draws:
        idx = np.concatenate([members[c] for c in draw])
        y = labels[idx]
        out.append(auc(scores[idx], y) if 0 < y.sum() < y.size else np.nan)
    return np.array(out)


def _vectorised_auc_from_indices(
    b: _Binned, case_idx: NDArray, control_idx: NDArray
) -> NDArray[np.float64]:
    """The vectorised core fed with explicit control *index* draws (used by the tests)."""
    return _auc_from_counts(
        _row_bincount(b.case_level[case_idx], b.k),
        _row_bincount(b.control_cat[control_idx], 2 * b.k + 1),
    )


def _vectorised_sens_at_spec_from_indices(
    b: _Binned, case_idx: NDArray, control_idx: NDArray, specificity: float
) -> NDArray[np.float64]:
    se, sp = _curve_from_counts(
        _row_bincount(b.case_level[case_idx], b.k),
        _row_bincount(b.control_cat[control_idx], 2 * b.k + 1),
    )
    return _sens_at_spec_rows(se, sp, specificity)


def _vectorised_cluster_auc(
    scores: NDArray, labels: NDArray, clusters: NDArray, cluster_draws: NDArray
) -> NDArray[np.float64]:
    """Cluster core on explicit cluster draws (same weighting code as :func:`cluster_bootstrap_auc`)."""
    n_cl, case_inc, ctrl_inc, _ = _cluster_incidence(scores, labels == 1, clusters)
    return _weighted_auc(cluster_draws, n_cl, case_inc, ctrl_inc)


def _cluster_incidence(
    s: NDArray[np.float64], is_case: NDArray[np.bool_], clusters: NDArray
) -> tuple[int, sparse.csr_matrix, sparse.csr_matrix, int]:
    """Cluster x case-level and cluster x control-category incidence counts (sparse)."""
    _, cluster_of = np.unique(clusters, return_inverse=True)
    n_cl = int(cluster_of.max()) + 1
    b = _bin(s[is_case], s[~is_case])
    case_inc = sparse.csr_matrix(
        (np.ones(b.m), (cluster_of[is_case], b.case_level)), shape=(n_cl, b.k)
    )
    ctrl_inc = sparse.csr_matrix(
        (np.ones(b.n), (cluster_of[~is_case], b.control_cat)), shape=(n_cl, 2 * b.k + 1)
    )
    return n_cl, case_inc, ctrl_inc, b.k


def _weighted_auc(
    draws: NDArray, n_cl: int, case_inc: sparse.csr_matrix, ctrl_inc: sparse.csr_matrix
) -> NDArray[np.float64]:
    """Weights per cluster = times drawn; weights per level/category = weights @ incidence."""
    w = _row_bincount(draws, n_cl).astype(np.float64)
    return _auc_from_counts(np.asarray((case_inc.T @ w.T).T), np.asarray((ctrl_inc.T @ w.T).T))


# --------------------------------------------------------------------------- stratified totals


def bootstrap_stratified_totals(
    values: ArrayLike, strata: ArrayLike, rng: np.random.Generator, n_boot: int = DEFAULT_N_BOOT
) -> NDArray[np.float64]:
    """Stratified bootstrap of column totals: ``(n_boot, k)`` sums of ``values`` (N, k) per replicate.

    Each stratum (e.g. cases and controls, whose numbers the design fixes) is resampled
    separately, with replacement and its own size, as in the other stratified statistics here.
    Rows that are equal within a stratum are interchangeable, so a replicate depends only on how
    often each distinct row is drawn: one Multinomial(n_s, row counts / n_s) draw per stratum
    (numpy ``multinomial``), which is the index resampling exactly, in O(distinct rows) per
    replicate instead of O(N). Draw order: the strata in ascending order, all replicates of one
    stratum in one call.
    """
    gen, nb = _check_rng(rng), _check_n_boot(n_boot)
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(strata)
    if v.ndim != 2 or s.ndim != 1 or v.shape[0] != s.shape[0]:
        raise UsageError(
            f"values must be (N, k) and strata (N,), got shapes {v.shape} and {s.shape}"
        )
    out = np.zeros((nb, v.shape[1]), dtype=np.float64)
    codes = _row_codes(v)
    for stratum in np.unique(s):
        members = np.flatnonzero(s == stratum)
        _, first, counts = np.unique(codes[members], return_index=True, return_counts=True)
        n = int(counts.sum())
        draws = gen.multinomial(n, counts / n, size=nb)
        out += draws @ v[members[first]]
    return out


def _row_codes(v: NDArray[np.float64]) -> NDArray[np.int64]:
    """One integer per row, equal exactly when the rows are equal, in ascending row order.

    Column by column, mixed radix over each column's distinct values; the key is re-packed to
    0..distinct-1 before it could overflow. Far faster than ``np.unique(axis=0)`` on floats.
    """
    key = np.zeros(v.shape[0], dtype=np.int64)
    size = 1
    for j in range(v.shape[1]):
        levels, code = np.unique(v[:, j], return_inverse=True)
        if size * levels.size >= 1 << 62:
            _, key = np.unique(key, return_inverse=True)
            size = int(key.max()) + 1
        key = key * levels.size + code.reshape(-1)
        size *= levels.size
    return np.unique(key, return_inverse=True)[1].reshape(-1).astype(np.int64)


def percentile_interval(
    replicates: ArrayLike, estimate: float, level: float = 0.95
) -> BootstrapResult:
    """Percentile CI of any replicate statistic (NaN replicates dropped), R type-7 quantiles."""
    reps = np.asarray(replicates, dtype=np.float64)
    return _percentile(reps, estimate, check_level(level), int(reps.size))
