"""Subgroup consistency: a metric per group of an attribute (density, age band, manufacturer, ...).

A group fails when its point estimate is more than ``max_gap`` below the overall value *and* its
difference from the rest of the set is significant after Holm correction across the groups
(two-sided; z-test of two proportions for sensitivity/specificity, unpaired DeLong for AUC).
Groups below ``min_n`` (cancers for sensitivity/AUC, non-cancers for specificity) are listed as not
assessable; if fewer than two groups are assessable the criterion cannot be evaluated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness import stats
from harness.results import CriterionResult
from harness.standard import CriterionSpec


def _group_keys(values: list[Any], bands: list[list[float]] | None) -> list[str | None]:
    if bands is None:
        return [None if v is None else str(v) for v in values]
    out: list[str | None] = []
    for v in values:
        key = None
        if isinstance(v, int | float):
            for lo, hi in bands:
                if lo <= v <= hi:
                    key = f"{lo:g}–{hi:g}"
                    break
        out.append(key)
    return out


def _metric(
    metric: str, scores: np.ndarray, labels: np.ndarray, flags: np.ndarray, conf: float
) -> tuple[float, float, float, int, int]:
    """(value, ci_low, ci_high, k, n) of the metric on one group (k = successes; 0 for AUC)."""
    if metric == "auc":
        r = stats.delong(scores, labels, level=conf)
        return r.auc, r.ci_low, r.ci_high, 0, len(labels)
    on = labels == (1 if metric == "sensitivity" else 0)
    n = int(on.sum())
    hits = flags[on] if metric == "sensitivity" else ~flags[on]
    k = int(hits.sum())
    lo, hi = stats.wilson(k, n, conf)
    return k / n, lo, hi, k, n


def _p_value(
    metric: str,
    sel: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    flags: np.ndarray,
    group: tuple[float, float, float, int, int],
    conf: float,
) -> float:
    """Two-sided p of group vs the rest: pooled two-proportion z-test, or unpaired DeLong for AUC."""
    if not (~sel).any():
        return 1.0
    if metric == "auc":
        return float(
            stats.delong_unpaired(scores[sel], labels[sel], scores[~sel], labels[~sel]).p_two_sided
        )
    rest = _metric(metric, scores[~sel], labels[~sel], flags[~sel], conf)
    k1, n1, k2, n2 = group[3], group[4], rest[3], rest[4]
    pooled = (k1 + k2) / (n1 + n2)
    var = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if var == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / math.sqrt(var)
    return float(2 * norm.sf(abs(z)))


def _why_too_few(t: Any, by: str, keys: list[str | None], bands: Any, min_n: int) -> str:
    """The real reason fewer than two groups could be assessed: no exam has the attribute, no
    value falls in any band, or the set is too small."""
    values = [v for v in t.attribute(by) if v is not None]
    if not values:
        present = sorted({k for e in t.exams for k in e.attributes})
        return (
            f"no exam of the reference set has the attribute {by!r} (its exams have: "
            f"{', '.join(present) or 'no attributes'}); fix the criterion's `by`"
        )
    if bands is not None and not any(k is not None for k in keys):
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        seen = (
            f"values range {min(numbers):g} to {max(numbers):g}" if numbers else "no numeric values"
        )
        return (
            f"no exam's {by} falls in the bands {bands} ({seen}); fix the bands "
            "(`mammocert standard lint` checks their unit and overlap)"
        )
    return (
        f"fewer than two {by} groups have at least {min_n} relevant exams; the reference set "
        "is too small for this criterion"
    )


@evaluator(
    "subgroup",
    family="subgroups",
    section="Equity across subgroups",
    method=(
        "The metric computed per subgroup (e.g. breast density, age band, device "
        "manufacturer); the criterion bounds the largest gap between subgroups."
    ),
    pass_keys=("max_gap",),
)
def subgroup(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    metric, by = spec.params["metric"], spec.params["by"]
    min_n, alpha = int(spec.params["min_n"]), float(spec.params["alpha"])
    max_gap = float(spec.pass_if["max_gap"])
    conf = 0.95
    keys = _group_keys(t.attribute(by), spec.params.get("bands"))
    flags = t.flags(ctx.operating_point)
    overall = _metric(metric, t.scores, t.labels, flags, conf)
    groups: list[dict[str, Any]] = []
    pvals: list[float] = []
    assess_idx: list[int] = []
    for name in sorted({k for k in keys if k is not None}):
        sel = np.array([k == name for k in keys])
        need = (t.labels[sel] == (0 if metric == "specificity" else 1)).sum()
        other = (t.labels[sel] == (1 if metric == "specificity" else 0)).sum()
        g: dict[str, Any] = {"name": name, "n": int(sel.sum()), "n_relevant": int(need)}
        if need < min_n or (metric == "auc" and other == 0):
            g["assessable"] = False
            groups.append(g)
            continue
        grp = _metric(metric, t.scores[sel], t.labels[sel], flags[sel], conf)
        v, lo, hi = grp[0], grp[1], grp[2]
        p = _p_value(metric, sel, t.scores, t.labels, flags, grp, conf)
        g.update(
            {"assessable": True, "value": v, "ci": [lo, hi], "gap": overall[0] - v, "p_value": p}
        )
        assess_idx.append(len(groups))
        pvals.append(p)
        groups.append(g)
    if len(assess_idx) < 2:
        raise NotEvaluable(_why_too_few(t, by, keys, spec.params.get("bands"), min_n))
    adjusted = stats.holm(pvals)
    worst = 0.0
    for i, p_adj in zip(assess_idx, adjusted, strict=True):
        g = groups[i]
        g["p_holm"] = float(p_adj)
        g["fails"] = bool(g["gap"] > max_gap and p_adj < alpha)
        if p_adj < alpha:
            worst = max(worst, g["gap"])
    failing = [g["name"] for g in groups if g.get("fails")]
    measured = {"value": overall[0], "ci": (overall[1], overall[2]), "significant_gap": worst}
    summary = (
        f"The AI's {metric} is {overall[0]:.3f} overall; across {len(assess_idx)} assessable {by} groups the "
        f"largest significant shortfall is {worst:.3f}"
        + (f" (groups {', '.join(failing)})." if failing else ".")
    )
    evidence = {
        "metric": metric,
        "by": by,
        "overall": {
            "name": "overall",
            "value": overall[0],
            "ci": [overall[1], overall[2]],
            "n": overall[4],
        },
        "groups": groups,
        "method": f"per-group {'DeLong' if metric == 'auc' else 'Wilson'} 95% CI; group-vs-rest two-sided z-test, Holm-adjusted at alpha {alpha}",
    }
    return result(spec, measured, t.n, summary, evidence)
