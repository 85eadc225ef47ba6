"""decision_stability and insertion_response on a fake running model with known flips and
responses: the counts, the exact interval, the seeded sample, the evidence and the shrunk case."""

from __future__ import annotations

import pytest
import synthetic_set as synthetic

from conformance.context import EvaluationContext
from conformance.criteria import evaluate
from harness import stats
from harness.perturb.lesion import LesionParams
from harness.perturb.relation import condition_id
from harness.predictions import ORIGINAL, ExamOutput, Prediction
from harness.standard import CriterionSpec

OP = 0.5


def spec(kind: str, pass_if: dict, **params) -> CriterionSpec:
    return CriterionSpec(
        f"T-{kind.upper().replace('_', '-')}", kind, kind, True, "test", pass_if, params
    )


def fragile(exam_id: str) -> bool:
    return int(exam_id[1:]) % 5 == 0


def base_score(exam_id: str) -> float:
    """Fragile exams sit just above the operating point; the rest far from it."""
    if fragile(exam_id):
        return 0.51
    return 0.9 if int(exam_id[1:]) % 2 else 0.1


def _out(score: float, breasts: dict[str, float] | None = None) -> ExamOutput:
    return ExamOutput(score=score, breasts=breasts or {"L": score, "R": min(score, 0.05)})


