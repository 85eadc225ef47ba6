"""Turning measurements into criterion outcomes (the ``pass_if`` table and wording are in
``harness.passif``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness import passif
from harness.results import CriterionResult
from harness.standard import PRODUCT_INPUTS, CriterionSpec


class NotEvaluable(Exception):
    """The criterion could not be evaluated (outcome ``error``); the message says why."""


class NotApplicable(NotEvaluable):
    """The criterion does not apply to this vendor's interface (the harness, not the vendor's
    product, would be judged). Outcome ``error`` unless the standard scopes the criterion with
    ``applies_to`` (then :func:`out_of_scope_result`): a criterion the standard requires of every
    product is not met by a product it cannot be checked on, so it never passes silently."""

    def __init__(self, interface: str, why: str) -> None:
        super().__init__(f"does not apply to the {interface} interface: {why}")
        self.interface = interface
        self.why = why


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


def error_result(
    spec: CriterionSpec, reason: str, not_applicable: str | None = None
) -> CriterionResult:
    """Could not be evaluated: counts as not passed. ``not_applicable`` names the interface the
    criterion does not apply to (recorded in the evidence, said in the explanation)."""
    explanation = (
        f"Not applicable to the {not_applicable} interface: {reason}. A criterion that cannot "
        "be checked on this interface is not met: this counts as not passed (a standard that "
        "means it for other products scopes it with applies_to)."
        if not_applicable
        else f"Could not be evaluated: {reason}. This counts as not passed."
    )
    evidence: dict[str, Any] = {"error": reason}
    if not_applicable:
        evidence["not_applicable"] = not_applicable
    return _unmeasured(spec, "error", explanation, evidence)


def out_of_scope_result(spec: CriterionSpec, inputs: str) -> CriterionResult:
    """The standard scopes the criterion (``applies_to``) to products that receive other inputs:
    outcome ``not_applicable``, which does not count towards the verdict."""
    assert spec.applies_to is not None
    scope = " or ".join(PRODUCT_INPUTS[i] for i in spec.applies_to)
    explanation = (
        f"Not applicable: the standard applies this criterion to products that receive {scope}, "
        f"and this product receives {PRODUCT_INPUTS[inputs]}; it does not count towards the "
        "verdict."
    )
    evidence = {"applies_to": {"inputs": list(spec.applies_to)}, "product_inputs": inputs}
    return _unmeasured(spec, "not_applicable", explanation, evidence)


def _unmeasured(
    spec: CriterionSpec, outcome: str, explanation: str, evidence: dict[str, Any]
) -> CriterionResult:
    return CriterionResult(
        id=spec.id,
        title=spec.title,
        kind=spec.kind,
        mandatory=spec.mandatory,
        outcome=outcome,
        value=None,
        ci=None,
        threshold=dict(spec.pass_if),
        n=0,
        explanation=explanation,
        evidence=evidence,
        source=spec.source,
    )


def not_resolvable_result(
    res: CriterionResult,
    perfect_failed: Sequence[str],
    n_exams: int,
    needs_exams: int | None,
    searched_up_to: int,
) -> CriterionResult:
    """A failed result that even a perfect model would get on this set: outcome ``error`` (not
    passed), worded as a limit of the set, with the set size a perfect result would need.

    Built from counts and the measured figures only (the vendor's copy keeps it whole)."""
    short = f": with it, {'; '.join(perfect_failed)}" if perfect_failed else ""
    need = (
        f"it needs at least {needs_exams:,} exams with this set's mix of cancers and non-cancers"
        if needs_exams is not None
        else f"not even {searched_up_to:,} exams with this set's mix would be enough"
    )
    measured = ""
    if isinstance(res.value, int | float) and not isinstance(res.value, bool):
        measured = f" Measured here: {res.value:.4g}"
        if res.ci is not None:
            measured += f" ({res.ci[0]:.4g}–{res.ci[1]:.4g})"
        measured += f" on {res.n} case(s)."
    ev = dict(res.evidence) if isinstance(res.evidence, Mapping) else {}
    ev["not_resolvable"] = {
        "n_exams": n_exams,
        "needs_exams": needs_exams,
        "searched_up_to": searched_up_to,
        "perfect_result_fails": list(perfect_failed),
    }
    return dataclasses.replace(
        res,
        outcome="error",
        explanation=(
            f"Not resolvable on this set: even a perfect result on its {n_exams:,} exams would not "
            f"meet the requirement ({passif.describe(res.threshold)}){short}; {need}.{measured} "
            "This counts as not passed; it is a limit of the set, not a finding about the model."
        ),
        evidence=ev,
    )
