"""Robustness sweeps: one relation over a fixed grid of severity levels.

A sweep shows *how* a model degrades, not just whether it stays within a tolerance: e.g. the
exam AUC at 20, 40, 60, 80 and 100 % of the dose (the M-SYNTH study's dose grid). The level is
the relation's one severity parameter (``Relation.at_level``): dose fraction (``noise``), gamma
(``intensity``), pixel pitch in mm (``resample``), peak contrast of a 10 mm mass
(``lesion_insertion``); ``Relation.levels`` is the default grid.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import UsageError
from harness.perturb.relation import Transform


def sweep_conditions(
    relation: str, levels: Sequence[float] | None = None
) -> list[tuple[str, Transform]]:
    """``(condition_id, transform)`` per level, in the given order (default grid when omitted)."""
    from harness.perturb.registry import RELATIONS  # the registry imports this package's modules

    rel = RELATIONS.get(relation)
    if rel is None or rel.at_level is None:
        sweepable = ", ".join(name for name, r in RELATIONS.items() if r.at_level is not None)
        raise UsageError(
            f"sweep: relation {relation!r} has no severity level; sweep one of {sweepable}"
        )
    grid = rel.levels if levels is None else tuple(levels)
    if not grid:
        raise UsageError(f"sweep: no levels given for {relation}; pass at least one")
    out: list[tuple[str, Transform]] = []
    seen: set[str] = set()
    for level in grid:
        try:
            params = rel.at_level(level)
        except ValueError as exc:
            raise UsageError(f"sweep: level {level!r} for {relation}: {exc}") from None
        cid, transform = rel.condition(params)
        if cid not in seen:  # repeated levels would duplicate predictions-file keys
            seen.add(cid)
            out.append((cid, transform))
    return out
