"""`standard power`: the simulated model has the stated performance, the analysis is deterministic,
agrees with `standard bar` for a perfect model and with the normal theory of a DeLong interval,
and names every criterion it does not simulate."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from conformance.bar import bar, outcomes
from conformance.criteria import KINDS
from conformance.power import (
    DEFAULT_READERS,
    SCALES,
    Model,
    below_model,
    design_from_manifest,
    not_simulated,
    parse_composition,
    power,
    render_text,
    simulate,
)
from harness import stats
from harness.cases import DEFAULT_RECIPE
from harness.cases.build import planned_manifest
from harness.errors import UsageError
from harness.standard import load_standard
from mammocert.cli import main

ROOT = Path(__file__).resolve().parents[2]
DRAFT = ROOT / "standards" / "dk-mammo-ai-draft.yaml"
DEMO = ROOT / "standards" / "demo.yaml"

AUC_ONLY = """schema: mammocert/standard/v1
id: T-POWER
version: 1.0.0
status: draft
title: power test
issuer: tests
effective: "2026-01-01"
expires: "2030-01-01"
population: {prevalence_per_1000: 6.0}
seed: 7
criteria:
  - id: T-AUC
    title: discrimination
    kind: auc
    level: exam
    ci: {method: delong, level: 0.95}
    pass_if: {ci_lower_gte: 0.85}
    mandatory: true
    source: test
