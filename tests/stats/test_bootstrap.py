"""Bootstrap: the vectorised cores equal the per-replicate loops draw for draw; pROC conventions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from harness.errors import UsageError
from harness.stats import bootstrap as bs
from harness.stats.roc import auc, delong, sensitivity_at_specificity

data_sets = st.tuples(
    st.integers(1, 25), st.integers(1, 40), st.booleans(), st.integers(0, 2**32 - 1)
)


def make(m: int, n: int, ties: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if ties:
        return rng.integers(0, 6, m).astype(float), rng.integers(0, 5, n).astype(float)
    return rng.normal(1, 1, m), rng.normal(0, 1, n)


@settings(max_examples=60, deadline=None)
@given(data_sets, st.sampled_from([0.0, 0.5, 0.8, 0.9, 0.95, 1.0, 0.3333]))
def test_vectorised_equals_loop_on_same_index_draws(
    ds: tuple[int, int, bool, int], sp: float
) -> None:
    m, n, ties, seed = ds
    cases, controls = make(m, n, ties, seed)
    rng = np.random.default_rng(seed + 1)
    ci, cj = rng.integers(0, m, (30, m)), rng.integers(0, n, (30, n))
    b = bs._bin(cases, controls)
    # bit-for-bit: the same exact count arithmetic and the same pROC interpolation expression
    np.testing.assert_array_equal(
        bs._vectorised_auc_from_indices(b, ci, cj), bs._loop_auc(cases, controls, ci, cj)
    )
    np.testing.assert_array_equal(
        bs._vectorised_sens_at_spec_from_indices(b, ci, cj, sp),
        bs._loop_sens_at_spec(cases, controls, ci, cj, sp),
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**32 - 1))
def test_cluster_vectorised_equals_loop(n_women: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_women)
    clusters = np.repeat(np.arange(n_women) * 7 + 3, sizes)  # arbitrary ids
    labels = (rng.random(clusters.size) < 0.3).astype(int)
    labels[0], labels[-1] = 1, 0
    scores = rng.integers(0, 4, clusters.size).astype(float) + labels
    draws = rng.integers(0, n_women, (25, n_women))
    vec = bs._vectorised_cluster_auc(scores, labels, clusters, draws)
    loop = bs._loop_cluster_auc(scores, labels, clusters, draws)
    np.testing.assert_array_equal(np.isnan(vec), np.isnan(loop))
    np.testing.assert_allclose(vec[~np.isnan(vec)], loop[~np.isnan(loop)], rtol=1e-14, atol=0)


def test_multinomial_control_draws_have_index_draw_distribution() -> None:
    # the production sampler draws control category counts ~ Multinomial(n, sizes/n); check the
    # category probabilities are exactly the index-draw probabilities
    cases, controls = make(9, 40, True, 5)
    b = bs._bin(cases, controls)
    idx = np.arange(b.n)
    np.testing.assert_array_equal(
        np.bincount(b.control_cat[idx], minlength=2 * b.k + 1), b.cat_sizes
    )
    _, counts = bs._draw(np.random.default_rng(0), b, 7)
    assert counts.shape == (7, 2 * b.k + 1) and np.all(counts.sum(axis=1) == b.n)
    assert np.all(counts[:, b.cat_sizes == 0] == 0)


def _sampler(sizes: list[int]) -> bs._ControlSampler:
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    return bs._ControlSampler.build(sizes_arr, np.repeat(np.arange(sizes_arr.size), sizes_arr))


def test_poisson_tables_are_the_poisson_cdf_and_inversion_is_exact() -> None:
    # category means from ~1e-4 to ~9e4 (0.7 %- and 10 %-prevalence-like), plus empty categories
    sizes = [0, 1, 2, 0, 7, 40, 1, 300, 0, 5000, 90000, 3]
    smp = _sampler(sizes)
    assert smp.n == sum(sizes) and smp.width == len(sizes)
    np.testing.assert_array_equal(smp.cats, np.flatnonzero(sizes))
    ends = np.r_[smp.start[1:], smp.cdf.size]
    mu = smp.lam * np.asarray(sizes)[smp.cats] / smp.n
    probes = [np.array([0.0, np.nextafter(1.0, 0.0), 0.5]), np.random.default_rng(0).random(2000)]
    for c in range(smp.cats.size):
        table = smp.cdf[smp.start[c] : ends[c]]
        x = smp.lo[c] + np.arange(table.size)
        assert table[-1] == 1.0 and np.all(np.diff(table) >= 0)
        np.testing.assert_allclose(table[:-1], stats.poisson.cdf(x[:-1], mu[c]), rtol=1e-12)
        # what the table leaves out, below and above, is negligible
        assert stats.poisson.cdf(x[0] - 1, mu[c]) < 1e-18 and stats.poisson.sf(x[-1], mu[c]) < 1e-15
        # the exact edge cases: every table value, its neighbours, every guide bucket edge
        edges = np.arange(int(smp.buckets[c])) / smp.buckets[c]
        probes += [table, np.nextafter(table, 0.0), np.nextafter(table, 1.0), edges]
    u = np.concatenate(probes)
    u = u[u < 1.0]
    got = smp.invert(np.repeat(u[:, None], smp.cats.size, axis=1))
    for c in range(smp.cats.size):
        table = smp.cdf[smp.start[c] : ends[c]]
        want = smp.lo[c] + np.searchsorted(table, u, side="right")  # min{x : u < F(x)}
        np.testing.assert_array_equal(got[:, c], want)


@pytest.mark.parametrize("headroom", [bs._HEADROOM_SD, 0.0])
def test_control_counts_are_exactly_multinomial(
    headroom: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # headroom 0: Poisson total mean = n, so about half the rows exceed n and are redrawn
    monkeypatch.setattr(bs, "_HEADROOM_SD", headroom)
    sizes = [0, 12, 0, 3, 15, 0]
    smp = _sampler(sizes)
    reps = 60_000
    counts = smp.counts(np.random.default_rng(7), reps)
    assert counts.shape == (reps, len(sizes)) and np.all(counts.sum(axis=1) == 30)
    assert np.all(counts[:, [0, 2, 5]] == 0)
    # goodness of fit of the joint counts against Multinomial(30, sizes / 30)
    outcomes, seen = np.unique(counts[:, [1, 3]], axis=0, return_counts=True)
    grid = [(a, b) for a in range(31) for b in range(31 - a)]
    p = stats.multinomial.pmf([[a, b, 30 - a - b] for a, b in grid], 30, np.array([12, 3, 15]) / 30)
    observed = dict(zip(map(tuple, outcomes.tolist()), seen.tolist(), strict=True))
    obs = np.array([observed.get(g, 0) for g in grid], dtype=float)
    exp = p * reps
    big = exp >= 5  # pool the sparse tail into one cell
    obs_c = np.r_[obs[big], obs[~big].sum()]
    exp_c = np.r_[exp[big], exp[~big].sum()]
    assert sum(observed.values()) == reps and obs.sum() == reps
    assert stats.chisquare(obs_c, exp_c * reps / exp_c.sum()).pvalue > 1e-3


def test_control_counts_moments_at_scale() -> None:
    # n = 5000 over 40 categories: Poisson part dominant; means and variances are multinomial
    sizes = np.random.default_rng(3).integers(1, 250, 40)
    sizes[[4, 9]] = 0
    smp = _sampler(sizes.tolist())
    n, reps = int(sizes.sum()), 20_000
    counts = smp.counts(np.random.default_rng(11), reps)
    assert np.all(counts.sum(axis=1) == n)
    p = sizes / n
    se_mean = np.sqrt(n * p * (1 - p) / reps)
    nz = p > 0
    assert np.all(np.abs(counts.mean(axis=0) - n * p)[nz] < 5 * se_mean[nz])
    ratio = counts.var(axis=0, ddof=1)[nz] / (n * p * (1 - p))[nz]
    assert np.all(np.abs(ratio - 1) < 5 * np.sqrt(2 / reps))
    # covariance of two categories: -n p_i p_j
    cov = np.cov(counts[:, 0], counts[:, 1])[0, 1]
    assert cov == pytest.approx(-n * p[0] * p[1], abs=5 * np.sqrt(n * p[0] * n * p[1] / reps))


def test_deterministic_and_percentile_convention() -> None:
    cases, controls = make(40, 400, False, 11)
    s = np.r_[cases, controls]
    y = np.r_[np.ones(40, int), np.zeros(400, int)]
    r1 = bs.bootstrap_auc(s, y, np.random.default_rng(42), n_boot=500)
    r2 = bs.bootstrap_auc(s, y, np.random.default_rng(42), n_boot=500)
    np.testing.assert_array_equal(r1.replicates, r2.replicates)
    assert r1.estimate == auc(s, y) and r1.n_valid == r1.n_boot == 500
    # R type-7 quantile by hand
    srt = np.sort(r1.replicates)
    h = (srt.size - 1) * 0.025
    assert r1.ci_low == srt[int(h)] + (h - int(h)) * (srt[int(h) + 1] - srt[int(h)])
    # the bootstrap SD agrees with the DeLong SE (both estimate the same sampling SD)
    assert np.std(r1.replicates, ddof=1) == pytest.approx(np.sqrt(delong(s, y).var), rel=0.15)


def test_sens_statistics() -> None:
    cases, controls = make(30, 200, True, 3)
    s = np.r_[cases, controls]
    y = np.r_[np.ones(30, int), np.zeros(200, int)]
    r = bs.bootstrap_sens_at_spec(s, y, 0.9, np.random.default_rng(1), n_boot=300)
    assert r.estimate == sensitivity_at_specificity(s, y, 0.9)
    assert 0.0 <= r.ci_low <= r.median <= r.ci_high <= 1.0
    t = bs.bootstrap_sens_at_threshold(s, y, 3.0, np.random.default_rng(1), n_boot=300)
    assert t.estimate == np.mean(cases >= 3.0)
    # same seed, same case draws as the AUC bootstrap -> the case resamples line up
    g = np.random.default_rng(1)
    b = bs._bin(cases, controls)
    ci, _ = bs._draw(g, b, 300)
    np.testing.assert_array_equal(t.replicates, (cases[ci] >= 3.0).sum(axis=1) / 30)


def test_cluster_bootstrap_drops_undefined_replicates() -> None:
    # two women: one with only a case, one with only a control -> half the replicates undefined
    r = bs.cluster_bootstrap_auc(
        [0.9, 0.1], [1, 0], ["w1", "w2"], np.random.default_rng(0), n_boot=200
    )
    assert 0 < r.n_valid < 200 and np.all(r.replicates == 1.0)


def test_bad_input() -> None:
    with pytest.raises(UsageError, match="Generator"):
        bs.bootstrap_auc([1, 0], [1, 0], 42)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="n_boot"):
        bs.bootstrap_auc([1, 0], [1, 0], np.random.default_rng(0), n_boot=1)
    with pytest.raises(UsageError, match="no controls"):
        bs.bootstrap_auc([1, 0], [1, 1], np.random.default_rng(0))
    with pytest.raises(UsageError, match="one id per score"):
        bs.cluster_bootstrap_auc([1, 0], [1, 0], [1], np.random.default_rng(0))