class FakeLive:
    """What an evaluator uses of conformance.live.LiveModel; scores from the condition alone.

    noise: a fragile exam drops to 0.49 at any dose below 1 (a flip), the others move by
    0.03 * (1 - dose) / 0.5 (drift, no flip); lesions: the breast that received one rises by 0.2
    when the contrast is at least 0.3, else nothing moves; ``broken`` exams fail under any
    perturbation."""

    journal = None

    def __init__(self, broken: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.broken = broken

    def original(self, exam_id: str) -> Prediction:
        return Prediction.ok(exam_id, ORIGINAL, _out(base_score(exam_id)), 0.1)

    def _after(self, exam_id: str, cond: str) -> Prediction:
        if exam_id in self.broken:
            return Prediction.failed(exam_id, cond, "error", "boom", 0.1)
        relation, _, body = cond.partition(":")
        params = dict(kv.split("=") for kv in body.split(",")) if body else {}
        before = self.original(exam_id)
        if relation == "noise":
            dose = float(params["dose"])
            if fragile(exam_id) and dose < 1.0:
                return Prediction.ok(exam_id, cond, _out(0.49), 0.1)
            shift = 0.03 * (1.0 - dose) / 0.5
            return Prediction.ok(exam_id, cond, _out(before.score + shift), 0.1)
        if relation == "lesion_insertion":
            breasts = dict(before.breasts)
            if float(params["contrast"]) >= 0.3:
                breasts[params["laterality"]] += 0.2
            return Prediction.ok(exam_id, cond, _out(max(breasts.values()), breasts), 0.1)
        raise AssertionError(cond)

    def run(self, cond, transform, exam_ids=None, progress=False):
        self.calls.append((cond, tuple(exam_ids)))
        return {e: self._after(e, cond) for e in exam_ids}


def _ctx(live: FakeLive):
    m = synthetic.manifest()
    preds = [live.original(e.exam_id) for e in m.exams]
    return EvaluationContext(synthetic.standard(), m, preds, OP, {}, "self-test", live=live), m


NOISE = dict(
    relation="noise",
    levels=[0.5, 0.75],
    exams=60,
    ci={"method": "clopper_pearson", "level": 0.95},
    hypothesis_examples=10,
)


def test_flips_are_counted_at_the_operating_point_with_the_exact_interval():
    live = FakeLive()
    c, m = _ctx(live)
    r = evaluate(spec("decision_stability", {"max_flip_fraction": 0.05}, **NOISE), c)
    ev = r.evidence
    sampled = [p["exam_id"] for p in ev["pairs"]]
    assert len(sampled) == len(set(sampled)) == r.n == 60
    assert set(sampled) <= {e.exam_id for e in m.exams}
    expected = sorted(e for e in sampled if fragile(e))
    assert 0 < len(expected) < 60
    assert [f["exam_id"] for f in ev["flipped"]] == expected
    for f in ev["flipped"]:
        assert (f["score_before"], f["score_after"]) == (0.51, 0.49)
        assert f["recalled_before"] is True and f["recalled_after"] is False
    k, n = len(expected), 60
    lo, hi = stats.clopper_pearson(k, n, 0.95)
    assert r.value == pytest.approx(k / n) and r.ci == pytest.approx((lo, hi))
    assert ev["measured"]["flip_ci_upper"] == pytest.approx(hi) and ev["measured"]["flips"] == k
    assert r.outcome == ("passed" if k / n <= 0.05 else "failed")
    # the levels are spread evenly over the sample, one per exam, each with its own noise seed
    assert sorted(b["n"] for b in ev["by_level"]) == [30, 30]
    assert sum(b["flips"] for b in ev["by_level"]) == k
    assert len({p["parameters"]["seed"] for p in ev["pairs"]}) == 60
    # drift is reported, not judged: 0.03 at half dose on the exams far from the threshold
    assert abs(ev["score_drift"]["max_abs_score_change"] - 0.03) < 1e-9
    # one flip shrunk by Hypothesis to the mildest perturbation that still flips it
    ce = ev["counterexample"]
    assert ce["shrunk"] is True and ce["exam_id"] in expected
    assert ce["parameters"] == {"dose": 0.99, "seed": 0}
    assert ce["condition"] == "noise:dose=0.99,seed=0" and ce["exam_id"] in r.explanation


def test_the_sample_is_a_pure_function_of_the_standard_seed_and_the_criterion_id():
    s = spec("decision_stability", {"max_flip_fraction": 0.05}, **NOISE)
    a = evaluate(s, _ctx(FakeLive())[0]).evidence["pairs"]
    b = evaluate(s, _ctx(FakeLive())[0]).evidence["pairs"]
    assert a == b
    other = type(s)("T-OTHER", s.title, s.kind, s.mandatory, s.source, s.pass_if, s.params)
    c = evaluate(other, _ctx(FakeLive())[0]).evidence["pairs"]
    assert [p["exam_id"] for p in c] != [p["exam_id"] for p in a]


def test_the_limits_decide_and_a_lost_read_counts_as_a_flip():
    live = FakeLive()
    c, _ = _ctx(live)
    loose = evaluate(
        spec("decision_stability", {"max_flip_fraction": 0.5, "flip_ci_upper_lte": 0.6}, **NOISE),
        c,
    )
    assert loose.outcome == "passed"
    strict = evaluate(spec("decision_stability", {"flip_ci_upper_lte": 0.05}, **NOISE), c)
    assert strict.outcome == "failed" and "flip ci upper" in strict.explanation
    sampled = [p["exam_id"] for p in loose.evidence["pairs"]]
    stable = next(e for e in sampled if not fragile(e))
    broken = FakeLive(broken=frozenset({stable}))
    r = evaluate(spec("decision_stability", {"max_flip_fraction": 0.5}, **NOISE), _ctx(broken)[0])
    assert r.evidence["measured"]["flips"] == loose.evidence["measured"]["flips"] + 1
    lost = next(f for f in r.evidence["flipped"] if f["exam_id"] == stable)
    assert lost["score_after"] is None and "decision is lost" in lost["detail"]


def test_a_stable_model_passes_with_no_counterexample():
    class Stable(FakeLive):
        def _after(self, exam_id, cond):
            return Prediction.ok(exam_id, cond, _out(base_score(exam_id)), 0.1)

    r = evaluate(spec("decision_stability", {"max_flip_fraction": 0.0}, **NOISE), _ctx(Stable())[0])
    assert r.outcome == "passed" and r.value == 0.0
    assert r.evidence["counterexample"] is None and r.evidence["examples"] == 0
    assert r.ci == pytest.approx(stats.clopper_pearson(0, 60, 0.95))


LESION = dict(
    lesion={"kinds": ["mass"], "size_mm": [10, 20], "contrast": [0.24, 0.35]},
    exams=40,
    ci={"method": "wilson", "level": 0.95},
    hypothesis_examples=10,
)


def test_insertion_response_counts_rises_on_normal_exams_with_a_wilson_bound():
    live = FakeLive()
    c, m = _ctx(live)
    r = evaluate(spec("insertion_response", {"min_response_fraction": 0.95}, **LESION), c)
    ev = r.evidence
    labels = {e.exam_id: e.label for e in m.exams}
    pairs = ev["pairs"]
    assert len(pairs) == r.n == 40 and all(labels[p["exam_id"]] == 0 for p in pairs)
    for p in pairs:
        q = p["parameters"]
        assert q["kind"] == "mass" and 10 <= q["size_mm"] <= 20 and 0.24 <= q["contrast"] <= 0.35
        assert (q["size_mm"] * 2).is_integer() and round(q["contrast"] * 100, 9).is_integer()
    k = sum(p["parameters"]["contrast"] >= 0.3 for p in pairs)
    assert 0 < k < 40
    lo, hi = stats.wilson(k, 40, 0.95)
    assert r.value == pytest.approx(k / 40) and r.ci == pytest.approx((lo, hi))
    assert ev["measured"]["response_ci_lower"] == pytest.approx(lo)
    assert r.outcome == "failed"
    assert {i["exam_id"] for i in ev["ignored"]} == {
        p["exam_id"] for p in pairs if p["parameters"]["contrast"] < 0.3
    }
    # shrunk to the smallest, faintest lesion above the floor that the model ignores
    ce = ev["counterexample"]
    assert ce["shrunk"] is True
    assert {k: ce["parameters"][k] for k in ("kind", "size_mm", "contrast", "laterality")} == {
        "kind": "mass",
        "size_mm": 10.0,
        "contrast": 0.24,
        "laterality": "L",
    }
    assert ce["condition"] == condition_id(LesionParams(**ce["parameters"]))


def test_a_level_outside_the_relation_is_an_error_not_a_crash():
    bad = dict(NOISE, levels=[0.5, 2.0])
    r = evaluate(
        spec("decision_stability", {"max_flip_fraction": 0.05}, **bad), _ctx(FakeLive())[0]
    )
    assert r.outcome == "error" and "2 is not a noise level" in r.explanation
