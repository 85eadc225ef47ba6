"""Turning measurements into criterion outcomes: pass_if grammar, result construction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.results import CriterionResult
from harness.standard import CriterionSpec

# pass_if key -> (measured quantity, comparison). Every key the schema allows is here.
PASS_KEYS: dict[str, tuple[str, str]] = {
    "ci_lower_gte": ("ci_lower", ">="),
    "ci_upper_lte": ("ci_upper", "<="),
    "value_gte": ("value", ">="),
    "value_lte": ("value", "<="),
    "noninferior": ("noninferior", "is"),
    "ratio_ci_upper_lte": ("ratio_ci_upper", "<="),
    "ratio_ci_lower_gte": ("ratio_ci_lower", ">="),
    "ratio_lte": ("ratio", "<="),
    "ratio_gte": ("ratio", ">="),
    "value_per_1000_gt": ("value_per_1000", ">"),
    "max_gap": ("significant_gap", "<="),
    "localised_fraction_gte": ("localised_fraction", ">="),
    "max_invalid_fraction": ("invalid_fraction", "<="),
    "min_distinct_scores": ("distinct_scores", ">="),
    "max_violations": ("violations", "<="),
    "max_auc_drop": ("auc_drop", "<="),
    "max_sensitivity_drop": ("sensitivity_drop", "<="),
    "max_abs_diff_lte": ("max_abs_diff", "<="),
    "p50_lte_s": ("p50_s", "<="),
    "p95_lte_s": ("p95_s", "<="),
    "min_rejected_fraction": ("rejected_fraction", ">="),
}

SYMBOL = {">=": "≥", "<=": "≤", ">": ">", "is": "is"}


class NotEvaluable(Exception):
    """The criterion could not be evaluated (outcome ``error``); the message says why."""


def describe_threshold(pass_if: Mapping[str, Any]) -> str:
    """'ci_lower ≥ 0.85 and value ≤ 0.05' — the pass condition in words."""
    parts = []
    for key, target in pass_if.items():
        if key == "noninferior":
            parts.append("non-inferior to the reader")
            continue
        qty, op = PASS_KEYS[key]
        parts.append(f"{qty.replace('_', ' ')} {SYMBOL[op]} {target}")
    return " and ".join(parts)


def check_pass(pass_if: Mapping[str, Any], measured: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """All conditions must hold; returns (passed, the conditions that failed, in words)."""
    failed = []
    for key, target in pass_if.items():
        qty, op = PASS_KEYS[key]
        got = measured.get(qty)
        if got is None or (isinstance(got, float) and math.isnan(got)):
            raise NotEvaluable(f"the measurement {qty!r} needed by pass_if.{key} is not available")
        ok = {
            ">=": lambda a, b: a >= b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            "is": lambda a, b: bool(a) is bool(b),
        }[op](got, target)
        if not ok and key == "noninferior":
            failed.append("non-inferiority to the reader is not shown")
        elif not ok:
            failed.append(f"{qty.replace('_', ' ')} = {_fmt(got)} is not {SYMBOL[op]} {target}")
    return not failed, failed


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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
    passed, failed = check_pass(spec.pass_if, measured)
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
        explanation=f"{summary} {verdict} ({describe_threshold(spec.pass_if)}).",
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
