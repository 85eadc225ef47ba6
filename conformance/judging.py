"""Judging criteria from predictions alone, with no model: the raw evaluators over a context.

``standard bar`` judges idealised models with it, ``conformance.resolution`` a perfect one, and
the engine's ``judge`` (``verify --cases``) adds the resolution check on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from conformance.context import EvaluationContext, HypothesisProfile
from conformance.criteria import evaluate
from harness.cases.manifest import Manifest
from harness.predictions import Prediction
from harness.results import CriterionResult
from harness.standard import CriterionSpec, Standard


def context(
    standard: Standard,
    manifest: Manifest,
    predictions: Iterable[Prediction],
    operating_point: float,
    vendor: Mapping[str, Any] | None = None,
    mode: str = "self-test",
    live: Any = None,
) -> EvaluationContext:
    """The evaluation context of a judgement (``live``: the model, or its recorded answers)."""
    return EvaluationContext(
        standard=standard,
        manifest=manifest,
        predictions=list(predictions),
        operating_point=operating_point,
        vendor=dict(vendor or {}),
        mode=mode,
        live=live,
        hypothesis=HypothesisProfile.of(standard, mode),
    )


def judge(
    standard: Standard,
    manifest: Manifest,
    predictions: Iterable[Prediction],
    operating_point: float,
    criteria: Iterable[CriterionSpec],
    vendor: Mapping[str, Any] | None = None,
    mode: str = "self-test",
) -> list[CriterionResult]:
    """Each criterion's result from these predictions, exactly as its evaluator gives it."""
    ctx = context(standard, manifest, predictions, operating_point, vendor, mode)
    return [evaluate(spec, ctx) for spec in criteria]


__all__ = ["context", "judge"]
