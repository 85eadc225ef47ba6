"""The programme replay reweights exactly as the programme criteria do."""

from __future__ import annotations

import numpy as np
import pytest
import synthetic_set as synthetic

from conformance.context import EvaluationContext
from conformance.criteria import evaluate
from harness.programme.outcomes import programme_outcomes
from harness.programme.protocols import ProtocolSpec, replay
from harness.programme.screening import ScreeningSet
from harness.standard import CriterionSpec
from harness.stats.reweight import reweighted_programme, screening_weights

BOOT = {"method": "bootstrap", "level": 0.95, "replicates": 200}


@pytest.mark.parametrize("prevalence", [6.0, 12.5])
def test_double_reading_matches_the_criteria_and_reweight(prevalence):
    m = synthetic.manifest()
    preds = synthetic.predictions(m)
    ss = ScreeningSet.from_manifest(m, preds)
    w = screening_weights(ss.labels, prevalence)
    dr = replay(ProtocolSpec("double_reading", "double_reading"), ss, w)
    got = programme_outcomes([dr], ss, w, np.random.default_rng(1), 200).measures["double_reading"]

    ref = reweighted_programme(ss.consensus.astype(int), ss.labels, prevalence)
    assert got["recall_rate"]["value"] == pytest.approx(ref.recall_rate.value)
    assert got["cdr_per_1000"]["value"] == pytest.approx(ref.cdr_per_1000.value)
    assert got["ppv"]["value"] == pytest.approx(ref.ppv.value)

    std = synthetic.standard(prevalence)
    ctx = EvaluationContext(std, m, preds, 0.5, {}, "self-test")
    for kind, key, scale in (
        ("recall_rate", "recall_rate", 1),
        ("cancer_detection_rate", "cdr_per_1000", 1000),
        ("ppv", "ppv", 1),
    ):
        spec = CriterionSpec(
            "T-X",
            "t",
            kind,
            True,
            "t",
            {"ratio_gte": 0.0},
            {"ci": BOOT, "comparator_reader": "consensus"},
        )
        r = evaluate(spec, ctx)
        assert r.evidence["comparator_value"] * scale == pytest.approx(got[key]["value"]), kind


def test_the_ai_alone_as_a_protocol_matches_the_criterias_ai_value():
    """A rule-out band and a safety net both at the operating point recall exactly the AI's
    flags; the replay's recall rate is then the recall_rate criterion's AI value."""
    m = synthetic.manifest()
    preds = synthetic.predictions(m)
    ss = ScreeningSet.from_manifest(m, preds)
    w = screening_weights(ss.labels, 6.0)
    spec = ProtocolSpec(
        "ai",
        "ai_rule_out",
        {"band": {"operating_point": True}, "safety_net": {"operating_point": True}},
    )
    p = replay(spec, ss, w, operating_point=0.5)
    assert p.recall.tolist() == (ss.scores >= 0.5).tolist()
    got = programme_outcomes(
        [replay(ProtocolSpec("double_reading", "double_reading"), ss, w), p],
        ss,
        w,
        np.random.default_rng(1),
        200,
    ).measures["ai"]
    std = synthetic.standard(6.0)
    ctx = EvaluationContext(std, m, preds, 0.5, {}, "self-test")
    spec_c = CriterionSpec(
        "T-X",
        "t",
        "recall_rate",
        True,
        "t",
        {"ratio_gte": 0.0},
        {"ci": BOOT, "comparator_reader": "consensus"},
    )
    assert evaluate(spec_c, ctx).value == pytest.approx(got["recall_rate"]["value"])
