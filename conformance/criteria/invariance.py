"""Invariance (metamorphic relations driven by Hypothesis) and robustness sweeps.

For an ``invariance`` criterion Hypothesis draws (exam, perturbation parameters) pairs, runs the
perturbed exam through the journaled runner and checks the relation against the exam's original
prediction. On a violation Hypothesis shrinks to the mildest perturbation and simplest exam that
still break the model; that minimal counterexample is the evidence. Seeds and example counts come
from the standard; the Hypothesis example database is off except in self-test mode.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from conformance.table import build_table
from harness import stats
from harness.results import CriterionResult
from harness.standard import CriterionSpec

if TYPE_CHECKING:
    from harness.perturb.relation import Relation


def _relations() -> dict[str, Any]:
    from harness.perturb import RELATIONS

    return RELATIONS


def _thumbnail(ds: Any, size: int = 128) -> str:
    """A small PNG data URI of an image's presentation pixels (for the report's counterexample)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from harness.pixels import presentation_pixels

    img = presentation_pixels(ds)
    step = max(1, int(np.ceil(max(img.shape) / size)))
    small = img[::step, ::step]
    buf = io.BytesIO()
    plt.imsave(
        buf, small, cmap="gray", vmin=0.0, vmax=1.0, format="png", metadata={"Software": None}
    )
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnails(ctx: EvaluationContext, exam_id: str, transform: Any) -> dict[str, str]:
    from harness.exam_input import load_exam

    try:
        exam = ctx.manifest.exam(exam_id)
        before = load_exam(ctx.manifest, exam)
        after = transform(load_exam(ctx.manifest, exam))
        return {
            "before": _thumbnail(before.images[0][1]),
            "after": _thumbnail(after.images[0][1]),
            "image": before.images[0][0].file,
        }
    except Exception as exc:  # a thumbnail is illustration only; never lose the verdict over it
        return {"error": f"thumbnail unavailable: {type(exc).__name__}: {exc}"}


def _eligible(ctx: EvaluationContext, relation: Relation[Any]) -> list[str]:
    t = ctx.table()
    return [
        e.exam_id
        for e, ok in zip(t.exams, t.readable, strict=True)
        if ok and relation.eligible(e.label)
    ]


