"""A criterion's ``pass_if``: the one table of its keys, the words for it, and the check.

Every ``pass_if`` key the standard's schema allows is in ``PASS_KEYS``: the measured quantity it
bounds and the comparison. ``describe`` is the wording of ``results.json`` (each criterion's
``explanation`` ends with it), of the terminal verdict table and of the report, so the three never
disagree. It lives in ``harness`` because both ``conformance`` (which checks) and ``reports``
(which only reads ``results.json``) use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

NO_CONDITION = "—"  # describe() of an empty or malformed pass_if


@dataclass(frozen=True)
class PassKey:
    """One ``pass_if`` key: ``measured[quantity] <op> target`` must hold."""

    quantity: str  # the key of the evaluator's ``measured`` mapping
    op: str  # ">=", "<=", ">" or "is"
    plot: str | None = None  # the limit's name on the report's plot ("reference", "p50", ...)
    text: str | None = None  # fixed wording, instead of "<quantity> <op> <target>"
    failed_text: str | None = None  # fixed wording when it does not hold


# pass_if key -> what it bounds. Every key the schema allows is here (tests check it).
PASS_KEYS: Mapping[str, PassKey] = {
    "ci_lower_gte": PassKey("ci_lower", ">=", plot="reference"),
    "ci_upper_lte": PassKey("ci_upper", "<="),
    "value_gte": PassKey("value", ">=", plot="reference"),
    "value_lte": PassKey("value", "<=", plot="reference"),
    "noninferior": PassKey(
        "noninferior",
        "is",
        text="non-inferior to the reader",
        failed_text="non-inferiority to the reader is not shown",
    ),
    "ratio_ci_upper_lte": PassKey("ratio_ci_upper", "<="),
    "ratio_ci_lower_gte": PassKey("ratio_ci_lower", ">="),
    "ratio_lte": PassKey("ratio", "<="),
    "ratio_gte": PassKey("ratio", ">="),
    "value_per_1000_gt": PassKey("value_per_1000", ">"),
    "max_gap": PassKey("significant_gap", "<="),
    "localised_fraction_gte": PassKey("localised_fraction", ">="),
    "max_invalid_fraction": PassKey("invalid_fraction", "<="),
    "min_distinct_scores": PassKey("distinct_scores", ">="),
    "max_violations": PassKey("violations", "<="),
    "max_auc_drop": PassKey("auc_drop", "<="),
    "max_sensitivity_drop": PassKey("sensitivity_drop", "<="),
    "max_abs_diff_lte": PassKey("max_abs_diff", "<="),
    "p50_lte_s": PassKey("p50_s", "<=", plot="p50"),
    "p95_lte_s": PassKey("p95_s", "<=", plot="p95"),
    "min_rejected_fraction": PassKey("rejected_fraction", ">="),
    "max_flip_fraction": PassKey("flip_fraction", "<="),
    "flip_ci_upper_lte": PassKey("flip_ci_upper", "<="),
    "min_response_fraction": PassKey("response_fraction", ">="),
    "response_ci_lower_gte": PassKey("response_ci_lower", ">="),
}

SYMBOL = {">=": "≥", "<=": "≤", ">": ">", "is": "is"}
_HOLDS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "is": lambda a, b: bool(a) is bool(b),
}


class MissingMeasurement(Exception):
    """A measurement a ``pass_if`` key needs is absent or NaN; the message names both."""


def describe_clause(key: str, target: Any) -> str:
    """One ``pass_if`` entry in words: "ci lower ≥ 0.85"; an unknown key as ``key: value``."""
    pk = PASS_KEYS.get(key)
    if pk is None:
        return f"{key}: {_value(target)}"
    if pk.text is not None:
        return pk.text
    return f"{_words(pk.quantity)} {SYMBOL[pk.op]} {target}"


def describe(pass_if: Mapping[str, Any] | None) -> str:
    """The whole ``pass_if`` in words ("ci lower ≥ 0.85 and value ≥ 0.9"); all must hold."""
    if not isinstance(pass_if, Mapping) or not pass_if:
        return NO_CONDITION
    return " and ".join(describe_clause(k, v) for k, v in pass_if.items())


def check(pass_if: Mapping[str, Any], measured: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """All conditions must hold; returns (passed, the conditions that failed, in words).

    Raises ``MissingMeasurement`` when ``measured`` lacks a quantity (or it is NaN), and
    ``ValueError`` for a key not in ``PASS_KEYS`` (the schema admits none)."""
    failed = []
    for key, target in pass_if.items():
        pk = PASS_KEYS.get(key)
        if pk is None:
            raise ValueError(f"pass_if.{key} is not a known condition")
        got = measured.get(pk.quantity)
        if got is None or (isinstance(got, float) and math.isnan(got)):
            raise MissingMeasurement(
                f"the measurement {pk.quantity!r} needed by pass_if.{key} is not available"
            )
        if _HOLDS[pk.op](got, target):
            continue
        failed.append(
            pk.failed_text
            if pk.failed_text is not None
            else f"{_words(pk.quantity)} = {_fmt(got)} is not {SYMBOL[pk.op]} {target}"
        )
    return not failed, failed


# Quantities a row shows as its headline ``value`` and ``ci``; every other bounded quantity is
# shown by name, so a row's measured figure is always in the unit of its threshold.
HEADLINE = frozenset({"value", "ci_lower", "ci_upper"})


def bounded(pass_if: Mapping[str, Any] | None) -> tuple[bool, tuple[str, ...]]:
    """What a row must show to be read against its ``pass_if``: whether a key bounds the headline
    value or its CI, and the other quantities it bounds, in ``pass_if`` order, each once.
    ``{max_violations: 0}`` -> ``(False, ("violations",))``; ``{ci_lower_gte: 0.85}`` ->
    ``(True, ())``; unknown keys are left out."""
    if not isinstance(pass_if, Mapping):
        return False, ()
    quantities = [PASS_KEYS[k].quantity for k in pass_if if k in PASS_KEYS]
    others = tuple(dict.fromkeys(q for q in quantities if q not in HEADLINE))
    return any(q in HEADLINE for q in quantities), others


def row_figures(
    pass_if: Mapping[str, Any] | None,
    value: Any,
    measured: Mapping[str, Any] | None,
    fmt: Callable[[Any], str],
) -> tuple[str, bool]:
    """A row's measured cell, in the units of its threshold, and whether the row's CI (the
    headline value's) belongs beside it: the value when ``pass_if`` bounds it (or bounds nothing
    known), then each other bounded quantity by name, from ``measured`` (a result's
    ``evidence.measured``). ``{max_violations: 0}`` shows "violations 1", not the score change.
    Without the measurements (an error outcome) it is the value, as recorded."""
    head, others = bounded(pass_if)
    measured = measured if isinstance(measured, Mapping) else {}
    if any(q not in measured for q in others):
        return fmt(value), True  # not evaluated, or recorded without its measurements
    parts = [fmt(value)] if head or not others else []
    for q in others:
        v = measured.get(q)
        parts.append(f"{_words(q)} {('yes' if v else 'no') if isinstance(v, bool) else fmt(v)}")
    return " · ".join(parts), head or not others


def numeric_limits(pass_if: Mapping[str, Any] | None) -> dict[str, float]:
    """Limits worth drawing on a plot: ``{'p95': 2.0}`` for latency, ``{'reference': x}`` for a
    bound on the headline value (the first such key)."""
    out: dict[str, float] = {}
    if not isinstance(pass_if, Mapping):
        return out
    for key, v in pass_if.items():
        pk = PASS_KEYS.get(key)
        if pk is None or pk.plot is None or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if pk.plot == "reference" and "reference" in out:
            continue
        out[pk.plot] = float(v)
    return out


def _words(quantity: str) -> str:
    return quantity.replace("_", " ")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _value(v: Any) -> str:
    """An unknown key's value, printed faithfully but readably."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{str(k).replace('_', ' ')} {_value(x)}" for k, x in v.items())
    return str(v)


__all__ = [
    "HEADLINE",
    "NO_CONDITION",
    "PASS_KEYS",
    "MissingMeasurement",
    "PassKey",
    "bounded",
    "check",
    "describe",
    "describe_clause",
    "row_figures",
    "numeric_limits",
]