"""


@pytest.fixture(scope="module")
def default_set():
    return planned_manifest(DEFAULT_RECIPE)


def test_the_simulated_model_has_the_stated_performance():
    design = parse_composition("cancers=3000,normal=12000", DEFAULT_READERS)
    model = Model(auc=0.9, sensitivity=0.7, specificity=0.95, reader_correlation=0.5)
    manifest, preds = simulate(design, model, np.random.default_rng(3))
    labels = np.array([e.label for e in manifest.exams])
    scores = np.array([p.score for p in preds])
    assert stats.delong(scores, labels).auc == pytest.approx(0.9, abs=0.01)
    assert (scores[labels == 1] >= 0.5).mean() == pytest.approx(0.7, abs=0.02)
    assert (scores[labels == 0] < 0.5).mean() == pytest.approx(0.95, abs=0.01)
    # breast level: the breast with the cancer against every other breast, the same AUC
    pos = [
        p.breasts[e.lesions[0].laterality]
        for e, p in zip(manifest.exams, preds, strict=True)
        if e.label
    ]
    neg = [
        s
        for e, p in zip(manifest.exams, preds, strict=True)
        for side, s in p.breasts.items()
        if not e.label or side != e.lesions[0].laterality
    ]
    b_labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert stats.delong(np.r_[pos, neg], b_labels).auc == pytest.approx(0.9, abs=0.01)
    # readers at their stated rates, and the model's decisions correlated with theirs
    r1 = np.array([e.readers["reader1"] for e in manifest.exams])
    assert r1[labels == 1].mean() == pytest.approx(0.637, abs=0.02)
    assert 1 - r1[labels == 0].mean() == pytest.approx(0.978, abs=0.005)
    ai = scores >= 0.5
    assert np.corrcoef(ai[labels == 1], r1[labels == 1])[0, 1] > 0.1


def test_an_auc_out_of_reach_of_the_operating_point_is_refused():
    with pytest.raises(UsageError, match="AUC 0.99 is not reachable with sensitivity 0.6"):
        Model(auc=0.99, sensitivity=0.6, specificity=0.9).binormal()


def test_composition_shares_and_scaling():
    d = parse_composition("cancers=100,benign=20,normal=80,density=a:1/b:3", {})
    assert d.counts() == {"cancers": 100, "benign": 20, "normal": 80}
    cancers = [a["density"] for a, t in zip(d.attributes, d.truths, strict=True) if t == "cancer"]
    assert cancers.count("a") == 25 and cancers.count("b") == 75
    big = d.scaled(3)
    assert big.counts() == {"cancers": 300, "benign": 60, "normal": 240}
    big_cancers = [
        a["density"] for a, t in zip(big.attributes, big.truths, strict=True) if t == "cancer"
    ]
    assert big_cancers.count("a") == 75
    small = d.scaled(0.5)
    assert [
        a["density"] for a, t in zip(small.attributes, small.truths, strict=True) if t == "cancer"
    ].count("a") in (12, 13)
    for bad, says in (
        ("cancers=10", "at least one cancer and one non-cancer"),
        ("cancers=ten,normal=5", "give a whole number"),
        ("cancers=10,normal=5,density=a", "is not VALUE:SHARE"),
        ("cancers", "is not KEY=VALUE"),
    ):
        with pytest.raises(UsageError, match=says):
            parse_composition(bad, {})


def test_every_kind_is_simulated_or_says_why_not():
    for kind, spec in KINDS.items():
        why = not_simulated(kind)
        if spec.needs_live:
            assert why is not None and "needs a live model" in why
        assert why is None or why.startswith("not simulated: ")
    draft = load_standard(DRAFT)
    design = parse_composition("cancers=10,normal=30", DEFAULT_READERS)
    target = Model(0.93, 0.739, 0.979)
    report = power(
        draft,
        design,
        target,
        below_model(draft, design, target),
        simulations=2,
        seed=1,
        scales=[1.0],
    )
    text = render_text(report)
    for c in draft.criteria:  # every criterion is in the table or in the "not simulated" list
        assert c.id in text
    assert "not simulated" in text and "DK-LOC-01 (localization)" in text


def test_a_perfect_model_passes_exactly_where_bar_says_a_perfect_result_passes(
    default_set, tmp_path
):
    """`standard bar` is the deterministic case: every cancer found and no false positive passes
    a criterion of bar's kinds iff the perfect model passes it in every simulation, and a
    criterion bar cannot resolve (no row passes) is one the perfect model never passes."""
    strict = tmp_path / "strict.yaml"
    assert "pass_if: {ratio_gte: 0.90, value_per_1000_gt: 3.0}" in DEMO.read_text()
    # a CDR ratio floor of 1.5 x double reading: unreachable on the default set, even by a
    # perfect model (it finds 50 cancers against double reading's 37)
    strict.write_text(
        DEMO.read_text().replace(
            "pass_if: {ratio_gte: 0.90, value_per_1000_gt: 3.0}",
            "pass_if: {ratio_gte: 1.5, value_per_1000_gt: 3.0}",
        )
    )
    design = design_from_manifest(default_set)
    perfect = Model(1.0, 1.0, 1.0)
    for path in (DEMO, strict):
        std = load_standard(path)
        expected = outcomes(std, default_set, sum(e.label for e in default_set.exams), 0)
        report = power(std, design, perfect, perfect, simulations=3, seed=5, scales=[1.0])
        got = {c.id: c.at_size.p_pass for c in report.criteria if c.id in expected}
        assert got == {cid: 1.0 if v == "passed" else 0.0 for cid, v in expected.items()}
    unresolvable = bar(load_standard(strict), default_set, [0])[0]
    assert unresolvable.min_cancers is None and "DK-CDR-01" in unresolvable.failing_below
    assert got["DK-CDR-01"] == 0.0


def _hanley_mcneil_n(auc: float, limit: float, ratio: float, power_: float) -> float:
    """Cancers for a one-sided 2.5 % test of AUC > limit with the stated power (Hanley-McNeil
    variance with ``ratio`` non-cancers per cancer), the textbook approximation."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)

    def var(n1: float) -> float:
        n0 = ratio * n1
        return (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0)

    lo, hi = 2.0, 1e6
    while hi - lo > 0.5:
        n1 = (lo + hi) / 2
        p = norm.cdf((auc - limit) / math.sqrt(var(n1)) - norm.ppf(0.975))
        lo, hi = (n1, hi) if p < power_ else (lo, n1)
    return hi


