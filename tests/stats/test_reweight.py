"""Prevalence reweighting: identity at natural prevalence, weighted-sum definition, CIs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.stats.proportions import wilson
from harness.stats.reweight import reweighted_programme, screening_weights

flags_labels = (
    st.integers(2, 200)
    .flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
        )
    )
    .filter(lambda fl: 0 < sum(fl[1]) < len(fl[1]))
)


@settings(max_examples=200, deadline=None)
@given(flags_labels)
def test_identity_at_natural_prevalence(fl: tuple[list[int], list[int]]) -> None:
    f, y = np.asarray(fl[0]), np.asarray(fl[1])
    natural = 1000.0 * y.mean()
    r = reweighted_programme(f, y, natural)
    np.testing.assert_allclose(screening_weights(y, natural), 1.0, rtol=1e-12)
    tp, fp = int(((f == 1) & (y == 1)).sum()), int(((f == 1) & (y == 0)).sum())
    assert r.recall_rate.value == pytest.approx(f.mean(), rel=1e-12, abs=1e-15)
    assert r.cdr_per_1000.value == pytest.approx(1000.0 * tp / y.size, rel=1e-12, abs=1e-12)
    if tp + fp:
        assert r.ppv.value == pytest.approx(tp / (tp + fp), rel=1e-12, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(flags_labels, st.floats(0.5, 900))
def test_closed_forms_equal_weighted_proportions(
    fl: tuple[list[int], list[int]], prev: float
) -> None:
    f, y = np.asarray(fl[0], float), np.asarray(fl[1])
    w = screening_weights(y, prev)
    r = reweighted_programme(f, y, prev)
    assert (w * (y == 1)).sum() / w.sum() == pytest.approx(prev / 1000.0, rel=1e-12)
    assert r.recall_rate.value == pytest.approx((w * f).sum() / w.sum(), rel=1e-12, abs=1e-15)
    assert r.cdr_per_1000.value == pytest.approx(
        1000.0 * (w * f * (y == 1)).sum() / w.sum(), rel=1e-12, abs=1e-12
    )
    for est in (r.recall_rate, r.cdr_per_1000, r.sensitivity, r.specificity):
        assert est.ci_low <= est.value <= est.ci_high
    if not np.isnan(r.ppv.value):
        assert r.ppv.ci_low <= r.ppv.value <= r.ppv.ci_high


def test_screening_example() -> None:
    # enriched set: 200 cancers, 800 normals; AI flags 170 cancers and 40 normals
    y = np.r_[np.ones(200, int), np.zeros(800, int)]
    f = np.r_[np.ones(170, int), np.zeros(30, int), np.ones(40, int), np.zeros(760, int)]
    r = reweighted_programme(f, y, 6.0)
    assert r.sensitivity.value == 0.85 and r.specificity.value == 0.95
    assert r.cdr_per_1000.value == pytest.approx(6.0 * 0.85)
    assert r.recall_rate.value == pytest.approx(0.006 * 0.85 + 0.994 * 0.05)
    assert r.ppv.value == pytest.approx(0.006 * 0.85 / (0.006 * 0.85 + 0.994 * 0.05))
    lo, hi = wilson(170, 200)
    assert (r.cdr_per_1000.ci_low, r.cdr_per_1000.ci_high) == pytest.approx(
        (6 * lo, 6 * hi), rel=1e-15
    )
    # recall rate is dominated by the controls: its CI is close to 0.994 x the FPR Wilson CI
    flo, fhi = wilson(40, 800)
    assert r.recall_rate.ci_low == pytest.approx(0.006 * 0.85 + 0.994 * flo, abs=5e-4)
    assert r.recall_rate.ci_high == pytest.approx(0.006 * 0.85 + 0.994 * fhi, abs=5e-4)


def test_bad_input() -> None:
    with pytest.raises(UsageError, match="prevalence_per_1000"):
        reweighted_programme([1, 0], [1, 0], 0)
    with pytest.raises(UsageError, match="no controls"):
        reweighted_programme([1, 0], [1, 1], 6)
    with pytest.raises(UsageError, match="flags"):
        reweighted_programme([2, 0], [1, 0], 6)
