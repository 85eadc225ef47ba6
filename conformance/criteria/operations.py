"""Operational criteria: technical failures, latency (from the predictions), and the ones that talk
to the model: determinism, caching by UID, rejection of invalid inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.context import EvaluationContext
from conformance.outcome import NotApplicable, NotEvaluable, result
from conformance.registry import evaluator
from harness import stats
from harness.perturb.relation import largest_change
from harness.results import CriterionResult
from harness.standard import CriterionSpec


@evaluator(
    "technical_failure_rate",
    family="operations",
    section="Technical reliability",
    method=(
        "Share of exams with a technical failure (error or timeout), with an exact (Clopper-"
        "Pearson) or Wilson interval."
    ),
    pass_keys=("ci_upper_lte", "value_lte"),
)
def technical_failure_rate(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    failures = t.unreadable_list()
    k, n = len(failures), t.n
    conf = float(spec.params["ci"]["level"])
    ci_fn = (
        stats.clopper_pearson if spec.params["ci"]["method"] == "clopper_pearson" else stats.wilson
    )
    lo, hi = ci_fn(k, n, conf)
    by_reason: dict[str, int] = {}
    for f in failures:
        key = f"{f['status']}: {(f['reason'] or '').split(';')[0][:80]}"
        by_reason[key] = by_reason.get(key, 0) + 1
    measured = {"value": k / n, "ci": (lo, hi), "ci_upper": hi, "ci_lower": lo}
    summary = (
        f"The AI returned no valid result for {k} of {n} reference exams ({k / n:.1%}; "
        f"{conf:.0%} CI up to {hi:.1%}) because of errors, timeouts or rejections of valid mammograms."
    )
    return result(
        spec,
        measured,
        n,
        summary,
        {
            "failures": failures[:100],
            "by_reason": by_reason,
            "method": f"{spec.params['ci']['method'].replace('_', '-')} {conf:.0%} interval",
        },
    )


@evaluator(
    "latency",
    family="operations",
    section="Technical reliability",
    method=(
        "Wall-clock time per exam as measured by the harness; median (p50) and 95th "
        "percentile (p95)."
    ),
    pass_keys=("p50_lte_s", "p95_lte_s"),
)
def latency(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    lat = np.array(
        [p.latency_s for p in t.predictions if p.latency_s is not None], dtype=np.float64
    )
    if len(lat) == 0:
        raise NotEvaluable(
            "no per-exam latencies were measured (the predictions carry no latency_s)"
        )
    p50, p95 = (float(v) for v in np.quantile(lat, [0.5, 0.95]))
    counts, edges = np.histogram(lat, bins=min(30, max(5, len(lat) // 5)))
    measured = {"value": p95, "ci": None, "p50_s": p50, "p95_s": p95}
    summary = f"Per-exam time to result, measured by the harness: median {p50:.2f} s, 95th percentile {p95:.2f} s over {len(lat)} exams."
    return result(
        spec,
        measured,
        len(lat),
        summary,
        {
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            "max_s": float(lat.max()),
            "method": "wall-clock per exam from prepared input to result, quantiles (linear)",
        },
    )


def _sample(
    ctx: EvaluationContext, spec: CriterionSpec, n: int, readable_only: bool = True
) -> list[str]:
    """A seeded sample of exam ids (sorted), from exams the model read when ``readable_only``."""
    t = ctx.table()
    ids = [e.exam_id for e, ok in zip(t.exams, t.readable, strict=True) if ok or not readable_only]
    if not ids:
        raise NotEvaluable("the model read no reference exam successfully")
    rng = ctx.rng(spec.id)
    return sorted(rng.choice(ids, size=min(n, len(ids)), replace=False).tolist())


def _identity(exam: Any) -> Any:
    return exam


@evaluator(
    "determinism",
    family="operations",
    section="Technical reliability",
    method="The same exams scored repeatedly; the largest score difference is reported.",
    pass_keys=("max_abs_diff_lte",),
    needs_live=True,
    replayable=True,
)
def determinism(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    """Every exam again (repeat 1..k), the second pass one exam at a time in a shuffled order, so
    state carried between exams or a random op in the model shows up."""
    live = ctx.require_live("determinism")
    t = ctx.table()
    ids = [e.exam_id for e, ok in zip(t.exams, t.readable, strict=True) if ok]
    if not ids:
        raise NotEvaluable("the model read no reference exam successfully")
    repeats = int(spec.params["repeats"])
    rows: list[dict[str, Any]] = []
    rng = ctx.rng(spec.id)
    for r in range(1, repeats + 1):
        cond = f"determinism:repeat={r}"
        if r % 2 == 1:
            again = live.run(cond, _identity, ids)
        else:
            again = {}
            for exam_id in rng.permutation(ids).tolist():
                again.update(live.run(cond, _identity, [exam_id]))
        for exam_id in ids:
            rows.append(
                {
                    "exam_id": exam_id,
                    "repeat": r,
                    "diff": largest_change(live.original(exam_id), again[exam_id])[0],
                }
            )
    worst = max(rows, key=lambda x: x["diff"])
    measured = {"value": worst["diff"], "ci": None, "max_abs_diff": worst["diff"]}
    changed = [x for x in rows if x["diff"] > float(spec.pass_if.get("max_abs_diff_lte", 0))]
    summary = (
        f"The same {len(ids)} exams were scored {repeats} more time(s) (in another order); the largest change "
        f"of any score was {worst['diff']:.3g}"
        + (f", on exam {worst['exam_id']}." if worst["diff"] > 0 else ".")
    )
    return result(
        spec,
        measured,
        len(rows),
        summary,
        {
            "repeats": repeats,
            "changed": changed[:50],
            "method": "re-run of every readable exam; odd repeats in set order, even repeats one exam at a time shuffled",
        },
    )


@evaluator(
    "caching",
    family="operations",
    section="Technical reliability",
    method="Scores of repeated submissions compared with first submissions.",
    pass_keys=("max_abs_diff_lte",),
    needs_live=True,
    replayable=True,
)
def caching(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    """(a) fresh UIDs must not change the score; (b) another exam's pixels under this exam's UIDs
    must get the other exam's score: the answer follows the pixels, not a cache keyed on UIDs."""
    from harness.perturb.caching import fresh_uids, pixels_of

    live = ctx.require_live("caching")
    ids = _sample(ctx, spec, int(spec.params["examples"]))
    rows: list[dict[str, Any]] = []
    for i, exam_id in enumerate(ids):
        cond, transform = fresh_uids(ctx.standard.seed, exam_id)
        after = live.run(cond, transform, [exam_id])[exam_id]
        rows.append(
            {
                "exam_id": exam_id,
                "test": "fresh UIDs",
                "expected": live.original(exam_id).score,
                "got": after.score,
                "diff": largest_change(live.original(exam_id), after)[0],
            }
        )
        donor = ids[(i + 1) % len(ids)]
        if donor == exam_id:
            continue
        cond, transform = pixels_of(ctx.manifest, donor)
        after = live.run(cond, transform, [exam_id])[exam_id]
        rows.append(
            {
                "exam_id": exam_id,
                "test": f"pixels of {donor} under these UIDs",
                "expected": live.original(donor).score,
                "got": after.score,
                "diff": largest_change(live.original(donor), after)[0],
            }
        )
    worst = max(rows, key=lambda x: x["diff"])
    measured = {"value": worst["diff"], "ci": None, "max_abs_diff": worst["diff"]}
    summary = (
        f"{len(rows)} resubmissions with fresh UIDs or swapped pixels: the score followed the pixels with a "
        f"largest deviation of {worst['diff']:.3g} ({worst['test']}, exam {worst['exam_id']})."
    )
    return result(
        spec,
        measured,
        len(rows),
        summary,
        {
            "checks": rows[:100],
            "method": "resubmission with fresh Study/Series/SOP UIDs, and with another exam's pixels under the original UIDs",
        },
    )


