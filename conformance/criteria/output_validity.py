"""Degenerate output: scores that are not finite, outside [0, 1], or carry no information."""

from __future__ import annotations

import math

import numpy as np

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness.predictions import is_valid_score
from harness.results import CriterionResult
from harness.standard import CriterionSpec

# Reasons the runner writes when a model returns a non-finite score (see harness/vendors).
NON_FINITE_MARKERS = ("non-finite", "nan", "inf")


@evaluator(
    "degenerate_output",
    family="output_validity",
    section="Output sanity",
    method="Checks that scores are valid numbers in range and not constant.",
    pass_keys=("max_invalid_fraction", "min_distinct_scores"),
)
def degenerate_output(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    scored = [
        p
        for p in t.predictions
        if p.status == "ok"
        or (
            p.status == "error"
            and p.error
            and any(m in p.error.lower() for m in NON_FINITE_MARKERS)
        )
    ]
    invalid = [p for p in scored if not is_valid_score(p.score)]
    valid_scores = np.array([p.score for p in scored if is_valid_score(p.score)], dtype=np.float64)
    distinct = int(len(np.unique(np.round(valid_scores, 6)))) if len(valid_scores) else 0
    n = len(scored)
    if n == 0:
        raise NotEvaluable(
            "the model returned no score for any reference exam (every exam was rejected or "
            "failed), so there is no score output to check"
        )
    frac = len(invalid) / n
    sd = float(valid_scores.std()) if len(valid_scores) else 0.0
    measured = {"value": frac, "ci": None, "invalid_fraction": frac, "distinct_scores": distinct}
    examples = [
        {
            "exam_id": p.exam_id,
            "score": p.score if p.score is None or math.isfinite(p.score) else str(p.score),
            "reason": p.error,
        }
        for p in invalid[:20]
    ]
    summary = (
        f"Of {n} exams the AI scored, {len(invalid)} had a score that was not a finite number in [0, 1]; "
        f"the valid scores take {distinct} distinct values (standard deviation {sd:.3g})."
    )
    return result(
        spec,
        measured,
        n,
        summary,
        {
            "invalid_examples": examples,
            "score_sd": sd,
            "method": "count of non-finite or out-of-range scores; distinct values rounded to 1e-6",
        },
    )