@evaluator(
    "invariance",
    family="invariance",
    section="Invariance (metamorphic tests)",
    method=(
        "Property-based (metamorphic) tests: transformations that must not change the "
        "clinical answer are generated at random and shrunk to the smallest failing case."
    ),
    pass_keys=("max_violations",),
    needs_live=True,
    replayable=True,
    searches=True,
)
def invariance(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    from hypothesis import given, seed
    from hypothesis import strategies as st

    live = ctx.require_live(f"the {spec.params['relation']} relation")
    rel = _relations()[spec.params["relation"]]
    tol = float(spec.params.get("tolerance", 0.0))
    examples = int(spec.params["examples"])
    eligible = _eligible(ctx, rel)
    if not eligible:
        raise NotEvaluable("no exam the model read successfully is eligible for this relation")
    tried: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    database_dir = live.journal.path.parent / ".hypothesis" if live.journal is not None else None

    @seed(ctx.standard.seed ^ zlib.crc32(spec.id.encode("utf-8")))
    @ctx.hypothesis.settings(examples, database_dir)
    @given(exam_id=st.sampled_from(eligible), params=rel.strategy)
    def relation_holds(exam_id: str, params: Any) -> None:
        cond, transform = rel.condition(params)
        after = live.run(cond, transform, [exam_id])[exam_id]
        before = live.original(exam_id)
        ok, detail = rel.check(before, after, tol, params)
        row = {
            "exam_id": exam_id,
            "condition": cond,
            "parameters": dataclasses.asdict(params),
            "score_before": before.score,
            "score_after": after.score,
            "status_after": after.status,
            "breasts_before": dict(before.breasts),
            "breasts_after": dict(after.breasts),
            "detail": detail,
        }
        tried.append(row)
        if not ok:
            failures.append(row)
            raise AssertionError(detail)

    counterexample = None
    try:
        ctx.hypothesis.run(relation_holds)
    except AssertionError:
        counterexample = dict(failures[-1])  # Hypothesis replays the shrunk example last
        params_type = rel.params_type(**counterexample["parameters"])
        counterexample["relation"] = rel.name
        counterexample["expectation"] = rel.expectation
        counterexample["thumbnails"] = _thumbnails(
            ctx, counterexample["exam_id"], rel.transform(params_type)
        )
    changes = [
        abs(r["score_after"] - r["score_before"])
        for r in tried
        if r["score_after"] is not None and r["score_before"] is not None
    ]
    worst = max(changes) if changes else 0.0
    violations = 1 if counterexample else 0
    measured = {"value": worst, "ci": None, "violations": violations}
    if counterexample:
        summary = (
            f"{rel.expectation} — broken: on exam {counterexample['exam_id']} the perturbation "
            f"{counterexample['condition']} gives {counterexample['detail']} (minimal case found by Hypothesis)."
        )
    else:
        summary = (
            f"{rel.expectation} — held on all {len(tried)} perturbed exams tried "
            f"(largest exam-score change {worst:.3g}, tolerance {tol:g})."
        )
    evidence = {
        "relation": rel.name,
        "relation_kind": rel.kind,
        "tolerance": tol,
        "examples": examples,
        "examples_run": len(tried),
        "counterexample": counterexample,
        "method": f"Hypothesis property test, {examples} examples, seeded from the standard; shrinking to a minimal counterexample",
    }
    return result(spec, measured, len(tried), summary, evidence)


@evaluator(
    "robustness_sweep",
    family="invariance",
    section="Robustness to image variation",
    method=(
        "The reference set re-scored under increasing image perturbation; the criterion "
        "bounds the drop in AUC and sensitivity from the unperturbed images."
    ),
    pass_keys=("max_auc_drop", "max_sensitivity_drop"),
    needs_live=True,
    replayable=True,
)
def robustness_sweep(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    live = ctx.require_live(f"the {spec.params['relation']} sweep")
    rel = _relations()[spec.params["relation"]]
    if rel.at_level is None:
        raise NotEvaluable(f"relation {rel.name} has no severity grid")
    base = ctx.table()
    # A drop needs a baseline: without a valid score of a cancer and of a normal exam the
    # original AUC is the worst-case floor, nothing can fall below it, and a "pass" would be empty.
    for label, what in ((1, "cancer"), (0, "normal")):
        if not base.readable[base.labels == label].any():
            raise NotEvaluable(
                f"the model read no {what} exam of the original set successfully, so there is "
                "no baseline AUC to measure a drop from"
            )
    base_auc = stats.delong(base.scores, base.labels).auc
    base_sens = float(base.flags(ctx.operating_point)[base.labels == 1].mean())
    levels: list[dict[str, Any]] = []
    for level in spec.params["levels"]:
        cond, transform = rel.condition(rel.at_level(float(level)))
        t = build_table(ctx.manifest, live.run(cond, transform, progress=True).values(), cond)
        r = stats.delong(t.scores, t.labels)
        sens = float(t.flags(ctx.operating_point)[t.labels == 1].mean())
        levels.append(
            {
                "level": float(level),
                "condition": cond,
                "auc": r.auc,
                "ci": [r.ci_low, r.ci_high],
                "sensitivity": sens,
                "unreadable": t.n_unreadable,
            }
        )
    auc_drop = max(0.0, max(base_auc - lv["auc"] for lv in levels))
    sens_drop = max(0.0, max(base_sens - lv["sensitivity"] for lv in levels))
    measured = {"value": auc_drop, "ci": None, "auc_drop": auc_drop, "sensitivity_drop": sens_drop}
    worst = min(levels, key=lambda lv: lv["auc"])
    grid = ", ".join(f"{lv['level']:g}" for lv in levels)
    summary = (
        f"Across the {rel.name} severity grid ({grid}) the AUC falls "
        f"by at most {auc_drop:.3f} from {base_auc:.3f} (worst at level {worst['level']:g}) and sensitivity by at most {sens_drop:.1%}."
    )
    evidence = {
        "relation": rel.name,
        "baseline": {"auc": base_auc, "sensitivity": base_sens},
        "levels": levels,
        "method": "every reference exam re-run at each severity level; DeLong AUC per level",
    }
    return result(spec, measured, base.n * len(levels), summary, evidence)
