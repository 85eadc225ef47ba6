"""The vendor's copy of a run: aggregate figures only, for a sequestered reference set.

A national set is sequestered: the vendor must not learn which exams are cancers. The authority's
copy of a run (the bundle's own ``results.json`` and ``report.html``) keeps the full evidence —
exam ids of missed cancers, counterexamples with thumbnails of the reference images, per-exam
pairs — because audit and ``verify --cases`` need it. :func:`vendor_copy` is the one place that
decides what of a run the vendor sees; the engine writes its result as ``vendor/results.json`` and
``vendor/report.html`` inside the bundle, before the attestation is made, so the attestation
covers both copies.

What is kept is a list per criterion kind (``DISCLOSURE``), not a list of what to remove: a
kind, or an evidence field, that nobody has judged is withheld. Every kept field is an aggregate
over exams (counts, rates, curves, per-level or per-group figures); every field that lists exams
(and so, with the kind, ties an exam id to its truth: a missed cancer, a normal exam a lesion was
inserted into, a flipped recall) is withheld, and so is every image thumbnail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness import passif
from harness.results import CriterionResult, RunResults
from reports.render import VENDOR_DIR

AUDIENCES = ("vendor", "authority")
VENDOR_FILES = ("results.json", "report.html", "junit.xml")
WITHHELD_NOTE = (
    "Vendor copy: aggregate figures only. Per-exam evidence (which exams were missed, flipped or "
    "perturbed, counterexamples and their images) is withheld because the reference set is "
    "sequestered; the authority's copy of this run holds it."
)

PROGRAMME_NOT_COMPUTED = (
    "the programme analysis could not be computed on this reference set; the authority's copy "
    "of this run says why"
)


@dataclass(frozen=True)
class Disclosure:
    """What the vendor sees of one criterion kind's result."""

    evidence: frozenset[str]  # evidence keys that are aggregates over exams
    explanation: bool  # the evaluator's explanation names no exam (else it is rewritten)


def _d(*keys: str, explanation: bool = True) -> Disclosure:
    return Disclosure(frozenset(keys), explanation)


# Evidence every kind may show: the measurement the pass_if is held to, the method text, the unit
# and the resolution note (conformance.resolution), all aggregates.
COMMON = frozenset({"measured", "method", "unit", "not_resolvable", "applies_to", "product_inputs"})
_RATES = ("prevalence_per_1000", "comparator_reader", "comparator_value", "operating_point")
_CELLS = ("cells_cancers", "cells_non_cancers")

# kind -> what the vendor may see (tests/conformance/test_redaction.py checks every registered
# kind is here; a kind missing here shows only COMMON and a rewritten explanation).
DISCLOSURE: Mapping[str, Disclosure] = {
    "auc": _d("level", "n_cases", "n_controls", "unreadable_exams", "roc", "operating_points"),
    "sensitivity_at_specificity": _d(
        "target_specificity", "threshold_at_target", "roc", "operating_points", "comparator"
    ),
    "sensitivity_at_operating_point": _d(
        "operating_point", "k", "n", "unreadable_exams", "comparator"
    ),
    "specificity_at_operating_point": _d(
        "operating_point", "k", "n", "unreadable_exams", "comparator"
    ),
    "recall_rate": _d(*_RATES, *_CELLS),
    "cancer_detection_rate": _d(*_RATES, *_CELLS),
    "ppv": _d(*_RATES, *_CELLS),
    "subgroup": _d("metric", "by", "overall", "groups"),
    # withheld: ``missed`` (cancer exams and sides the top mark missed)
    "localization": _d("r_min_mm", "n_lesions", "n_flagged_lesions", "froc", "llf_at_fp_per_image"),
    # withheld: ``invalid_examples`` (exam ids with their scores)
    "degenerate_output": _d("score_sd"),
    # withheld: the counterexample (an exam id and thumbnails of its images); the explanation
    # names that exam when the relation is broken
    "invariance": _d(
        "relation", "relation_kind", "tolerance", "examples", "examples_run", explanation=False
    ),
    "robustness_sweep": _d("relation", "baseline", "levels"),
    # withheld: ``flipped``, ``pairs`` (exam ids with scores), ``counterexample``
    "decision_stability": _d(
        "relation",
        "relation_kind",
        "operating_point",
        "levels",
        "exams",
        "by_level",
        "score_drift",
        "examples",
        explanation=False,
    ),
    # withheld: ``ignored``, ``pairs`` (every one a normal exam), ``counterexample``
    "insertion_response": _d(
        "relation",
        "relation_kind",
        "lesion",
        "exams",
        "operating_point",
        "score_drift",
        "examples",
        explanation=False,
    ),
    # withheld: ``changed`` / ``checks`` / ``inputs`` (per exam); explanations name exams
    "determinism": _d("repeats", explanation=False),
    "caching": _d(explanation=False),
    "input_rejection": _d(explanation=False),
    # withheld: ``failures`` (exam ids with their reasons)
    "technical_failure_rate": _d("by_reason"),
    "latency": _d("histogram", "max_s"),
    "triage_safety": _d(
        "protocol",
        "band",
        "threshold",
        "screens_in_band",
        "reads_removed",
        "cancers_in_band",
        "n_cancers",
        "prevalence_per_1000",
    ),
    "workload_reduction": _d(
        "protocol",
        "band",
        "threshold",
        "screens_in_band",
        "reads_removed",
        "cancers_in_band",
        "n_cancers",
        "prevalence_per_1000",
    ),
}
UNJUDGED = Disclosure(frozenset(), explanation=False)


