"""harness.stats.proportions against R (stored and live) and against its defining equations."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from harness.errors import UsageError
from harness.stats.proportions import (
    _mn_score,
    clopper_pearson,
    rate_ratio_score_ci,
    tango_noninferiority,
    tango_paired_ci,
    tango_score,
    wilson,
)

VECTORS = Path(__file__).parent / "vectors"
RTOL = 1e-9


def rows(name: str) -> list[dict[str, float]]:
    with open(VECTORS / name, newline="") as fh:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def close(got: float, want: float, rtol: float = RTOL) -> bool:
    return got == want or abs(got - want) <= rtol * abs(want)


@pytest.mark.parametrize(
    "row", rows("binom_ci_R.csv"), ids=lambda r: f"{int(r['x'])}/{int(r['n'])}"
)
def test_binomial_cis_against_stored_r(row: dict[str, float]) -> None:
    x, n = int(row["x"]), int(row["n"])
    # R printed 15 significant digits here, so compare at that resolution
    for (lo, hi), prefix in [
        (clopper_pearson(x, n), "cp"),
        (wilson(x, n), "wilson"),
        (wilson(x, n, correct=True), "wilsoncc"),
    ]:
        assert abs(lo - row[f"{prefix}_lo"]) <= 1e-14 + RTOL * row[f"{prefix}_lo"], prefix
        assert abs(hi - row[f"{prefix}_hi"]) <= 1e-14 + RTOL * row[f"{prefix}_hi"], prefix


@pytest.mark.parametrize("row", rows("paired_R.csv"), ids=lambda r: f"b{int(r['b'])}c{int(r['c'])}")
def test_tango_against_stored_propcis(row: dict[str, float]) -> None:
    # paired_R.csv reports p_second - p_first = (c - b)/n with its own b/c; in this module's
    # orientation that is b := c_R, c := b_R. PropCIs bisects to 1e-7, hence the tolerance.
    n = int(row["a"] + row["b"] + row["c"] + row["d"])
    b, c = int(row["c"]), int(row["b"])
    lo, hi = tango_paired_ci(b, c, n)
    assert (b - c) / n == pytest.approx(row["tango_diff_c_minus_b"], abs=1e-15)
    assert lo == pytest.approx(row["tango_lo"], abs=2e-7)
    assert hi == pytest.approx(row["tango_hi"], abs=2e-7)
    # T(0) is McNemar's z; its square the uncorrected McNemar chi-square R reported
    assert tango_score(b, c, n, 0.0) ** 2 == pytest.approx(row["mcnemar_chi2"], rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 400)
    .flatmap(lambda n: st.tuples(st.integers(0, n), st.integers(0, n), st.just(n)))
    .filter(lambda t: t[0] + t[1] <= t[2]),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_tango_interval_solves_its_equation(bcn: tuple[int, int, int], level: float) -> None:
    b, c, n = bcn
    z = norm.ppf((1 + level) / 2)
    lo, hi = tango_paired_ci(b, c, n, level)
    est = (b - c) / n
    assert -1.0 <= lo <= est <= hi <= 1.0
    if lo > -1.0:
        assert tango_score(b, c, n, lo) == pytest.approx(z, abs=1e-6)
    if hi < 1.0:
        assert tango_score(b, c, n, hi) == pytest.approx(-z, abs=1e-6)
    # mirror symmetry: swapping the methods mirrors the interval
    lo2, hi2 = tango_paired_ci(c, b, n, level)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), abs=1e-12)


def test_tango_noninferiority_consistent_with_interval() -> None:
    # AI finds 12 cancers the reader missed, misses 4 the reader found, of 100 cancers
    r = tango_noninferiority(12, 4, 100, margin=0.05, alpha=0.025)
    assert r.diff == pytest.approx(0.08)
    assert r.noninferior and r.ci_low > -0.05 and r.p < 0.025
    assert (r.ci_low, r.ci_high) == pytest.approx(tango_paired_ci(12, 4, 100, 0.95), abs=1e-15)
    worse = tango_noninferiority(2, 14, 100, margin=0.05, alpha=0.025)
    assert not worse.noninferior and worse.ci_low < -0.05 and worse.p > 0.025
    assert worse.z == pytest.approx(tango_score(2, 14, 100, -0.05), abs=0)


def test_mn_restricted_mle_is_the_likelihood_maximum() -> None:
    # the closed-form restricted MLE inside _mn_score must maximise the binomial likelihood under p1 = theta p2
    x1, n1, x2, n2 = 7, 120, 19, 150
    for theta in [0.2, 0.5, 1.0, 2.3]:

        def nll(p2: float, theta: float = theta) -> float:
            p1 = theta * p2
            return -(
                x1 * math.log(p1)
                + (n1 - x1) * math.log1p(-p1)
                + x2 * math.log(p2)
                + (n2 - x2) * math.log1p(-p2)
            )

        opt = minimize_scalar(
            nll,
            bounds=(1e-12, min(1.0, 1.0 / theta) - 1e-12),
            method="bounded",
            options={"xatol": 1e-14},
        )
        p2, p1 = opt.x, theta * opt.x
        big_n = n1 + n2
        var = (p1 * (1 - p1) / n1 + theta**2 * p2 * (1 - p2) / n2) * big_n / (big_n - 1)
        want = (x1 / n1 - theta * x2 / n2) / math.sqrt(var)
        assert _mn_score(x1, n1, x2, n2, theta) == pytest.approx(want, rel=1e-6)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.data())
def test_rate_ratio_ci_properties(n1: int, n2: int, data: st.DataObject) -> None:
    x1 = data.draw(st.integers(0, n1))
    x2 = data.draw(st.integers(0, n2))
    if x1 == 0 and x2 == 0:
        with pytest.raises(UsageError):
            rate_ratio_score_ci(x1, n1, x2, n2)
        return
    z = norm.ppf(0.975)
    lo, hi = rate_ratio_score_ci(x1, n1, x2, n2)
    assert 0.0 <= lo <= hi <= math.inf
    if x1 > 0 and x2 > 0:
        assert lo <= (x1 / n1) / (x2 / n2) <= hi
    if 0 < lo:
        assert _mn_score(x1, n1, x2, n2, lo) == pytest.approx(z, abs=1e-6)
    if hi < math.inf:
        assert _mn_score(x1, n1, x2, n2, hi) == pytest.approx(-z, abs=1e-6)
    assert (lo == 0.0) == (x1 == 0) and (hi == math.inf) == (x2 == 0)
    rlo, rhi = rate_ratio_score_ci(x2, n2, x1, n1)  # swapping groups inverts the interval
    assert rlo == pytest.approx(1.0 / hi if hi < math.inf else 0.0, rel=1e-9, abs=1e-300)
    assert (rhi == math.inf) if lo == 0.0 else rhi == pytest.approx(1.0 / lo, rel=1e-9)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: wilson(5, 3), "must not exceed"),
        (lambda: wilson(1, 0), "n must be >= 1"),
        (lambda: clopper_pearson(-1, 3), ">= 0"),
        (lambda: clopper_pearson(1.5, 3), "whole count"),
        (lambda: tango_paired_ci(60, 50, 100), "exceed"),
        (lambda: tango_noninferiority(1, 2, 10, margin=5), "margin"),
        (lambda: wilson(1, 3, level=1.0), "level"),
    ],
)
def test_bad_input(call, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=fragment):
        call()


# --------------------------------------------------------------------------- live R

R_PROPS = r"""
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); out <- args[2]
res <- t(sapply(seq_len(nrow(d)), function(i) {
  x <- d$x[i]; n <- d$n[i]; lv <- d$level[i]
  c(binom.test(x, n, conf.level = lv)$conf.int,
    prop.test(x, n, conf.level = lv, correct = FALSE)$conf.int,
    prop.test(x, n, conf.level = lv, correct = TRUE)$conf.int)
}))
# Tango (1998) score interval written from the paper, in its own orientation
# (b = first-only, c = second-only, delta = p2 - p1), roots by uniroot with a tight tolerance
tango_T <- function(b, c, n, delta) {
  num <- c - b - n * delta
  if (num == 0) return(0)
  B <- -b - c + (2 * n - c + b) * delta
  q <- (-B + sqrt(max(B^2 + 8 * n * b * delta * (1 - delta), 0))) / (4 * n)
  num / sqrt(n * (2 * q + delta * (1 - delta)))
}
tango_ci <- function(b, c, n, lv) {
  z <- qnorm(1 - (1 - lv) / 2); est <- (c - b) / n
  f <- function(d, tgt) tango_T(b, c, n, d) - tgt
  lo <- if (est <= -1 || f(-1 + 1e-15, z) <= 0) -1 else uniroot(f, c(-1 + 1e-15, est), tgt = z, tol = 1e-15)$root
  hi <- if (est >= 1 || f(1 - 1e-15, -z) >= 0) 1 else uniroot(f, c(est, 1 - 1e-15), tgt = -z, tol = 1e-15)$root
  c(lo, hi)
}
tg <- t(sapply(seq_len(nrow(d)), function(i) tango_ci(d$tb[i], d$tc[i], d$tn[i], d$level[i])))
write.csv(data.frame(cp_lo = sprintf("%.17g", res[, 1]), cp_hi = sprintf("%.17g", res[, 2]),
                     w_lo = sprintf("%.17g", res[, 3]), w_hi = sprintf("%.17g", res[, 4]),
                     wc_lo = sprintf("%.17g", res[, 5]), wc_hi = sprintf("%.17g", res[, 6]),
                     t_lo = sprintf("%.17g", tg[, 1]), t_hi = sprintf("%.17g", tg[, 2])), out, row.names = FALSE)
