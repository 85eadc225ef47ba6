"""Criterion kinds -> evaluator functions, and kinds -> the suite module (family) that collects them.

Completeness rests on these two tables: every kind the schema allows has exactly one evaluator and
exactly one family; ``tests/conformance`` checks that against the schema.
"""

from __future__ import annotations

from collections.abc import Callable

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, error_result
from harness.errors import UsageError
from harness.results import CriterionResult
from harness.standard import CriterionSpec

EvaluatorFn = Callable[[CriterionSpec, EvaluationContext], CriterionResult]
EVALUATORS: dict[str, EvaluatorFn] = {}

# family (conformance/test_<family>.py) -> the kinds it collects
FAMILIES: dict[str, tuple[str, ...]] = {
    "discrimination": (
        "auc",
        "sensitivity_at_specificity",
        "sensitivity_at_operating_point",
        "specificity_at_operating_point",
    ),
    "programme": ("recall_rate", "cancer_detection_rate", "ppv"),
    "subgroups": ("subgroup",),
    "localization": ("localization",),
    "output_validity": ("degenerate_output",),
    "invariance": ("invariance", "robustness_sweep"),
    "operations": (
        "determinism",
        "technical_failure_rate",
        "latency",
        "input_rejection",
        "caching",
    ),
}
FAMILY_OF: dict[str, str] = {k: fam for fam, kinds in FAMILIES.items() for k in kinds}


def evaluator(kind: str) -> Callable[[EvaluatorFn], EvaluatorFn]:
    """Register the evaluator of one criterion kind."""

    def deco(fn: EvaluatorFn) -> EvaluatorFn:
        if kind in EVALUATORS:
            raise RuntimeError(f"two evaluators for kind {kind!r}")
        EVALUATORS[kind] = fn
        return fn

    return deco


def load_evaluators() -> None:
    """Import every criteria module so their @evaluator decorators run."""
    from conformance.criteria import (  # noqa: F401
        discrimination,
        invariance,
        localization,
        operations,
        output_validity,
        programme,
        subgroups,
    )


def evaluate(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    """Evaluate one criterion; anything that prevents evaluation becomes an ``error`` outcome."""
    load_evaluators()
    fn = EVALUATORS.get(spec.kind)
    if fn is None:
        raise UsageError(
            f"criterion {spec.id}: no evaluator for kind {spec.kind!r}; this harness cannot check it"
        )
    try:
        return fn(spec, ctx)
    except NotEvaluable as exc:
        return error_result(spec, str(exc))
    except UsageError as exc:  # e.g. a statistic on a set without cancers
        return error_result(spec, str(exc))
