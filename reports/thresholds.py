"""Readable text for a criterion's ``pass_if`` (e.g. ``{ci_lower_gte: 0.85}`` -> "CI lower ≥ 0.85").

The standard's schema names thresholds ``<metric>_<op>[_<unit>]`` (``ci_lower_gte``,
``p95_lte_s``, ``value_per_1000_gt``) or ``max_<metric>`` / ``min_<metric>``; anything else is
shown as ``key: value`` so an unfamiliar threshold is still printed faithfully, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_OPS = {"gte": "≥", "gt": ">", "lte": "≤", "lt": "<", "eq": "="}
_UNITS = {"s": "s", "ms": "ms", "pct": "%"}
_PATTERN = re.compile(r"^(?P<metric>.+?)_(?P<op>gte|gt|lte|lt|eq)(?:_(?P<unit>s|ms|pct))?$")

# Metric names as a non-statistician reads them.
_METRICS = {
    "ci_lower": "CI lower",
    "ci_upper": "CI upper",
    "ratio_ci_lower": "ratio to readers, CI lower",
    "ratio_ci_upper": "ratio to readers, CI upper",
    "ratio": "ratio to readers",
    "value": "value",
    "value_per_1000": "per 1,000 screens",
    "p50": "median (p50)",
    "p95": "p95",
    "max_abs_diff": "largest score difference",
    "lesion_sensitivity": "lesion sensitivity",
    "auc_drop": "AUC drop",
    "sensitivity_drop": "sensitivity drop",
    "invalid_fraction": "invalid outputs",
    "distinct_scores": "distinct scores",
    "violations": "violations",
    "rejected_fraction": "rejected share",
    "gap": "largest subgroup gap",
}


def _metric(name: str) -> str:
    return _METRICS.get(name, name.replace("_", " "))


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k.replace('_', ' ')} {_value(x)}" for k, x in v.items())
    return str(v)


def describe_clause(key: str, value: Any) -> str:
    """One ``pass_if`` entry as text."""
    m = _PATTERN.match(key)
    if m and not isinstance(value, Mapping):
        unit = _UNITS.get(m["unit"] or "", "")
        return (
            f"{_metric(m['metric'])} {_OPS[m['op']]} {_value(value)}{(' ' + unit) if unit else ''}"
        )
    if key.startswith("max_") and not isinstance(value, Mapping):
        return f"{_metric(key[4:])} ≤ {_value(value)}"
    if key.startswith("min_") and not isinstance(value, Mapping):
        return f"{_metric(key[4:])} ≥ {_value(value)}"
    if key == "noninferior":
        return (
            f"non-inferior to comparator ({_value(value)})"
            if isinstance(value, Mapping)
            else "non-inferior to comparator"
        )
    return f"{key.replace('_', ' ')}: {_value(value)}"


def describe_threshold(pass_if: Mapping[str, Any] | None) -> str:
    """The whole ``pass_if`` as text; several clauses must all hold."""
    if not isinstance(pass_if, Mapping) or not pass_if:
        return "—"
    return " and ".join(describe_clause(k, v) for k, v in pass_if.items())


def numeric_limits(pass_if: Mapping[str, Any] | None) -> dict[str, float]:
    """Limits worth drawing on a plot: ``{'p95': 2.0}`` for latency, ``{'reference': x}`` for a bound."""
    out: dict[str, float] = {}
    if not isinstance(pass_if, Mapping):
        return out
    for key, v in pass_if.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        m = _PATTERN.match(key)
        if m and m["unit"] == "s":
            out[m["metric"]] = float(v)
        elif m and m["metric"] in ("ci_lower", "value") and "reference" not in out:
            out["reference"] = float(v)
    return out
