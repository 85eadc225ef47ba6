"""A criterion kind added the way a new one is: this module alone (plus, for real, its entry in
the standard's schema). ``test_registry.py`` loads it and checks every derived table has it."""

from __future__ import annotations

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness.results import CriterionResult
from harness.standard import CriterionSpec

KIND = "example_warm_restart"


@evaluator(
    KIND,
    family="operations",
    section="Example: behaviour after a restart",
    method="The same exams scored before and after the model restarts; the largest difference.",
    pass_keys=("max_abs_diff_lte",),
    needs_live=True,
)
def example_warm_restart(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    diff = spec.params.get("diff")
    if diff is None:
        raise NotEvaluable("no restart was observed")
    measured = {"value": diff, "ci": None, "max_abs_diff": diff}
    return result(spec, measured, 1, f"The scores moved by {diff} after a restart.")
