"""Programme impact of an AI triage or rule-out band: is it safe, and does it remove work?

Both kinds take ``protocol`` (``ai_triage``: the band is read once; ``ai_rule_out``: not read)
and a ``band`` (``harness.programme.bands``: the smallest band removing a share of reads, a
vendor's score, or the largest band holding at most a share of the cancers). Shares of reads
are of the screening population (the set reweighted to the standard's prevalence, as the
programme criteria do); an exam the AI could not read counts against it, as in every criterion
(a cancer in the band, a normal outside it).
"""

from __future__ import annotations

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness.programme.bands import Band, resolve_band
from harness.results import CriterionResult
from harness.standard import CriterionSpec
from harness.stats.proportions import clopper_pearson
from harness.stats.reweight import screening_weights

SECTION = "Programme impact of an AI triage band"
WHAT = {"ai_triage": "single-read", "ai_rule_out": "not read"}


def _band(spec: CriterionSpec, ctx: EvaluationContext) -> Band:
    t = ctx.table()
    if not (t.labels == 1).any() or not (t.labels == 0).any():
        raise NotEvaluable("the reference set needs both cancer and non-cancer exams")
    w = screening_weights(t.labels, ctx.standard.prevalence_per_1000)
    return resolve_band(t.scores, t.labels, w, spec.params["protocol"], spec.params["band"])


def _evidence(spec: CriterionSpec, b: Band, ctx: EvaluationContext) -> dict:
    return {
        "protocol": spec.params["protocol"],
        "band": dict(spec.params["band"]),
        "threshold": b.threshold,
        "screens_in_band": b.screens_share,
        "reads_removed": b.reads_removed,
        "cancers_in_band": b.cancers,
        "n_cancers": b.n_cancers,
        "prevalence_per_1000": ctx.standard.prevalence_per_1000,
    }


@evaluator(
    "triage_safety",
    family="programme",
    section=SECTION,
    method=(
        "The share of the set's cancers that fall in the AI's low-score band (read once, or not "
        "at all), with its exact Clopper-Pearson interval, at a band that removes at least the "
        "stated share of double reading's reads in the screening population."
    ),
    pass_keys=("value_lte", "ci_upper_lte"),
)
def triage_safety(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    b = _band(spec, ctx)
    level = float(spec.params["ci"]["level"])
    lo, hi = clopper_pearson(b.cancers, b.n_cancers, level)
    share = b.cancers / b.n_cancers
    summary = (
        f"The band {WHAT[spec.params['protocol']]} (scores below {b.threshold:.4g}, "
        f"{b.screens_share:.1%} of screens) removes {b.reads_removed:.1%} of double reading's "
        f"reads and holds {b.cancers} of {b.n_cancers} cancers ({share:.1%}, "
        f"{level:.0%} CI {lo:.1%}–{hi:.1%})."
    )
    measured = {"value": share, "ci": (lo, hi), "ci_upper": hi, "reads_removed": b.reads_removed}
    ev = _evidence(spec, b, ctx) | {"method": f"Clopper-Pearson {level:.0%}"}
    return result(spec, measured, b.n_cancers, summary, ev)


@evaluator(
    "workload_reduction",
    family="programme",
    section=SECTION,
    method=(
        "The share of double reading's reads that the AI's low-score band removes in the "
        "screening population (prevalence reweighting), against a floor."
    ),
    pass_keys=("value_gte",),
)
def workload_reduction(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    b = _band(spec, ctx)
    summary = (
        f"The band {WHAT[spec.params['protocol']]} (scores below {b.threshold:.4g}) holds "
        f"{b.screens_share:.1%} of screens and {b.cancers} of {b.n_cancers} cancers, and removes "
        f"{b.reads_removed:.1%} of double reading's reads."
    )
    measured = {"value": b.reads_removed, "ci": None}
    return result(spec, measured, ctx.table().n, summary, _evidence(spec, b, ctx))
