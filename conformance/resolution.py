"""Criteria that no model could pass on the set: "not resolvable", never the model's failure.

A criterion held to a confidence bound can ask more than a set can show: with 40 exams and no
technical failure at all, the Clopper-Pearson upper bound is 8.8 %, so "upper bound ≤ 2 %" fails
whatever the model does. Blaming the model for that would be wrong; passing it would be wrong too.
When a criterion fails, it is judged again for a perfect result on the same set — ``standard
bar``'s idealised model that recalls every cancer and no non-cancer, all exams read — and when
that fails as well the outcome is ``error`` (not passed) with the words "not resolvable on this
set" and the number of exams, with the set's mix of cancers and non-cancers, a perfect result
would need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from conformance import bar
from conformance.judging import judge
from conformance.outcome import not_resolvable_result
from harness import passif
from harness.cases.manifest import Manifest
from harness.results import CriterionResult
from harness.standard import CriterionSpec, Standard

# Kinds for which bar's idealised model (every cancer recalled above every non-cancer, every
# exam read, distinct scores) is the best result any model can give: the operating-point kinds
# but recall rate (fewer recalls can pass a bound on the recall rate that recalling every cancer
# fails), the AUC, technical failures and degenerate output. Kinds that need more than exam
# scores (breast scores, marks, timings, the running model) or whose best result depends on the
# scores' values (score bands) are not judged for resolution.
KINDS: tuple[str, ...] = (
    *(k for k in bar.KINDS if k != "recall_rate"),
    "auc",
    "technical_failure_rate",
    "degenerate_output",
)
MAX_GROWTH = 64  # sets up to 64 times as large are tried for "needs at least N exams"


@dataclass(frozen=True)
class Resolution:
    """Why a criterion cannot be resolved on a set, and what set could resolve it."""

    n_exams: int
    perfect_failed: tuple[str, ...]  # what a perfect result misses, in passif's words
    needs_exams: int | None  # None: not even MAX_GROWTH times the set would do


def grown(manifest: Manifest, n: int) -> Manifest:
    """A set of ``n`` exams with this one's mix: its exams repeated in order (ids made unique)."""
    exams = manifest.exams
    return dataclasses.replace(
        manifest,
        exams=tuple(
            exams[i % len(exams)]
            if i < len(exams)
            else dataclasses.replace(
                exams[i % len(exams)],
                exam_id=f"{exams[i % len(exams)].exam_id}~{i // len(exams)}",
            )
            for i in range(n)
        ),
    )


def perfect(standard: Standard, manifest: Manifest, spec: CriterionSpec) -> CriterionResult:
    """The criterion judged for a perfect result on ``manifest`` (bar's idealised model)."""
    n_pos = sum(e.label for e in manifest.exams)
    preds = bar.idealised_predictions(manifest, n_pos, 0)
    return judge(standard, manifest, preds, bar.OPERATING_POINT, [spec])[0]


def resolution(standard: Standard, manifest: Manifest, spec: CriterionSpec) -> Resolution | None:
    """None when a perfect result passes on the set (or the kind is not judged for it);
    otherwise what a perfect result misses and the fewest exams with which it would pass."""
    if spec.kind not in KINDS or spec.params.get("level") == "breast" or not manifest.exams:
        return None  # the idealised model has exam scores only
    best = perfect(standard, manifest, spec)
    if best.outcome != "failed":  # passes, or cannot be evaluated even for a perfect model
        return None
    measured = best.evidence.get("measured", {}) if isinstance(best.evidence, dict) else {}
    try:
        _, failed = passif.check(spec.pass_if, measured)
    except (passif.MissingMeasurement, ValueError):
        failed = []
    n = len(manifest.exams)

    def passes(size: int) -> bool:
        return perfect(standard, grown(manifest, size), spec).outcome == "passed"

    # double until a perfect result passes, then bisect between the last two sizes
    lo, hi = n, 2 * n
    while hi <= MAX_GROWTH * n and not passes(hi):
        lo, hi = hi, 2 * hi
    needs: int | None = None
    if hi <= MAX_GROWTH * n:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(mid) else (mid, hi)
        needs = hi
    return Resolution(n, tuple(failed), needs)


def settle(
    standard: Standard, manifest: Manifest, spec: CriterionSpec, res: CriterionResult
) -> CriterionResult:
    """``res``, or its "not resolvable on this set" form when even a perfect result fails."""
    if res.outcome != "failed":
        return res
    why = resolution(standard, manifest, spec)
    if why is None:
        return res
    return not_resolvable_result(
        res, why.perfect_failed, why.n_exams, why.needs_exams, MAX_GROWTH * why.n_exams
    )


def settle_all(
    standard: Standard,
    manifest: Manifest,
    specs: Sequence[CriterionSpec],
    results: Sequence[CriterionResult],
) -> list[CriterionResult]:
    return [settle(standard, manifest, s, r) for s, r in zip(specs, results, strict=True)]


__all__ = ["KINDS", "MAX_GROWTH", "Resolution", "grown", "perfect", "resolution", "settle"]