def test_auc_power_agrees_with_the_normal_theory_of_its_interval(tmp_path):
    """Fixed seed, seconds: the smallest set found for an AUC criterion is within one step of
    the size grid of the Hanley-McNeil sample size, and a model at the limit passes rarely
    (DeLong's interval is liberal on small sets: above its nominal one-sided 2.5 % here)."""
    std_path = tmp_path / "auc.yaml"
    std_path.write_text(AUC_ONLY)
    std = load_standard(std_path)
    design = parse_composition("cancers=40,normal=120", DEFAULT_READERS)
    target = Model(0.93, 0.75, 0.95)
    below = below_model(std, design, target)
    assert below.auc == 0.85
    report = power(std, design, target, below, simulations=100, seed=11)
    row = report.criteria[0]
    theory = _hanley_mcneil_n(0.93, 0.85, 3.0, 0.8)
    step = SCALES[1] / SCALES[0]
    assert theory / step <= row.smallest_cancers <= theory * step, (row, theory)
    assert row.below.p_pass <= 0.1 < 0.5 <= row.at_size.p_pass
    assert report.whole_smallest_cancers == row.smallest_cancers
    # deterministic: the same seed gives the same report, another seed another
    small = {"simulations": 30, "scales": [1.0]}
    again = power(std, design, target, below, seed=11, **small)
    assert again == power(std, design, target, below, seed=11, **small)
    assert again != power(std, design, target, below, seed=12, **small)


def power_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mammocert.cli", "standard", "power", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_power_cli(tmp_path, capsys):
    std_path = tmp_path / "auc.yaml"
    std_path.write_text(AUC_ONLY)
    r = power_cli(
        "--standard",
        str(std_path),
        "--composition",
        "cancers=40,normal=120",
        "--simulations",
        "20",
        "--seed",
        "3",
        "--max-scale",
        "2",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["criteria"][0]["id"] == "T-AUC" and doc["target_model"]["auc"] == 0.93
    assert doc["below_model"]["auc"] == 0.85 and doc["seed"] == 3
    for bad, says in (
        ((), "give exactly one of --cases"),
        (("--composition", "cancers=5,normal=5", "--auc", "0.4"), "--auc 0.4: give a value"),
        (("--composition", "cancers=5,normal=5", "--below-auc", "0.99"), "the below model"),
        (("--composition", "cancers=5,normal=5", "--reader", "r1=0.5"), "--reader r1=0.5"),
        (("--recipe", str(DEFAULT_RECIPE), "--reader", "r1=0.5/0.9"), "a set (--cases/--recipe)"),
    ):
        assert main(["standard", "power", "--standard", str(std_path), *bad]) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err


DRAFT_COMPOSITION = (
    "cancers=100,benign=40,normal=260,density=a:0.1/b:0.4/c:0.4/d:0.1,"
    "manufacturer=HOLOGIC:0.4/GE:0.3/SIEMENS:0.3,age=55:0.4/65:0.4/75:0.2"
)


@pytest.mark.slow
def test_the_draft_figures_in_standards_readme_are_what_the_command_gives(capsys):
    """standards/README.md, "How large a set the draft needs": the command quoted there, with
    its defaults (the standard's seed, 100 simulations), gives the table printed there."""
    readme = (ROOT / "standards" / "README.md").read_text()
    assert f'--composition "{DRAFT_COMPOSITION}"' in readme
    rows = re.findall(r"^\| (DK-[A-Z0-9-]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", readme, re.M)
    assert len(rows) == 10
    args = ["standard", "power", "--standard", str(DRAFT), "--composition", DRAFT_COMPOSITION]
    assert main([*args, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    got = {c["id"]: c for c in doc["criteria"]}
    for cid, p, width, size in rows:
        c = got[cid]
        assert c["mandatory"], cid
        assert f"{c['target']['p_pass']:.2f}" == p.strip() or (
            p.startswith("0 (too few") and c["target"]["errors"] == doc["simulations"]
        ), (cid, c)
        hw = c["target"]["half_width"]
        assert width.strip() == ("–" if hw is None else f"{hw:.3f}"), (cid, c)
        shown = (
            f"{c['smallest_cancers']} ({c['smallest_exams']})"
            if c["smallest_cancers"] is not None
            else f"not reached with {max(doc['searched_cancers'])} (6400)"
        )
        assert size.strip() == shown, (cid, c)
    assert doc["whole"]["smallest_cancers"] is None  # DK-RECALL-01 is never met
