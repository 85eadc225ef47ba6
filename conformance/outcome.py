"""Turning measurements into criterion outcomes (the ``pass_if`` table and wording are in
``harness.passif``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness import passif
from harness.results import CriterionResult
from harness.standard import CriterionSpec


class NotEvaluable(Exception):
    """The criterion could not be evaluated (outcome ``error``); the message says why."""


def clean(x: Any) -> Any:
    """Round floats to 12 significant digits for JSON stability; recurse into containers."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.12g}")
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalar
        return clean(x.item())
    return x


def result(
    spec: CriterionSpec,
    measured: Mapping[str, Any],
    n: int,
    summary: str,
    evidence: Mapping[str, Any] | None = None,
) -> CriterionResult:
    """Decide the outcome from ``measured`` against the spec's pass_if and build the result.

    ``measured['value']`` is the headline; ``measured['ci']`` the interval (or None).
    ``summary`` is the sentence that states what was measured; the verdict clause is appended.
    """
    try:
        passed, failed = passif.check(spec.pass_if, measured)
    except passif.MissingMeasurement as exc:
        raise NotEvaluable(str(exc)) from exc
    verdict = (
        "Meets the requirement" if passed else "Does not meet the requirement: " + "; ".join(failed)
    )
    ci = measured.get("ci")
    return CriterionResult(
        id=spec.id,
        title=spec.title,
        kind=spec.kind,
        mandatory=spec.mandatory,
        outcome="passed" if passed else "failed",
        value=clean(measured.get("value")),
        ci=tuple(clean(list(ci))) if ci is not None else None,
        threshold=dict(spec.pass_if),
        n=int(n),
        explanation=f"{summary} {verdict} ({passif.describe(spec.pass_if)}).",
        evidence=clean(
            dict(evidence or {}) | {"measured": {k: v for k, v in measured.items() if k != "ci"}}
        ),
        source=spec.source,
    )


def error_result(spec: CriterionSpec, reason: str) -> CriterionResult:
    """Could not be evaluated: counts as not passed."""
    return CriterionResult(
        id=spec.id,
        title=spec.title,
        kind=spec.kind,
        mandatory=spec.mandatory,
        outcome="error",
        value=None,
        ci=None,
        threshold=dict(spec.pass_if),
        n=0,
        explanation=f"Could not be evaluated: {reason}. This counts as not passed.",
        evidence={"error": reason},
        source=spec.source,
    )
