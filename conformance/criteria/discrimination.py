"""Discrimination: AUC (exam, breast), sensitivity at a fixed specificity, sensitivity and
specificity at the vendor's declared operating point, optionally non-inferior to a reader."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from conformance.table import breast_units
from harness import stats
from harness.results import CriterionResult
from harness.standard import CriterionSpec


def _roc_evidence(
    scores: np.ndarray, labels: np.ndarray, max_points: int = 200
) -> dict[str, list[float]]:
    fpr, tpr, _ = stats.roc_curve(scores, labels)
    if len(fpr) > max_points:  # keep the plot data small; the curve is monotone, subsample evenly
        idx = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr]}


def _reader_points(ctx: EvaluationContext) -> list[dict[str, Any]]:
    t = ctx.table()
    pts = []
    for name in sorted({r for e in ctx.manifest.exams for r in e.readers}):
        try:
            flags = t.reader(name)
        except NotEvaluable:
            continue
        pos, neg = t.labels == 1, t.labels == 0
        pts.append(
            {"label": name, "tpr": float(flags[pos].mean()), "fpr": float(flags[neg].mean())}
        )
    return pts


def _vendor_point(ctx: EvaluationContext, scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    flags = scores >= ctx.operating_point
    return {
        "label": f"AI at operating point {ctx.operating_point:g}",
        "tpr": float(flags[labels == 1].mean()),
        "fpr": float(flags[labels == 0].mean()),
    }


@evaluator(
    "auc",
    family="discrimination",
    section="Discrimination",
    method=(
        "Area under the ROC curve (AUC): the chance that a randomly chosen cancer exam scores"
        " higher than a randomly chosen cancer-free exam. Confidence interval by DeLong's "
        "method or a stratified bootstrap, as the standard specifies."
    ),
    pass_keys=("ci_lower_gte", "value_gte"),
)
def auc(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    level = spec.params.get("level", "exam")
    if level == "breast":
        labels, scores, _ = breast_units(t)
    else:
        labels, scores = t.labels, t.scores
    ci_spec = spec.params["ci"]
    conf = float(ci_spec["level"])
    if ci_spec["method"] == "delong":
        r = stats.delong(scores, labels, level=conf)
        value, lo, hi, method = (
            r.auc,
            r.ci_low,
            r.ci_high,
            f"DeLong (fast, Sun & Xu), {conf:.0%} CI, pROC conventions",
        )
    else:
        reps = int(ci_spec.get("replicates", 2000))
        b = stats.bootstrap_auc(scores, labels, ctx.rng(spec.id), n_boot=reps, level=conf)
        value, lo, hi = b.estimate, b.ci_low, b.ci_high
        method = f"stratified bootstrap, {reps} replicates, percentile {conf:.0%} CI"
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    unit = "breasts" if level == "breast" else "exams"
    return result(
        spec,
        {"value": value, "ci": (lo, hi), "ci_lower": lo, "ci_upper": hi},
        n_pos + n_neg,
        f"The AI separates cancer from non-cancer {unit} with an AUC of {value:.3f} "
        f"({conf:.0%} CI {lo:.3f}–{hi:.3f}; {n_pos} cancer and {n_neg} non-cancer {unit}).",
        {
            "level": level,
            "method": method,
            "n_cases": n_pos,
            "n_controls": n_neg,
            "unreadable_exams": t.n_unreadable,
            "roc": _roc_evidence(scores, labels),
            "operating_points": (
                [_vendor_point(ctx, scores, labels)]
                + (_reader_points(ctx) if level == "exam" else [])
            ),
        },
    )


def _noninferiority(
    spec: CriterionSpec, ctx: EvaluationContext, ai_flags: np.ndarray, on: np.ndarray, what: str
) -> dict[str, Any]:
    """Paired NI of the AI's flags against a reader's on the same exams (Tango score interval).

    ``on`` selects the exams (cancers for sensitivity, non-cancers for specificity); for specificity
    the 'positive' event is a correct no-recall, so flags are inverted by the caller.
    """
    comp = spec.params["comparator"]
    reader = ctx.table().reader(comp["reader"])
    if what == "specificity":
        reader = 1 - reader
    a, r = ai_flags[on].astype(bool), reader[on].astype(bool)
    b = int((a & ~r).sum())  # AI right, reader wrong
    c = int((~a & r).sum())  # reader right, AI wrong
    n = int(on.sum())
    ni = stats.tango_noninferiority(
        b, c, n, margin=float(comp["margin_abs"]), alpha=float(comp["alpha"])
    )
    return {
        "reader": comp["reader"],
        "reader_value": float(r.mean()),
        "ai_value": float(a.mean()),
        "difference": ni.diff,
        "difference_ci": [ni.ci_low, ni.ci_high],
        "margin": float(comp["margin_abs"]),
        "alpha_one_sided": float(comp["alpha"]),
        "discordant_ai_only": b,
        "discordant_reader_only": c,
        "p_value": ni.p,
        "noninferior": bool(ni.noninferior),
        "method": "paired difference AI - reader, Tango (1998) score interval; NI if lower bound > -margin",
    }


@evaluator(
    "sensitivity_at_specificity",
    family="discrimination",
    section="Screening accuracy",
    method=(
        "Sensitivity (share of cancers flagged) at the threshold that gives the target "
        "specificity; bootstrap confidence interval."
    ),
    pass_keys=("ci_lower_gte", "value_gte", "noninferior"),
    operating_point=True,
)
def sensitivity_at_specificity(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    target = float(spec.params["target_specificity"])
    ci_spec = spec.params["ci"]
    reps, conf = int(ci_spec.get("replicates", 2000)), float(ci_spec["level"])
    value = stats.sensitivity_at_specificity(t.scores, t.labels, target)
    boot = stats.bootstrap_sens_at_spec(
        t.scores, t.labels, target, ctx.rng(spec.id), n_boot=reps, level=conf
    )
    lo, hi = boot.ci_low, boot.ci_high
    measured: dict[str, Any] = {"value": value, "ci": (lo, hi), "ci_lower": lo, "ci_upper": hi}
    threshold = stats.threshold_for_specificity(t.scores, t.labels, target)
    evidence: dict[str, Any] = {
        "target_specificity": target,
        "threshold_at_target": threshold,
        "method": f"pROC coords(input='specificity') interpolation; stratified bootstrap {reps} replicates, {conf:.0%} percentile CI",
        "roc": _roc_evidence(t.scores, t.labels),
        "operating_points": _reader_points(ctx),
    }
    summary = (
        f"At the specificity of {target:.1%} the AI finds {value:.1%} of cancers "
        f"({conf:.0%} CI {lo:.1%}–{hi:.1%})."
    )
    if "comparator" in spec.params:
        if threshold is None:
            raise NotEvaluable(f"no score threshold reaches specificity {target}")
        ni = _noninferiority(spec, ctx, t.flags(threshold), t.labels == 1, "sensitivity")
        measured["noninferior"] = ni["noninferior"]
        evidence["comparator"] = ni
        summary += (
            f" Against {ni['reader']} ({ni['reader_value']:.1%}) at that threshold the difference is "
            f"{ni['difference']:+.1%} (CI {ni['difference_ci'][0]:+.1%} to {ni['difference_ci'][1]:+.1%}, margin -{ni['margin']:.0%})."
        )
    return result(spec, measured, t.n, summary, evidence)


def _at_operating_point(spec: CriterionSpec, ctx: EvaluationContext, what: str) -> CriterionResult:
    t = ctx.table()
    flags = t.flags(ctx.operating_point)
    on = t.labels == (1 if what == "sensitivity" else 0)
    correct = flags[on] if what == "sensitivity" else ~flags[on]
    k, n = int(correct.sum()), int(on.sum())
    if n == 0:
        raise NotEvaluable(
            f"the reference set has no {'cancer' if what == 'sensitivity' else 'non-cancer'} exams"
        )
    ci_spec = spec.params["ci"]
    conf = float(ci_spec["level"])
    ci_fn = stats.wilson if ci_spec["method"] == "wilson" else stats.clopper_pearson
    lo, hi = ci_fn(k, n, conf)
    value = k / n
    measured: dict[str, Any] = {"value": value, "ci": (lo, hi), "ci_lower": lo, "ci_upper": hi}
    evidence: dict[str, Any] = {
        "operating_point": ctx.operating_point,
        "k": k,
        "n": n,
        "method": f"{ci_spec['method'].replace('_', '-')} {conf:.0%} interval",
        "unreadable_exams": int((~t.readable[on]).sum()),
    }
    noun = "cancers it flags" if what == "sensitivity" else "non-cancer exams it does not recall"
    summary = (
        f"At the vendor's declared operating point ({ctx.operating_point:g}) the {what} is {value:.1%}: "
        f"{k} of {n} {noun} ({conf:.0%} CI {lo:.1%}–{hi:.1%})."
    )
    if "comparator" in spec.params:
        ai = flags if what == "sensitivity" else ~flags
        ni = _noninferiority(spec, ctx, ai, on, what)
        measured["noninferior"] = ni["noninferior"]
        evidence["comparator"] = ni
        summary += (
            f" {ni['reader']} reached {ni['reader_value']:.1%}; difference {ni['difference']:+.1%} "
            f"(CI {ni['difference_ci'][0]:+.1%} to {ni['difference_ci'][1]:+.1%}, margin -{ni['margin']:.0%})."
        )
    return result(spec, measured, n, summary, evidence)


@evaluator(
    "sensitivity_at_operating_point",
    family="discrimination",
    section="Screening accuracy",
    method=(
        "Sensitivity at the vendor's declared operating point; Wilson interval, or a non-"
        "inferiority test against the named comparator."
    ),
    pass_keys=("ci_lower_gte", "value_gte", "noninferior"),
    operating_point=True,
)
def sensitivity_at_operating_point(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    return _at_operating_point(spec, ctx, "sensitivity")


@evaluator(
    "specificity_at_operating_point",
    family="discrimination",
    section="Screening accuracy",
    method=(
        "Specificity (share of cancer-free exams not flagged) at the vendor's operating "
        "point; Wilson interval or non-inferiority test."
    ),
    pass_keys=("ci_lower_gte", "value_gte", "noninferior"),
    operating_point=True,
)
def specificity_at_operating_point(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    return _at_operating_point(spec, ctx, "specificity")