def _aggregate_explanation(c: CriterionResult, evidence: Mapping[str, Any]) -> str:
    """The verdict in words from the aggregates alone (for kinds whose sentence names exams)."""
    if c.outcome == "error":
        return (
            "Could not be evaluated on this set; the reason is in the authority's copy. "
            "This counts as not passed."
        )
    measured = evidence.get("measured")
    failed: list[str] = []
    if isinstance(measured, Mapping):
        try:
            _, failed = passif.check(c.threshold, measured)
        except (passif.MissingMeasurement, ValueError):
            failed = []
    rule = passif.describe(c.threshold)
    if c.outcome == "passed":
        return f"Meets the requirement ({rule}) on {c.n} case(s)."
    why = ": " + "; ".join(failed) if failed else ""
    return f"Does not meet the requirement{why} ({rule}) on {c.n} case(s)."


def vendor_criterion(c: CriterionResult) -> CriterionResult:
    """One criterion as the vendor sees it: the kind's aggregate evidence, no exam ids."""
    facts = DISCLOSURE.get(c.kind, UNJUDGED)
    ev = c.evidence if isinstance(c.evidence, Mapping) else {}
    keep = COMMON | facts.evidence
    evidence = {k: v for k, v in ev.items() if k in keep}
    withheld = sorted(k for k, v in ev.items() if k not in keep and v not in (None, [], {}))
    if withheld:
        evidence["withheld"] = withheld
    # an error's reason is free text (it may quote an exam); the resolution note is built from
    # counts only (conformance.resolution), so it stays
    keep_text = (
        "not_resolvable" in ev
        or c.outcome == "not_applicable"  # names the scope and the product's inputs only
        or (facts.explanation and c.outcome != "error")
    )
    explanation = c.explanation if keep_text else _aggregate_explanation(c, ev)
    return dataclasses.replace(c, evidence=evidence, explanation=explanation)


def vendor_copy(results: RunResults) -> RunResults:
    """The whole run as the vendor may see it (``docs/contracts.md`` §3.6, the vendor's copy).

    Verdict, outcomes, values, CIs, thresholds and n are unchanged; per-exam evidence, image
    thumbnails and sentences naming exams are withheld, and the fault list (exam ids with their
    reasons) becomes counts by status."""
    summary = dict(results.summary) if isinstance(results.summary, Mapping) else {}
    faults = summary.get("faults")
    by_status: dict[str, int] = {}
    for f in faults if isinstance(faults, list) else []:
        status = str(f.get("status", "error")) if isinstance(f, Mapping) else "error"
        by_status[status] = by_status.get(status, 0) + 1
    summary["faults"] = []
    summary["faults_by_status"] = dict(sorted(by_status.items()))
    section = summary.get("programme_impact")
    if isinstance(section, Mapping) and "not_computed" in section:
        # why the analysis failed may name an exam; its figures, when computed, are aggregates
        summary["programme_impact"] = {"not_computed": PROGRAMME_NOT_COMPUTED}
    summary["audience"] = "vendor"
    summary["withheld"] = WITHHELD_NOTE
    return dataclasses.replace(
        results,
        criteria=[vendor_criterion(c) for c in results.criteria],
        summary=summary,
    )


__all__ = [
    "AUDIENCES",
    "DISCLOSURE",
    "VENDOR_DIR",
    "VENDOR_FILES",
    "Disclosure",
    "vendor_copy",
    "vendor_criterion",
]
