"""triage_safety and workload_reduction evaluated on a fake context, checked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import synthetic_set as synthetic

from conformance.context import EvaluationContext
from conformance.criteria import KINDS, evaluate
from harness.predictions import Prediction
from harness.standard import CriterionSpec, load_standard
from harness.stats.proportions import clopper_pearson
from harness.stats.reweight import screening_weights

ROOT = Path(__file__).resolve().parents[2]


def ctx(preds, m, prevalence=6.0) -> EvaluationContext:
    std = synthetic.standard(prevalence)
    return EvaluationContext(std, m, list(preds), 0.5, {}, "self-test")


def spec(kind, pass_if, **params) -> CriterionSpec:
    return CriterionSpec(
        f"T-{kind.upper().replace('_', '-')}", kind, kind, True, "t", pass_if, params
    )


def scored(m, scores):
    return [
        Prediction(e.exam_id, "original", "ok", float(s), {}, (), 0.1, None)
        for e, s in zip(m.exams, scores, strict=True)
    ]


def test_triage_safety_counts_cancers_in_the_smallest_band_removing_the_reads():
    m = synthetic.manifest(n_cancer=40, n_normal=160)
    labels = np.array([e.label for e in m.exams])
    # normals score 0.00..0.159 by rank, cancers 0.005 + 0.01 k: 3 cancers among the lowest normals
    scores = np.where(labels == 0, np.cumsum(labels == 0) / 1000.0, 0.0)
    cancer_scores = np.r_[0.0105, 0.0305, 0.0505, np.linspace(0.5, 0.9, 37)]
    scores[labels == 1] = cancer_scores
    c = ctx(scored(m, scores), m)
    s = spec(
        "triage_safety",
        {"value_lte": 0.1, "ci_upper_lte": 0.2},
        protocol="ai_rule_out",
        band={"min_reads_removed": 0.3},
        ci={"method": "clopper_pearson", "level": 0.95},
    )
    r = evaluate(s, c)
    # by hand: rule-out removes both reads, so the band holds >= 30 % of the population;
    # w = population weights; the threshold is the lowest score with >= 30 % below
    w = screening_weights(labels, 6.0)
    order = np.argsort(scores)
    cum = np.cumsum(w[order]) / w.sum()
    t = scores[order][np.searchsorted(cum, 0.3 - 1e-12) + 1]
    k = int(((scores < t) & (labels == 1)).sum())
    assert r.evidence["threshold"] == pytest.approx(t)
    assert r.evidence["cancers_in_band"] == k
    assert r.value == pytest.approx(k / 40)
    assert r.ci[1] == pytest.approx(clopper_pearson(k, 40, 0.95)[1])
    assert r.evidence["reads_removed"] >= 0.3
    assert r.outcome == ("passed" if k / 40 <= 0.1 and r.ci[1] <= 0.2 else "failed")
    assert r.n == 40


def test_workload_reduction_at_the_largest_band_within_a_cancer_share():
    m = synthetic.manifest(n_cancer=50, n_normal=150)
    labels = np.array([e.label for e in m.exams])
    scores = np.where(labels == 0, np.linspace(0.0, 0.6, 200), 0.0)
    scores[labels == 1] = np.r_[0.05, np.linspace(0.55, 0.95, 49)]  # one low cancer
    c = ctx(scored(m, scores), m)
    s = spec(
        "workload_reduction",
        {"value_gte": 0.3},
        protocol="ai_triage",
        band={"max_cancer_share": 0.02},
    )
    r = evaluate(s, c)
    # 2 % of 50 = 1 cancer allowed: the band stops just below the second-lowest cancer (0.55)
    assert r.evidence["cancers_in_band"] == 1
    assert r.evidence["threshold"] == pytest.approx(0.55)
    w = screening_weights(labels, 6.0)
    in_band = scores < 0.55
    assert r.value == pytest.approx(w[in_band].sum() / w.sum() / 2)  # triage: one read of two
    assert r.outcome == ("passed" if r.value >= 0.3 else "failed")


def test_an_unreadable_cancer_counts_in_the_band():
    m = synthetic.manifest(n_cancer=10, n_normal=40)
    preds = synthetic.predictions(m, separation=4.0)
    preds[0] = Prediction.failed(m.exams[0].exam_id, "original", "error", "boom", None)
    s = spec(
        "triage_safety",
        {"value_lte": 0.5},
        protocol="ai_triage",
        band={"score_below": 0.0},
        ci={"method": "clopper_pearson", "level": 0.95},
    )
    r = evaluate(s, ctx(preds, m))
    assert r.evidence["cancers_in_band"] == 1  # the unreadable cancer (worst case), nothing else


def test_the_draft_standard_carries_both_kinds_and_they_are_registered():
    std = load_standard(ROOT / "standards" / "dk-mammo-ai-draft.yaml")
    kinds = {c.id: c.kind for c in std.criteria}
    assert kinds["DK-TRIAGE-01"] == "triage_safety"
    assert kinds["DK-WORKLOAD-01"] == "workload_reduction"
    assert KINDS["triage_safety"].family == KINDS["workload_reduction"].family == "programme"
    m = synthetic.manifest()
    c = ctx(synthetic.predictions(m), m)
    for crit in std.criteria:
        if crit.kind in ("triage_safety", "workload_reduction"):
            assert evaluate(crit, c).outcome in ("passed", "failed")
