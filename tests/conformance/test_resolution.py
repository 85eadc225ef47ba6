"""A criterion no model could pass on the set is "not resolvable on this set", never the model's
failure (issue 35, item 18); self-test off the standard's pin says so before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import synthetic_set
import yaml
from scipy.stats import beta

from conformance import resolution
from conformance.engine import RunRequest, judge, run
from harness.predictions import Prediction
from harness.resources import DEMO_STANDARD
from harness.standard import CriterionSpec

TFR = CriterionSpec(
    "DK-TFR-01",
    "Few technical failures",
    "technical_failure_rate",
    True,
    "test",
    {"ci_upper_lte": 0.02},
    {"ci": {"method": "clopper_pearson", "level": 0.95}},
)


def _set(n: int):
    return synthetic_set.manifest(n_cancer=n // 4, n_normal=n - n // 4)


def _failing(preds: list[Prediction], k: int) -> list[Prediction]:
    """The first ``k`` exams end in a technical failure."""
    return [
        dataclasses.replace(p, status="error", score=None, error="boom") if i < k else p
        for i, p in enumerate(preds)
    ]


def _cp_upper(k: int, n: int) -> float:
    return float(beta.ppf(0.975, k + 1, n - k))


def test_zero_failures_on_40_exams_is_not_resolvable_with_the_set_size_it_needs():
    m = _set(40)
    (res,) = judge(synthetic_set.standard(), m, synthetic_set.predictions(m), 0.5, [TFR])
    # the reproduction: 0 failures of 40 gives an upper bound of 8.8 % > 2 %; it used to "fail"
    assert _cp_upper(0, 40) == pytest.approx(0.088, abs=0.001)
    assert res.outcome == "error" and res.value == 0.0
    assert res.explanation.startswith("Not resolvable on this set")
    assert "Does not meet" not in res.explanation and "counts as not passed" in res.explanation
    needs = min(n for n in range(40, 1000) if _cp_upper(0, n) <= 0.02)
    assert needs == 183
    assert f"needs at least {needs} exams" in res.explanation
    assert res.evidence["not_resolvable"]["needs_exams"] == needs


def test_a_resolvable_criterion_still_passes_or_fails_on_the_models_merit():
    m = _set(400)
    preds = synthetic_set.predictions(m)
    std = synthetic_set.standard()
    (ok,) = judge(std, m, preds, 0.5, [TFR])
    assert ok.outcome == "passed"
    (bad,) = judge(std, m, _failing(preds, 12), 0.5, [TFR])
    assert bad.outcome == "failed" and "Does not meet the requirement" in bad.explanation
    assert "not_resolvable" not in bad.evidence
    # on the small set, a model with failures is "not resolvable" too, with its figure kept
    small = _set(40)
    (few,) = judge(std, small, _failing(synthetic_set.predictions(small), 3), 0.5, [TFR])
    assert few.outcome == "error" and few.value == pytest.approx(3 / 40)
    assert "Measured here: 0.075" in few.explanation


def test_a_perfect_result_is_bars_idealised_model_and_breast_level_is_not_judged():
    m = _set(40)
    best = resolution.perfect(synthetic_set.standard(), m, TFR)
    assert best.outcome == "failed" and best.evidence["measured"]["value"] == 0.0
    breast_auc = CriterionSpec(
        "A", "AUC", "auc", True, "t", {"value_gte": 0.99}, {"level": "breast"}
    )
    assert resolution.resolution(synthetic_set.standard(), m, breast_auc) is None
    assert len(resolution.grown(m, 101).exams) == 101
    assert len({e.exam_id for e in resolution.grown(m, 101).exams}) == 101


def test_self_test_off_the_pin_says_so_before_any_work(tmp_path):
    cases = synthetic_set.write_set(tmp_path / "cases", n_cancer=10, n_normal=30)
    doc = yaml.safe_load(Path(DEMO_STANDARD).read_text())
    doc["reference_set"] = {"id": "pinned-set", "digest": "sha256:" + "1" * 64}
    doc["criteria"] = [c for c in doc["criteria"] if c["kind"] == "technical_failure_rate"]
    std = tmp_path / "standard.yaml"
    std.write_text(yaml.safe_dump(doc, sort_keys=False))
    from harness.cases.manifest import load_manifest
    from harness.predictions import write_predictions

    preds = tmp_path / "p.jsonl"
    write_predictions(preds, synthetic_set.predictions(load_manifest(cases)))
    heard: list[str] = []
    results = run(
        RunRequest(standard=std, cases=cases, predictions=preds, operating_point=0.5),
        on_result=lambda r: heard.append(f"result {r.id}"),
        on_note=heard.append,
    )
    assert heard[0].startswith(f"The thresholds of {doc['id']} {doc['version']} were set for")
    assert "pinned-set" in heard[0] and "40 exams" in heard[0]
    assert heard[1] == f"result {doc['criteria'][0]['id']}"
    assert results.summary["set_note"] == heard[0]
    assert results.criteria[0].outcome == "error"