@evaluator(
    "input_rejection",
    family="operations",
    section="Technical reliability",
    method=(
        "Invalid or out-of-scope inputs are submitted; the vendor's product must decline them. "
        "Judged only where the product receives the DICOM objects itself (not for an ONNX "
        "package, whose inputs the harness checks and builds)."
    ),
    pass_keys=("min_rejected_fraction",),
    needs_live=True,
    replayable=True,
)
def input_rejection(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    """Every refusal must be the vendor's. An adapter that builds the model's input itself (an
    ONNX package receives tensors) says so with ``harness_checks_input`` (the live model carries
    it; a bundle records it for the replay in ``vendor``): its intended-use check
    is the harness's, refusing a chest CR before the model could see it, so crediting those
    refusals would credit the harness to the vendor."""
    from harness.perturb.invalid import INVALID_BUILDERS

    live = ctx.require_live("input rejection")
    if getattr(live, "harness_checks_input", False):
        raise NotApplicable(
            live.info.interface,
            "its model receives input tensors that the harness builds, and the harness's own "
            "intended-use check refuses these inputs before the model sees them, so no refusal "
            "here would be the vendor's; input rejection is judged for products that receive the "
            "DICOM objects themselves",
        )
    ids = _sample(ctx, spec, int(spec.params.get("examples", 5)))
    rows: list[dict[str, Any]] = []
    for variant in spec.params["variants"]:
        build = INVALID_BUILDERS[variant]
        got = live.run(f"invalid:{variant}", lambda exam, build=build: build(exam).exam, ids)
        for exam_id in ids:
            p = got[exam_id]
            rows.append(
                {
                    "variant": variant,
                    "exam_id": exam_id,
                    "status": p.status,
                    "score": p.score,
                    "reason": p.error,
                    "refused": p.status != "ok",
                }
            )
    refused = sum(r["refused"] for r in rows)
    frac = refused / len(rows)
    scored = [r for r in rows if not r["refused"]]
    measured = {"value": frac, "ci": None, "rejected_fraction": frac}
    summary = (
        f"Of {len(rows)} invalid inputs ({', '.join(spec.params['variants'])}) the AI refused {refused}"
        + (
            f" and scored {len(scored)} (e.g. {scored[0]['variant']} on {scored[0]['exam_id']} got {scored[0]['score']:.3g})."
            if scored
            else "."
        )
    )
    return result(
        spec,
        measured,
        len(rows),
        summary,
        {
            "inputs": rows,
            "method": "each reference exam turned into each invalid variant; a 'rejected' or 'error' status counts as refused",
        },
    )
