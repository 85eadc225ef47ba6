"""harness.stats.roc against R pROC 1.18.0: stored vectors, live Rscript runs, and properties."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.stats.roc import (
    _placements,
    auc,
    delong,
    delong_paired,
    delong_unpaired,
    operating_point,
    roc_curve,
    sensitivity_at_specificity,
)

VECTORS = Path(__file__).parent / "vectors"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "research"
RTOL = 1e-9
DATASETS = ["ds_ties", "ds_cont", "ds_screen"]


def load(ds: str) -> dict[str, np.ndarray]:
    d = np.genfromtxt(VECTORS / f"{ds}.csv", delimiter=",", names=True)
    return {"label": d["label"].astype(int), "a": d["score_a"], "b": d["score_b"]}


def proc_reference() -> dict[tuple[str, str], float]:
    with open(VECTORS / "proc_results.csv", newline="") as fh:
        return {(r["dataset"], r["quantity"]): float(r["value"]) for r in csv.DictReader(fh)}


def close(got: float, want: float) -> bool:
    return abs(got - want) <= RTOL * max(abs(want), 1e-300) or got == want


@pytest.mark.parametrize(
    "name",
    ["ds_ties.csv", "ds_cont.csv", "ds_screen.csv", "proc_results.csv", "ds_ties_placements_a.csv"],
)
def test_vectors_match_shared(name: str) -> None:
    original = SHARED / "proc_reference" / name
    if not original.exists():
        pytest.skip(f"shared research directory not present at {SHARED}")
    assert (VECTORS / name).read_bytes() == original.read_bytes()


@pytest.mark.parametrize("ds", DATASETS)
def test_against_stored_proc_results(ds: str) -> None:
    ref = proc_reference()
    d = load(ds)
    a, b = delong(d["a"], d["label"]), delong(d["b"], d["label"])
    paired = delong_paired(d["a"], d["b"], d["label"])
    unpaired = delong_unpaired(d["a"], d["label"], d["b"], d["label"])
    got = {
        "n_cases": a.n_cases,
        "n_controls": a.n_controls,
        "auc_a": auc(d["a"], d["label"]),
        "auc_b": b.auc,
        "var_a_delong": a.var,
        "var_b_delong": b.var,
        "ci_a_delong_lo": a.ci_low,
        "ci_a_delong_hi": a.ci_high,
        "ci_b_delong_lo": b.ci_low,
        "ci_b_delong_hi": b.ci_high,
        "roctest_delong_paired_z": paired.z,
        "roctest_delong_paired_p_two_sided": paired.p_two_sided,
        "roctest_delong_paired_diff_ci_lo": paired.ci_low,
        "roctest_delong_paired_diff_ci_hi": paired.ci_high,
        "roctest_delong_paired_p_greater": paired.p_greater,
        "roctest_delong_unpaired_D": unpaired.statistic,
        "roctest_delong_unpaired_df": unpaired.df,
        "roctest_delong_unpaired_p": unpaired.p_two_sided,
        "sens_at_spec0.90_a": sensitivity_at_specificity(d["a"], d["label"], 0.90),
    }
    # covariance is implied by the paired se: var_d = va + vb - 2 cov
    got["cov_ab_delong"] = (a.var + b.var - paired.se**2) / 2.0
    for key, value in got.items():
        want = ref[(ds, key)]
        tol = (
            1e-12 if key == "cov_ab_delong" else None
        )  # derived through a difference: absolute check
        ok = abs(value - want) <= tol if tol else close(value, want)
        assert ok, f"{ds} {key}: got {value!r}, pROC {want!r}"
    assert paired.p_less == pytest.approx(1.0 - paired.p_greater, rel=1e-12)


def test_placements_match_proc() -> None:
    d = load("ds_ties")
    y = d["label"] == 1
    _, v10, v01 = _placements(d["a"][y], d["a"][~y])
    with open(VECTORS / "ds_ties_placements_a.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    want10 = np.array([float(r["value"]) for r in rows if r["kind"] == "case_V10"])
    want01 = np.array([float(r["value"]) for r in rows if r["kind"] == "control_V01"])
    np.testing.assert_allclose(v10, want10, rtol=RTOL, atol=0)
    np.testing.assert_allclose(v01, want01, rtol=RTOL, atol=1e-15)


# --------------------------------------------------------------------------- live R

R_SCRIPT = r"""
suppressMessages(library(pROC))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; names <- strsplit(args[2], ",")[[1]]
specs <- c(0.5, 0.8, 0.9, 0.95, 0.123456, 0, 1)
out <- list()
add <- function(ds, key, val) out[[length(out) + 1]] <<- data.frame(ds = ds, key = key, value = sprintf("%.17g", as.numeric(val)))
for (nm in names) {
  d <- read.csv(file.path(dir, paste0(nm, ".csv")))
  ra <- roc(d$label, d$a, levels = c(0, 1), direction = "<", quiet = TRUE)
  rb <- roc(d$label, d$b, levels = c(0, 1), direction = "<", quiet = TRUE)
  ca <- ci.auc(ra, method = "delong", conf.level = 0.9)
  add(nm, "auc", auc(ra)); add(nm, "var", var(ra, method = "delong"))
  add(nm, "ci_lo", ca[1]); add(nm, "ci_hi", ca[3])
  t2 <- roc.test(ra, rb, method = "delong", paired = TRUE)
  add(nm, "z", t2$statistic); add(nm, "p", t2$p.value)
  add(nm, "dlo", t2$conf.int[1]); add(nm, "dhi", t2$conf.int[2])
  tl <- roc.test(ra, rb, method = "delong", paired = TRUE, alternative = "less")
  add(nm, "p_less", tl$p.value)
  for (sp in specs) {
    add(nm, paste0("se_at_", sp), coords(ra, x = sp, input = "specificity", ret = "sensitivity", transpose = FALSE)$sensitivity)
  }
  # exact grid values of the curve: pick two existing specificities
  for (sp in unique(ra$specificities)[c(2, length(unique(ra$specificities)) %/% 2)]) {
    add(nm, sprintf("se_at_grid_%.17g", sp), coords(ra, x = sp, input = "specificity", ret = "sensitivity", transpose = FALSE)$sensitivity)
  }
  write.csv(data.frame(t = sprintf("%.17g", ra$thresholds), se = sprintf("%.17g", ra$sensitivities),
                       sp = sprintf("%.17g", ra$specificities)), file.path(dir, paste0(nm, "_curve.csv")), row.names = FALSE)
}
write.csv(do.call(rbind, out), file.path(dir, "out.csv"), row.names = FALSE)
"""


def _random_sets(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    sets = {}
    for name, m, n, kind in [
        ("tiny", 3, 4, "ties"),
        ("small_ties", 15, 25, "ties"),
        ("mid_ties", 80, 300, "ties"),
        ("mid_cont", 120, 380, "cont"),
        ("screen", 25, 3000, "rounded"),
        ("sep", 10, 12, "separated"),
    ]:
        y = np.r_[np.ones(m, int), np.zeros(n, int)]
        if kind == "ties":  # heavy ties: a 5-point scale, both scores correlated
            a = rng.integers(0, 5, m + n) + y * rng.integers(0, 2, m + n)
            b = np.clip(a + rng.integers(-1, 2, m + n), 0, 6)
        elif kind == "rounded":
            a = np.round(rng.normal(1.2 * y, 1.0), 2)
            b = np.round(0.5 * a + rng.normal(0.5 * y, 0.8), 2)
        elif kind == "separated":
            a = np.r_[rng.uniform(2, 3, m), rng.uniform(0, 1, n)]
            b = rng.normal(0.5 * y, 1.0)
        else:
            a = rng.normal(1.0 * y, 1.0)
            b = 0.6 * a + rng.normal(0.4 * y, 0.8)
        sets[name] = {"label": y, "a": a.astype(float), "b": b.astype(float)}
    return sets


@pytest.mark.external
def test_live_proc(tmp_path: Path) -> None:
    rscript = require_tool("Rscript", "apt-get install r-cran-proc")
    sets = _random_sets(np.random.default_rng(20261127))
    for name, d in sets.items():
        with open(tmp_path / f"{name}.csv", "w") as fh:
            fh.write("label,a,b\n")
            for y, a, b in zip(d["label"], d["a"], d["b"], strict=True):
                fh.write(f"{int(y)},{float(a)!r},{float(b)!r}\n")
    (tmp_path / "run.R").write_text(R_SCRIPT)
    proc = subprocess.run(
        [rscript, str(tmp_path / "run.R"), str(tmp_path), ",".join(sets)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "out.csv", newline="") as fh:
        ref = {(r["ds"], r["key"]): float(r["value"]) for r in csv.DictReader(fh)}
    checked = 0
    for name, d in sets.items():
        a = delong(d["a"], d["label"], level=0.9)
        p = delong_paired(d["a"], d["b"], d["label"])
        got = {
            "auc": a.auc,
            "var": a.var,
            "ci_lo": a.ci_low,
            "ci_hi": a.ci_high,
            "z": p.z,
            "p": p.p_two_sided,
            "dlo": p.ci_low,
            "dhi": p.ci_high,
            "p_less": p.p_less,
        }
        for (ds, key), want in ref.items():
            if ds != name:
                continue
            if key.startswith("se_at_"):
                sp = float(key.rsplit("_", 1)[1])
                value = sensitivity_at_specificity(d["a"], d["label"], sp)
            else:
                value = got[key]
            assert close(value, want), f"{name} {key}: got {value!r}, pROC {want!r}"
            checked += 1
        with open(tmp_path / f"{name}_curve.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        curve = {k: np.array([float(r[k]) for r in rows]) for k in ("t", "se", "sp")}
        fpr, tpr, thr = roc_curve(d["a"], d["label"])
        np.testing.assert_array_equal(thr, curve["t"])
        np.testing.assert_array_equal(tpr, curve["se"])
        np.testing.assert_allclose(1.0 - fpr, curve["sp"], rtol=0, atol=1e-15)
    assert checked == len(ref) >= len(sets) * 16  # every value R wrote was compared


# --------------------------------------------------------------------------- properties

scores_labels = st.integers(1, 30).flatmap(
    lambda m: st.integers(1, 30).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.integers(-5, 5) | st.floats(-10, 10, allow_nan=False),
                min_size=m + n,
                max_size=m + n,
            ),
            st.just(np.r_[np.ones(m, int), np.zeros(n, int)]),
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(scores_labels)
def test_auc_bounds_and_antisymmetry(data: tuple[list[float], np.ndarray]) -> None:
    s, y = np.asarray(data[0], float), data[1]
    value = auc(s, y)
    assert 0.0 <= value <= 1.0
    assert auc(-s, y) == pytest.approx(1.0 - value, abs=1e-12)
    # brute force Mann-Whitney with 1/2 for ties
    x, z = s[y == 1], s[y == 0]
    brute = ((x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])).mean()
    assert value == pytest.approx(brute, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(scores_labels, st.lists(st.floats(-12, 12, allow_nan=False), min_size=2, max_size=6))
def test_sensitivity_monotone_in_threshold(
    data: tuple[list[float], np.ndarray], thresholds: list[float]
) -> None:
    s, y = np.asarray(data[0], float), data[1]
    sens = [operating_point(s, y, t).sens for t in sorted(thresholds)]
    spec = [operating_point(s, y, t).spec for t in sorted(thresholds)]
    assert all(a >= b for a, b in zip(sens, sens[1:], strict=False))
    assert all(a <= b for a, b in zip(spec, spec[1:], strict=False))


@settings(max_examples=100, deadline=None)
@given(scores_labels)
def test_curve_points_are_operating_points(data: tuple[list[float], np.ndarray]) -> None:
    s, y = np.asarray(data[0], float), data[1]
    fpr, tpr, thr = roc_curve(s, y)
    for i in range(1, thr.size - 1):
        op = operating_point(s, y, thr[i])
        assert (op.sens, 1.0 - op.spec) == pytest.approx((tpr[i], fpr[i]), abs=1e-15)
    assert tpr[0] == 1.0 and tpr[-1] == 0.0 and fpr[0] == 1.0 and fpr[-1] == 0.0


def test_direction_is_never_flipped() -> None:
    y = np.r_[np.ones(10, int), np.zeros(10, int)]
    s = np.r_[np.zeros(10), np.ones(10)]  # a model that ranks backwards
    assert auc(s, y) == 0.0
    assert delong(s, y).ci_high == 0.0


def test_operating_point_counts() -> None:
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.5, 0.2, 0.5, 0.1, 0.3, 0.7]
    op = operating_point(s, y, 0.5)  # 0.5 is positive (>=)
    assert tuple(op) == (2 / 3, 2 / 4, 2, 1, 2, 2)


@pytest.mark.parametrize(
    ("scores", "labels", "fragment"),
    [
        ([0.1, 0.2], [0, 0], "no cases"),
        ([0.1, 0.2], [1, 1], "no controls"),
        ([0.1, float("nan"), 0.3], [1, 0, 0], "NaN"),
        ([0.1, 0.2], [1, 2], "0 (control) or 1"),
        ([0.1, 0.2, 0.3], [1, 0], "same length"),
    ],
)
def test_degenerate_inputs(scores: list[float], labels: list[int], fragment: str) -> None:
    with pytest.raises(UsageError, match=re.escape(fragment)):
        auc(scores, labels)


def test_delong_needs_two_of_each() -> None:
    with pytest.raises(UsageError, match="at least 2 cases"):
        delong([0.9, 0.1, 0.2], [1, 0, 0])
    with pytest.raises(UsageError, match="level"):
        delong([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], level=95)
