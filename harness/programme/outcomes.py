"""What a protocol does to the programme, reweighted to the population, with bootstrap CIs.

Each exam is weighted with :func:`harness.stats.reweight.screening_weights` - the reweighting the
programme criteria (recall rate, CDR, PPV) use - so the set has the standard's prevalence and a
weighted mean is a rate per screen of the screening population. The CIs are a stratified
bootstrap (cases and controls resampled separately, as in the programme criteria) of every
protocol at once, so differences between protocols keep their pairing on the same exams:
:func:`harness.stats.bootstrap.bootstrap_stratified_totals`, percentile intervals.

Measures per protocol (``per_1000`` = per 1000 screens of the population):
``reads_per_1000``, ``arbitrations_per_1000``, ``recall_rate``, ``cdr_per_1000``, ``ppv``,
``missed_vs_double_reading_per_1000`` (cancers double reading recalled and this protocol did
not), ``found_vs_double_reading_per_1000`` (the reverse), ``interval_cancers_flagged`` (interval
cancers - cancers the recorded reading missed - that this protocol recalls), ``in_band_share``
(screens single-read or not read) and ``cancers_in_band`` (share of the set's cancers there),
``ai_only_recalls_per_1000`` (safety-net recalls), and the recall and CDR bounds over every
arbitration of new discordances (``recall_rate_bounds``, ``cdr_per_1000_bounds``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.programme.protocols import BASELINE, Pathway
from harness.programme.screening import ScreeningSet
from harness.stats.bootstrap import bootstrap_stratified_totals, percentile_interval

# the per-exam indicators of one pathway, in column order
COLUMNS = (
    "reads",
    "arbitrations",
    "recall",
    "detected",
    "missed_vs_dr",
    "found_vs_dr",
    "interval_flagged",
    "in_band",
    "cancer_in_band",
    "ai_only_recall",
    "recall_low",
    "detected_low",
    "recall_high",
    "detected_high",
)


@dataclass(frozen=True)
class Outcomes:
    """Every protocol's measures (``measures[name][measure] = {value, ci}``) and the replicates."""

    measures: Mapping[str, Mapping[str, Any]]
    replicates: Mapping[str, Mapping[str, NDArray[np.float64]]]  # per protocol, per 1000 rates
    n_boot: int
    level: float


def indicators(p: Pathway, ss: ScreeningSet, baseline: Pathway) -> NDArray[np.float64]:
    """(N, len(COLUMNS)) per-exam indicators of one pathway."""
    cancer = ss.labels == 1
    cols = [
        p.reads,
        p.arbitrations,
        p.recall,
        p.recall & cancer,
        baseline.recall & cancer & ~p.recall,
        ~baseline.recall & cancer & p.recall,
        ss.interval & p.recall,
        p.in_band,
        p.in_band & cancer,
        p.ai_only_recall,
        p.recall_low,
        p.recall_low & cancer,
        p.recall_high,
        p.recall_high & cancer,
    ]
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])


def _rates(totals: NDArray[np.float64], n: int) -> dict[str, NDArray[np.float64]]:
    """Population rates from weighted column totals (..., len(COLUMNS)); weights average 1."""
    t = {c: totals[..., i] / n for i, c in enumerate(COLUMNS)}
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = np.where(t["recall"] > 0, t["detected"] / t["recall"], np.nan)
    return {
        "reads_per_1000": 1000 * t["reads"],
        "arbitrations_per_1000": 1000 * t["arbitrations"],
        "recall_rate": t["recall"],
        "cdr_per_1000": 1000 * t["detected"],
        "ppv": ppv,
        "missed_vs_double_reading_per_1000": 1000 * t["missed_vs_dr"],
        "found_vs_double_reading_per_1000": 1000 * t["found_vs_dr"],
        "interval_flagged_per_1000": 1000 * t["interval_flagged"],
        "in_band_share": t["in_band"],
        "ai_only_recalls_per_1000": 1000 * t["ai_only_recall"],
        "recall_rate_low": t["recall_low"],
        "recall_rate_high": t["recall_high"],
        "cdr_per_1000_low": 1000 * t["detected_low"],
        "cdr_per_1000_high": 1000 * t["detected_high"],
    }


