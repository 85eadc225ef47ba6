"""Programme metrics of standalone AI at its operating point, reweighted to the screening population.

An enriched reference set over-represents cancers. Reweighting each cancer exam by prev/(n1/n)
and each non-cancer exam by (1-prev)/(n0/n) gives the population values, which reduce to
recall = prev*sens + (1-prev)*(1-spec), CDR = prev*sens, PPV = prev*sens/recall. The comparator is a
reader decision from the manifest (e.g. the double-reading consensus) on the same exams.

The CI of the AI/reader ratio is an exact stratified bootstrap: cancers and non-cancers are
resampled separately (the design fixes their numbers), and because each metric depends only on
the four (AI, reader) decision cells per stratum, a replicate is one multinomial draw per stratum.
This keeps the pairing of AI and reader on the same exams.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness.results import CriterionResult
from harness.standard import CriterionSpec


def _cells(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Counts of (ai, reader) in order (1,1), (1,0), (0,1), (0,0)."""
    a, r = a.astype(bool), r.astype(bool)
    return np.array(
        [(a & r).sum(), (a & ~r).sum(), (~a & r).sum(), (~a & ~r).sum()], dtype=np.int64
    )


def _metrics(sens: np.ndarray, fpr: np.ndarray, prev: float) -> dict[str, np.ndarray]:
    recall = prev * sens + (1 - prev) * fpr
    cdr = prev * sens
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = np.where(recall > 0, cdr / recall, np.nan)
    return {"recall_rate": recall, "cancer_detection_rate": cdr, "ppv": ppv}


def _programme(spec: CriterionSpec, ctx: EvaluationContext, metric: str) -> CriterionResult:
    t = ctx.table()
    prev = ctx.standard.prevalence_per_1000 / 1000.0
    reader_name = spec.params["comparator_reader"]
    reader = t.reader(reader_name)
    ai = t.flags(ctx.operating_point)
    pos, neg = t.labels == 1, t.labels == 0
    n1, n0 = int(pos.sum()), int(neg.sum())
    if n1 == 0 or n0 == 0:
        raise NotEvaluable("the reference set needs both cancer and non-cancer exams")
    c1, c0 = _cells(ai[pos], reader[pos]), _cells(ai[neg], reader[neg])

    def values(k1: np.ndarray, k0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ai_m = _metrics((k1[..., 0] + k1[..., 1]) / n1, (k0[..., 0] + k0[..., 1]) / n0, prev)[
            metric
        ]
        rd_m = _metrics((k1[..., 0] + k1[..., 2]) / n1, (k0[..., 0] + k0[..., 2]) / n0, prev)[
            metric
        ]
        return ai_m, rd_m

    ai_v, rd_v = (float(v) for v in values(c1, c0))
    ci_spec = spec.params["ci"]
    reps, conf = int(ci_spec.get("replicates", 2000)), float(ci_spec["level"])
    rng = ctx.rng(spec.id)
    b1 = rng.multinomial(n1, c1 / n1, size=reps)
    b0 = rng.multinomial(n0, c0 / n0, size=reps)
    ai_b, rd_b = values(b1, b0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_b = ai_b / rd_b
    ok = np.isfinite(ratio_b)
    if ok.sum() < 0.9 * reps:
        who = (
            "the AI's"
            if np.mean(~np.isfinite(ai_b)) >= np.mean(~(np.isfinite(rd_b) & (rd_b > 0)))
            else f"{reader_name}'s"
        )
        why = " (nothing is recalled)" if metric == "ppv" else " (zero)"
        raise NotEvaluable(
            f"{who} {metric.replace('_', ' ')} is undefined{why} in too many bootstrap replicates for a ratio"
        )
    alpha = 1 - conf
    r_lo, r_hi = (float(v) for v in np.quantile(ratio_b[ok], [alpha / 2, 1 - alpha / 2]))
    v_lo, v_hi = (
        float(v) for v in np.quantile(ai_b[np.isfinite(ai_b)], [alpha / 2, 1 - alpha / 2])
    )
    ratio = ai_v / rd_v if rd_v > 0 else float("nan")
    measured: dict[str, Any] = {
        "value": ai_v,
        "ci": (v_lo, v_hi),
        "ratio": ratio,
        "ratio_ci_lower": r_lo,
        "ratio_ci_upper": r_hi,
        "value_per_1000": ai_v * 1000,
    }
    label = {
        "recall_rate": "recall rate",
        "cancer_detection_rate": "cancer detection rate",
        "ppv": "PPV of recall",
    }[metric]
    fmt = (
        (lambda v: f"{v * 1000:.2f} per 1,000")
        if metric == "cancer_detection_rate"
        else (lambda v: f"{v:.2%}")
    )
    summary = (
        f"Reweighted to {ctx.standard.prevalence_per_1000:g} cancers per 1,000 screens, the AI's {label} at its "
        f"operating point is {fmt(ai_v)} against {fmt(rd_v)} for {reader_name} (ratio {ratio:.2f}, "
        f"{conf:.0%} CI {r_lo:.2f}–{r_hi:.2f})."
    )
    evidence = {
        "prevalence_per_1000": ctx.standard.prevalence_per_1000,
        "comparator_reader": reader_name,
        "comparator_value": rd_v,
        "operating_point": ctx.operating_point,
        "cells_cancers": {
            "both": int(c1[0]),
            "ai_only": int(c1[1]),
            "reader_only": int(c1[2]),
            "neither": int(c1[3]),
        },
        "cells_non_cancers": {
            "both": int(c0[0]),
            "ai_only": int(c0[1]),
            "reader_only": int(c0[2]),
            "neither": int(c0[3]),
        },
        "method": (
            f"reweighting to population prevalence; stratified paired bootstrap ({reps} replicates) "
            f"of the AI/reader ratio, {conf:.0%} percentile CI"
        ),
    }
    return result(spec, measured, n1 + n0, summary, evidence)


@evaluator(
    "recall_rate",
    family="programme",
    section="Screening outcomes compared with radiologists",
    method=(
        "Recall rate reweighted to the screening population's prevalence, compared with the "
        "radiologist reading as a ratio with a confidence interval."
    ),
    pass_keys=("ratio_ci_upper_lte", "ratio_lte", "value_lte"),
    operating_point=True,
)
def recall_rate(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    return _programme(spec, ctx, "recall_rate")


@evaluator(
    "cancer_detection_rate",
    family="programme",
    section="Screening outcomes compared with radiologists",
    method=(
        "Cancers detected per 1,000 screens, reweighted to the population's prevalence, "
        "compared with the radiologist reading as a ratio."
    ),
    pass_keys=("ratio_ci_lower_gte", "ratio_gte", "value_per_1000_gt"),
    operating_point=True,
)
def cancer_detection_rate(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    return _programme(spec, ctx, "cancer_detection_rate")


@evaluator(
    "ppv",
    family="programme",
    section="Screening outcomes compared with radiologists",
    method=(
        "Positive predictive value of a recall (share of recalls that are cancers), "
        "reweighted to the population's prevalence, compared with the radiologist reading as "
        "a ratio."
    ),
    pass_keys=("ratio_ci_lower_gte", "ratio_gte", "value_gte"),
    operating_point=True,
)
def ppv(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    return _programme(spec, ctx, "ppv")