"""


@pytest.mark.external
def test_live_r_binomial_and_tango(tmp_path: Path) -> None:
    rscript = require_tool("Rscript", "apt-get install r-cran-proc")
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(40):
        n = int(rng.integers(1, 3000))
        x = int(rng.choice([0, n, rng.integers(0, n + 1), min(n, 1), max(n - 1, 0)]))
        tn = int(rng.integers(5, 800))
        tb = int(rng.integers(0, tn // 3 + 1))
        tc = int(rng.integers(0, tn - tb + 1)) if rng.random() < 0.5 else int(rng.integers(0, 4))
        cases.append((x, n, float(rng.choice([0.9, 0.95, 0.99])), tb, tc, tn))
    cases += [
        (0, 20, 0.95, 0, 0, 30),
        (20, 20, 0.95, 0, 5, 100),
        (10, 20, 0.95, 40, 0, 100),
        (7, 7, 0.9, 3, 3, 6),
    ]
    with open(tmp_path / "in.csv", "w") as fh:
        fh.write("x,n,level,tb,tc,tn\n")
        for row in cases:
            fh.write(",".join(map(str, row)) + "\n")
    (tmp_path / "p.R").write_text(R_PROPS)
    proc = subprocess.run(
        [rscript, str(tmp_path / "p.R"), str(tmp_path / "in.csv"), str(tmp_path / "out.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "out.csv", newline="") as fh:
        ref = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)]
    assert len(ref) == len(cases)
    for (x, n, lv, tb, tc, tn), r in zip(cases, ref, strict=True):
        for (lo, hi), key in [
            (clopper_pearson(x, n, lv), "cp"),
            (wilson(x, n, lv), "w"),
            (wilson(x, n, lv, correct=True), "wc"),
        ]:
            assert close(lo, r[f"{key}_lo"]) or abs(lo - r[f"{key}_lo"]) < 1e-15, (
                key,
                x,
                n,
                lv,
                lo,
                r[f"{key}_lo"],
            )
            assert close(hi, r[f"{key}_hi"]), (key, x, n, lv, hi, r[f"{key}_hi"])
        # R's Tango is in the paper's orientation (p_second - p_first): mirror it
        lo, hi = tango_paired_ci(tc, tb, tn, lv)
        assert abs(lo - r["t_lo"]) <= 1e-9 * max(abs(r["t_lo"]), 1e-3), (tb, tc, tn, lo, r["t_lo"])
        assert abs(hi - r["t_hi"]) <= 1e-9 * max(abs(r["t_hi"]), 1e-3), (tb, tc, tn, hi, r["t_hi"])