def _est(point: float, reps: NDArray[np.float64], level: float) -> dict[str, Any]:
    if not np.isfinite(point):
        return {"value": None, "ci": None}
    if not np.isfinite(reps).any():
        return {"value": float(point), "ci": None}
    r = percentile_interval(reps, float(point), level)
    return {"value": float(point), "ci": [r.ci_low, r.ci_high]}


def programme_outcomes(
    pathways: Sequence[Pathway],
    ss: ScreeningSet,
    weights: NDArray[np.float64],
    rng: np.random.Generator,
    n_boot: int = 2000,
    level: float = 0.95,
) -> Outcomes:
    """Measures of every pathway, and of each against double reading, with bootstrap CIs."""
    base = next((p for p in pathways if p.spec.protocol == BASELINE), None)
    if base is None:
        raise ValueError("programme_outcomes needs the double_reading pathway as the baseline")
    k = len(COLUMNS)
    blocks = [indicators(p, ss, base) * weights[:, None] for p in pathways]
    values = np.concatenate(blocks, axis=1)
    totals = values.sum(axis=0)
    boot = bootstrap_stratified_totals(values, ss.labels, rng, n_boot)
    cancers, intervals = int((ss.labels == 1).sum()), int(ss.interval.sum())
    base_point = _rates(totals[:k], ss.n)
    base_reps = _rates(boot[:, :k], ss.n)
    measures: dict[str, dict[str, Any]] = {}
    replicates: dict[str, dict[str, NDArray[np.float64]]] = {}
    for j, p in enumerate(pathways):
        cols = slice(j * k, (j + 1) * k)
        point, reps = _rates(totals[cols], ss.n), _rates(boot[:, cols], ss.n)
        m: dict[str, Any] = {
            name: _est(float(point[name]), reps[name], level)
            for name in (
                "reads_per_1000",
                "arbitrations_per_1000",
                "recall_rate",
                "cdr_per_1000",
                "ppv",
                "missed_vs_double_reading_per_1000",
                "found_vs_double_reading_per_1000",
                "interval_flagged_per_1000",
                "in_band_share",
                "ai_only_recalls_per_1000",
            )
        }
        m["recall_rate_bounds"] = [
            float(point["recall_rate_low"]),
            float(point["recall_rate_high"]),
        ]
        m["cdr_per_1000_bounds"] = [
            float(point["cdr_per_1000_low"]),
            float(point["cdr_per_1000_high"]),
        ]
        flagged = int(np.count_nonzero(ss.interval & p.recall))
        m["interval_cancers_flagged"] = {
            "count": flagged,
            "of": intervals,
            "share": flagged / intervals if intervals else None,
        }
        in_band_cancers = int(np.count_nonzero(p.in_band & (ss.labels == 1)))
        m["cancers_in_band"] = {
            "count": in_band_cancers,
            "of": cancers,
            "share": in_band_cancers / cancers if cancers else None,
        }
        for name in ("reads_per_1000", "recall_rate", "cdr_per_1000", "arbitrations_per_1000"):
            m[f"{name}_vs_double_reading"] = _est(
                float(point[name] - base_point[name]), reps[name] - base_reps[name], level
            )
        m["reads_removed_share"] = _est(
            float(1 - point["reads_per_1000"] / base_point["reads_per_1000"]),
            1 - reps["reads_per_1000"] / base_reps["reads_per_1000"],
            level,
        )
        m["thresholds"] = dict(p.thresholds)
        measures[p.spec.name] = m
        replicates[p.spec.name] = reps
    return Outcomes(measures, replicates, n_boot, level)
