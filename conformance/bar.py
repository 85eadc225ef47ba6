"""What a standard's operating-point criteria ask of a model on a reference set (`standard bar`).

The reader and programme criteria (sensitivity at a specificity or at the operating point, with or
without a reader comparator; specificity at the operating point; recall rate, cancer detection
rate and PPV against a reader) judge a model only by which exams it recalls. For each number of
false positives ``f``, this finds the fewest cancers ``k`` a model must recall for all of them to
pass, with the suite's own evaluators, on an idealised model: it recalls the ``k`` most
conspicuous cancers (attribute ``conspicuity`` where the set has it, else manifest order), which
the simulated readers also tend to find, so a paired comparison with a reader is favourable to
it; it recalls ``f`` negatives; every other exam scores below all of them. A real model needs
about this much or more. It is how a standard's author checks that the criteria can be met on
the set they pin, before any vendor runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.criteria import OPERATING_POINT_KINDS
from conformance.engine import judge
from harness.cases.manifest import Exam, Manifest
from harness.errors import UsageError
from harness.predictions import ORIGINAL, Prediction
from harness.standard import Standard

# the kinds declared with operating_point=True (conformance.registry.evaluator)
KINDS = OPERATING_POINT_KINDS
OPERATING_POINT = 0.5


@dataclass(frozen=True)
class BarRow:
    """The least a model recalling ``false_positives`` negatives must do on the set."""

    false_positives: int
    specificity: float
    min_cancers: int | None  # None: no number of cancers passes at this specificity
    sensitivity: float | None
    # what fails with one cancer fewer (or with every cancer, when none passes)
    failing_below: tuple[str, ...]


def _ranked(exams: Iterable[Exam]) -> list[Exam]:
    return sorted(exams, key=lambda e: -float(e.attributes.get("conspicuity") or 0.0))


def idealised_predictions(
    manifest: Manifest, cancers: int, false_positives: int
) -> list[Prediction]:
    """Scores that recall the ``cancers`` most conspicuous cancers and ``false_positives`` negatives
    (benign findings first, as readers recall them) at ``OPERATING_POINT``; all distinct."""
    pos = _ranked(e for e in manifest.exams if e.label == 1)
    neg = sorted((e for e in manifest.exams if e.label == 0), key=lambda e: e.truth != "benign")
    if not 0 <= cancers <= len(pos) or not 0 <= false_positives <= len(neg):
        raise UsageError(
            f"the set has {len(pos)} cancers and {len(neg)} negatives; "
            f"cannot recall {cancers} and {false_positives}"
        )
    n = len(manifest.exams)
    score: dict[str, float] = {}
    # recalled: cancers above the false positives, all in [0.75, 1); the rest below 0.25
    for i, e in enumerate(pos[:cancers]):
        score[e.exam_id] = 0.99 - 0.2 * i / n
    for i, e in enumerate(neg[:false_positives]):
        score[e.exam_id] = 0.78 - 0.02 * i / n
    for i, e in enumerate(pos[cancers:] + neg[false_positives:]):
        score[e.exam_id] = 0.24 - 0.2 * i / n
    return [
        Prediction(e.exam_id, ORIGINAL, "ok", score[e.exam_id], {}, (), None, None)
        for e in manifest.exams
    ]


def outcomes(
    standard: Standard, manifest: Manifest, cancers: int, false_positives: int
) -> dict[str, str]:
    """Criterion id -> outcome for the idealised model, over the standard's criteria of ``KINDS``."""
    preds = idealised_predictions(manifest, cancers, false_positives)
    specs = [c for c in standard.criteria if c.kind in KINDS]
    return {r.id: r.outcome for r in judge(standard, manifest, preds, OPERATING_POINT, specs)}


