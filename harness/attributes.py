"""The exam attribute vocabulary (``docs/contracts.md`` §3.3, ``reference_cases/README.md``) and
the checks a standard's subgroup criteria get from it at lint time.

A subgroup criterion groups exams by ``by``, an attribute of the manifest, optionally into
numeric ``bands`` (inclusive at both ends). A ``by`` that names no attribute of any set
(``by: Age``), bands in the wrong unit (ages in months) or overlapping bands (``[[50, 60],
[60, 69]]``: age 60 silently lands in the first) all lint clean as YAML and then fail at run time,
so :func:`subgroup_problems` reports them at lint time, each with its fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attribute:
    """One attribute a standard may group by: categorical, or numeric with a plausible range."""

    name: str
    numeric: bool
    low: float = -math.inf
    high: float = math.inf
    unit: str = ""


# Exactly the attributes documented for a reference set's exams (woman_id is the independent
# unit of the statistics, not a subgroup).
ATTRIBUTES: dict[str, Attribute] = {
    a.name: a
    for a in (
        Attribute("age", True, 0, 120, "years"),
        Attribute("density", False),
        Attribute("manufacturer", False),
        Attribute("lesion_type", False),
        Attribute("lesion_size_mm", True, 0, 200, "mm"),
        Attribute("subtle", False),
        Attribute("mass_margin", False),
        Attribute("benign_finding", False),
        Attribute("glandular_fraction", True, 0, 1, "fraction 0-1"),
        Attribute("thickness_mm", True, 0, 200, "mm"),
        Attribute("conspicuity", True, 0, 1, "0-1"),
    )
}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def subgroup_problems(criterion: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    """``[(path inside the criterion, 'what; how to fix')]`` for one subgroup criterion."""
    problems: list[tuple[tuple, str]] = []
    by = criterion.get("by")
    if not isinstance(by, str):
        return problems  # the schema reports it
    attr = ATTRIBUTES.get(by)
    if attr is None:
        near = [n for n in ATTRIBUTES if n.lower() == by.lower().strip()]
        hint = f"did you mean {near[0]!r}? " if near else ""
        problems.append(
            (
                ("by",),
                f"{by!r} is not an exam attribute of a reference set; {hint}use one of "
                f"{', '.join(ATTRIBUTES)} (docs/contracts.md §3.3)",
            )
        )
        return problems
    bands = criterion.get("bands")
    if not isinstance(bands, list):
        return problems
    if not attr.numeric:
        problems.append(
            (
                ("bands",),
                f"{by!r} is categorical, so it has no numeric bands; remove bands "
                "(each value is its own group)",
            )
        )
        return problems
    pairs: list[tuple[int, float, float]] = []
    for i, band in enumerate(bands):
        if not (isinstance(band, Sequence) and len(band) == 2 and all(map(_number, band))):
            continue  # the schema reports the shape; non-finite numbers are caught here
        lo, hi = float(band[0]), float(band[1])
        if lo > hi:
            problems.append((("bands", i), f"band [{lo:g}, {hi:g}] is empty (low > high)"))
            continue
        if lo < attr.low or hi > attr.high:
            months = by == "age" and attr.low * 12 <= lo and hi <= attr.high * 12
            problems.append(
                (
                    ("bands", i),
                    f"band [{lo:g}, {hi:g}] is outside the plausible {by} range "
                    f"{attr.low:g}-{attr.high:g} {attr.unit}"
                    + ("; ages are in years, not months" if months else "; fix the band"),
                )
            )
            continue
        pairs.append((i, lo, hi))
    for i, band in enumerate(bands):
        numbers = isinstance(band, Sequence) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in band
        )
        if numbers and len(band) == 2 and not all(map(_number, band)):
            problems.append((("bands", i), f"band {list(band)!r} must be two finite numbers"))
    ordered = sorted(pairs, key=lambda p: (p[1], p[2]))
    for (i, lo1, hi1), (j, lo2, hi2) in zip(ordered, ordered[1:], strict=False):
        if lo2 <= hi1:  # bands are inclusive at both ends
            problems.append(
                (
                    ("bands", max(i, j)),
                    f"bands [{lo1:g}, {hi1:g}] and [{lo2:g}, {hi2:g}] overlap ({by} {lo2:g} would "
                    f"fall in both; bands include both ends); end the first below {lo2:g}",
                )
            )
    return problems
