"""Operational criteria: technical failures, latency (from the predictions), and the ones that talk
to the model: determinism, caching by UID, rejection of invalid inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness import stats
from harness.results import CriterionResult
from harness.standard import CriterionSpec


@evaluator("technical_failure_rate")
def technical_failure_rate(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    failures = t.unreadable_list()
    k, n = len(failures), t.n
    conf = float(spec.params["ci"]["level"])
    ci_fn = stats.clopper_pearson if spec.params["ci"]["method"] == "clopper_pearson" else stats.wilson
    lo, hi = ci_fn(k, n, conf)
    by_reason: dict[str, int] = {}
    for f in failures:
        key = f"{f['status']}: {(f['reason'] or '').split(';')[0][:80]}"
        by_reason[key] = by_reason.get(key, 0) + 1
    measured = {"value": k / n, "ci": (lo, hi), "ci_upper": hi, "ci_lower": lo}
    summary = (f"The AI returned no valid result for {k} of {n} reference exams ({k / n:.1%}; "
               f"{conf:.0%} CI up to {hi:.1%}) because of errors, timeouts or rejections of valid mammograms.")
    return result(spec, measured, n, summary, {"failures": failures[:100], "by_reason": by_reason,
                                                "method": f"{spec.params['ci']['method'].replace('_', '-')} {conf:.0%} interval"})


@evaluator("latency")
def latency(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    lat = np.array([p.latency_s for p in t.predictions if p.latency_s is not None], dtype=np.float64)
    if len(lat) == 0:
        raise NotEvaluable("no per-exam latencies were measured (the predictions carry no latency_s)")
    p50, p95 = (float(v) for v in np.quantile(lat, [0.5, 0.95]))
    counts, edges = np.histogram(lat, bins=min(30, max(5, len(lat) // 5)))
    measured = {"value": p95, "ci": None, "p50_s": p50, "p95_s": p95}
    summary = f"Per-exam time to result, measured by the harness: median {p50:.2f} s, 95th percentile {p95:.2f} s over {len(lat)} exams."
    return result(spec, measured, len(lat), summary, {
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "max_s": float(lat.max()), "method": "wall-clock per exam from prepared input to result, quantiles (linear)"})


def _live_pairs(ctx: EvaluationContext, spec: CriterionSpec, what: str) -> Any:
    return ctx.require_live(what)