def bar(standard: Standard, manifest: Manifest, false_positives: Sequence[int]) -> list[BarRow]:
    """One row per false-positive count: the fewest cancers with which every criterion passes.

    Bisection over the number of cancers, on the criteria that pass when every cancer is
    recalled: recalling one more cancer never hurts them (sensitivity, CDR, PPV, non-inferiority).
    Recall rate is the exception (it rises with every recall), so the answer is checked whole."""
    if not any(c.kind in KINDS for c in standard.criteria):
        raise UsageError(
            f"{standard.path}: no criterion of the kinds {', '.join(KINDS)}; nothing to bar"
        )
    n_pos = sum(e.label for e in manifest.exams)
    n_neg = len(manifest.exams) - n_pos
    rows = []
    seen: dict[tuple[int, int], dict[str, str]] = {}  # each (cancers, false positives) once

    def at(k: int, f: int) -> dict[str, str]:
        if (k, f) not in seen:
            seen[k, f] = outcomes(standard, manifest, k, f)
        return seen[k, f]

    for f in false_positives:
        rising = {cid for cid, v in at(n_pos, f).items() if v == "passed"}
        lo, hi = 0, n_pos  # the rising criteria all pass at hi
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if all(at(mid, f)[c] == "passed" for c in rising) else (mid + 1, hi)
        ok = all(v == "passed" for v in at(hi, f).values())
        below = at(hi - 1, f) if ok and hi > 0 else at(n_pos, f)
        rows.append(
            BarRow(
                f,
                (n_neg - f) / n_neg,
                hi if ok else None,
                hi / n_pos if ok else None,
                tuple(cid for cid, v in below.items() if v != "passed"),
            )
        )
    return rows


def left_out(standard: Standard) -> list[tuple[str, str]]:
    """The standard's criteria bar does not judge, as (id, kind) in document order: every kind
    but the operating-point ones (AUC, subgroups, invariance, ...); `standard power` covers them."""
    return [(c.id, c.kind) for c in standard.criteria if c.kind not in KINDS]


def bar_cli(args: Any) -> int:
    """``mammocert standard bar``: print the table."""
    from harness.cases.build import planned_manifest
    from harness.cases.manifest import load_manifest
    from harness.standard import load_standard

    standard = load_standard(args.standard)
    if (args.cases is None) == (args.recipe is None):
        raise UsageError("give exactly one of --cases DIR (a built set) or --recipe FILE (planned)")
    if args.exams is not None and args.recipe is None:
        raise UsageError("--exams plans a recipe; use it with --recipe, not --cases")
    manifest = (
        load_manifest(args.cases)
        if args.cases
        else planned_manifest(Path(args.recipe), exams=args.exams)
    )
    n_pos = sum(e.label for e in manifest.exams)
    n_neg = len(manifest.exams) - n_pos
    bad = [f for f in args.false_positives if not 0 <= f <= n_neg]
    if bad:
        raise UsageError(
            f"--false-positives {bad[0]}: the set has {n_neg} negatives; give counts from 0 to {n_neg}"
        )
    print(
        f"{standard.id} {standard.version} on {manifest.id} ({len(manifest.exams)} exams, "
        f"{n_pos} cancers): the fewest cancers an idealised model must recall"
    )
    print(
        f"{'FP':>3}  {'specificity':>11}  {'cancers':>7}  {'sensitivity':>11}  failing with fewer"
    )
    for r in bar(standard, manifest, args.false_positives):
        k = "none" if r.min_cancers is None else str(r.min_cancers)
        s = "-" if r.sensitivity is None else f"{r.sensitivity:.2f}"
        print(
            f"{r.false_positives:>3}  {r.specificity:>11.3f}  {k:>7}  {s:>11}  {' '.join(r.failing_below)}"
        )
    skipped = left_out(standard)
    if skipped:
        kinds: dict[str, list[str]] = {}
        for cid, kind in skipped:
            kinds.setdefault(kind, []).append(cid)
        print(
            f"not covered ({len(skipped)} criteria; bar judges only {', '.join(KINDS)}; "
            "see `mammocert standard power`):"
        )
        for kind, ids in kinds.items():
            print(f"  {kind}: {', '.join(ids)}")
    return 0


__all__ = ["BarRow", "KINDS", "bar", "idealised_predictions", "left_out", "outcomes"]
