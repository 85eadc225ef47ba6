"""No criterion passes on no valid data: a model that fails on every exam, or a predictions file
without a record, is judged ``failed`` or "could not be evaluated" (``error``), never ``passed``.

Parametrised over the registry's ``KINDS``, so a new kind is covered as soon as it is registered;
each kind is taken as the shipped standards state it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import synthetic_set as synthetic

from conformance.context import EvaluationContext
from conformance.criteria import KINDS, evaluate
from harness.predictions import ORIGINAL, Prediction
from harness.standard import CriterionSpec, Standard, load_standard

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = (ROOT / "standards" / "dk-mammo-ai-draft.yaml", ROOT / "standards" / "demo.yaml")


def _specs() -> tuple[Standard, dict[str, CriterionSpec]]:
    standard = load_standard(STANDARDS[0])
    specs: dict[str, CriterionSpec] = {}
    for path in STANDARDS:
        for c in load_standard(path).criteria:
            specs.setdefault(c.kind, c)
    return standard, specs


class FailingModel:
    """A running model that returns an error for every exam under every condition."""

    journal = None

    def __init__(self, exam_ids: Sequence[str]) -> None:
        self.exam_ids = list(exam_ids)
        self.calls = 0

    def _failed(self, exam_id: str, condition: str) -> Prediction:
        return Prediction.failed(exam_id, condition, "error", "model crashed", None)

    def run(
        self,
        condition: str,
        transform: Callable[[Any], Any] | None,
        exam_ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> dict[str, Prediction]:
        self.calls += 1
        return {e: self._failed(e, condition) for e in (exam_ids or self.exam_ids)}

    def original(self, exam_id: str) -> Prediction:
        return self._failed(exam_id, ORIGINAL)


def _all_errors(m: Any) -> list[Prediction]:
    return [Prediction.failed(e.exam_id, ORIGINAL, "error", "model crashed", None) for e in m.exams]


def _none(m: Any) -> list[Prediction]:
    return []


@pytest.mark.parametrize("predictions", [_all_errors, _none], ids=["all-errors", "no-records"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_no_kind_passes_without_valid_data(kind, predictions):
    standard, specs = _specs()
    assert kind in specs, f"no shipped standard has a {kind!r} criterion to test it with"
    spec = specs[kind]
    m = synthetic.manifest(n_cancer=20, n_normal=40)
    live = FailingModel([e.exam_id for e in m.exams])
    ctx = EvaluationContext(standard, m, predictions(m), 0.5, {}, "self-test", live=live)
    r = evaluate(spec, ctx)
    assert r.outcome in ("failed", "error"), f"{kind}: {r.outcome}: {r.explanation}"
    if r.outcome == "error":
        assert r.explanation.startswith("Could not be evaluated") and r.n == 0
    else:  # a judgement against the model (intention-to-diagnose) rests on the exams it missed
        assert r.n > 0, f"{kind}: failed on no data: {r.explanation}"


def test_a_sweep_without_a_baseline_is_not_evaluated():
    """DK-SWEEP-DOSE passed an all-error model ("AUC falls by at most 0.000 from 0.000"); without
    a readable cancer (or normal) exam there is no baseline AUC to fall from."""
    standard, specs = _specs()
    m = synthetic.manifest(n_cancer=20, n_normal=40)
    preds = [
        p if e.label == 0 else Prediction.failed(e.exam_id, ORIGINAL, "error", "crash", None)
        for e, p in zip(m.exams, synthetic.predictions(m), strict=True)
    ]
    live = FailingModel([e.exam_id for e in m.exams])
    ctx = EvaluationContext(standard, m, preds, 0.5, {}, "self-test", live=live)
    r = evaluate(specs["robustness_sweep"], ctx)
    assert r.outcome == "error" and "no baseline AUC" in r.explanation
    assert live.calls == 0  # refused before the set is re-run at every level


def test_a_pass_on_no_read_exam_is_never_reported(monkeypatch):
    """The registry's guard: whatever a (future) kind computes, a pass with no exam read by the
    model becomes "could not be evaluated"."""
    import dataclasses

    import conformance.criteria as criteria
    from conformance.outcome import result

    def always(spec: CriterionSpec, ctx: EvaluationContext) -> Any:
        return result(spec, {"value": 0.0, "ci": None, "violations": 0}, 1, "Nothing moved.")

    kind = dataclasses.replace(KINDS["invariance"], kind="always", evaluate=always)
    monkeypatch.setattr(criteria, "KINDS", {**KINDS, "always": kind})
    spec = CriterionSpec("T-ALWAYS", "t", "always", True, "test", {"max_violations": 0}, {})
    m = synthetic.manifest(n_cancer=5, n_normal=5)
    standard, _ = _specs()
    passing = evaluate(spec, EvaluationContext(standard, m, synthetic.predictions(m), 0.5, {}, "x"))
    assert passing.outcome == "passed"
    r = evaluate(spec, EvaluationContext(standard, m, _all_errors(m), 0.5, {}, "self-test"))
    assert r.outcome == "error" and criteria.NO_VALID_READ in r.explanation
