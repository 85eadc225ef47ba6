"""Holm adjustment: hand example, properties, and R ``p.adjust(method="holm")`` live."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.stats.multiplicity import holm, holm_reject


def test_hand_example() -> None:
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(.04, 3*.03), max(.09, 2*.04), max(.09, .5)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5], rtol=1e-15)
    assert holm_reject([0.01, 0.04, 0.03, 0.5], 0.05).tolist() == [True, False, False, False]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_properties(p: list[float]) -> None:
    adj = holm(p)
    assert np.all(adj >= np.asarray(p)) and np.all(adj <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= 0)  # monotone in the raw p-values
    assert adj.min() == pytest.approx(min(1.0, len(p) * min(p)), rel=1e-15, abs=0)


def test_bad_input() -> None:
    with pytest.raises(UsageError, match="NaN"):
        holm([0.1, float("nan")])
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


@pytest.mark.external
def test_live_r(tmp_path: Path) -> None:
    rscript = require_tool("Rscript", "apt-get install r-cran-proc")
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(25) ** 3, [0.01, 0.01, 0.2, 1.0, 0.0]])
    np.savetxt(tmp_path / "p.txt", p, fmt="%.17g")
    code = (
        "p <- scan(commandArgs(TRUE)[1], quiet=TRUE); "
        "writeLines(sprintf('%.17g', p.adjust(p, method='holm')), commandArgs(TRUE)[2])"
    )
    proc = subprocess.run(
        [rscript, "-e", code, str(tmp_path / "p.txt"), str(tmp_path / "o.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    want = np.loadtxt(tmp_path / "o.txt")
    np.testing.assert_allclose(holm(p), want, rtol=1e-12, atol=0)
