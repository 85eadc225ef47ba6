"""harness.stats.bootstrap.bootstrap_stratified_totals: the resampling the programme CIs use."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import UsageError
from harness.stats.bootstrap import _row_codes, bootstrap_stratified_totals


def test_row_codes_are_equal_exactly_for_equal_rows():
    rng = np.random.default_rng(1)
    v = rng.integers(0, 3, size=(5000, 40)).astype(float) * 0.7
    v[::7] = v[0]
    codes = _row_codes(v)
    _, ref = np.unique(v, axis=0, return_inverse=True)
    assert np.array_equal(codes, ref.reshape(-1))


def test_each_stratum_keeps_its_size_and_the_totals_have_the_multinomial_moments():
    rng = np.random.default_rng(2)
    strata = np.r_[np.ones(50, int), np.zeros(200, int)]
    x = np.r_[rng.random(50) < 0.6, rng.random(200) < 0.1].astype(float)
    v = np.column_stack([np.ones(250), x, x * (strata == 1)])
    t = bootstrap_stratified_totals(v, strata, np.random.default_rng(3), 20000)
    assert np.all(t[:, 0] == 250)  # sizes fixed per stratum
    assert t[:, 2].mean() == pytest.approx(x[:50].sum(), rel=0.01)
    p = x[:50].mean()
    assert t[:, 2].var() == pytest.approx(50 * p * (1 - p), rel=0.05)
    with pytest.raises(UsageError):
        bootstrap_stratified_totals(v[:, 0], strata, np.random.default_rng(3), 10)
