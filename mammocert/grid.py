"""A fixed perturbation grid: every chosen exam under every condition, judged as the standard judges.

An ``invariance`` criterion lets Hypothesis draw 12-15 (exam, perturbation) pairs. That finds a
model that breaks on many exams, but one that breaks on 5 % of them passes 15 draws 46 % of the
time (0.95^15). Before a model is submitted (or a criterion's example count is set), one wants
the rate itself: this runs a fixed set of exams, evenly spread over the sorted exam ids, under
fixed conditions at the ends of each relation's clinical range, through the same journaled
runner, and judges each pair with the relation's own ``check`` and the standard's tolerance.

``mammocert grid --vendor PKG --cases DIR [--standard STD] [--exams N] [--condition ID ...]
[--journal J] [--out grid.json]`` prints one line per condition and per relation, writes every
pair to ``--out`` (JSON), and exits 0 when nothing failed, 1 when something did, 2 on bad input.
The conditions are each relation's ``Relation.grid``, in registry order.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conformance.criteria.decision_stability import flip
from harness.cases.manifest import Manifest, load_manifest
from harness.errors import UsageError
from harness.fsio import check_output_file, write_atomic
from harness.journal import Journal, model_digest
from harness.perturb.registry import RELATIONS, apply_condition, parse_condition
from harness.perturb.relation import condition_id
from harness.predictions import ORIGINAL, Prediction
from harness.resources import DEMO_STANDARD
from harness.standard import Standard, load_standard
from harness.stats.proportions import clopper_pearson

DEFAULT_STANDARD = DEMO_STANDARD
DEFAULT_EXAMS = 60

# Every relation's grid points, in registry order.
DEFAULT_GRID: tuple[Any, ...] = tuple(p for rel in RELATIONS.values() for p in rel.grid)


@dataclass(frozen=True)
class InvarianceCriterion:
    """The standard's criterion for one relation: an ``invariance`` criterion (its tolerance), a
    ``decision_stability`` one (``decision``: a pair fails when the recall decision at the
    vendor's operating point flips) or an ``insertion_response`` one (the lesion must raise the
    score: the relation's own check with tolerance 0)."""

    criterion: str
    tolerance: float
    examples: int  # its Hypothesis example count, or its sampled exams
    decision: bool = False


@dataclass(frozen=True)
class Pair:
    """One exam under one condition, judged."""

    exam_id: str
    condition: str
    ok: bool
    change: float  # largest exam/breast score change (inf when a score is missing)
    detail: str


@dataclass(frozen=True)
class RelationSummary:
    """All pairs of one relation, against the criterion that tests it."""

    relation: str
    criterion: InvarianceCriterion
    pairs: int
    failed: int
    upper95: float  # Clopper-Pearson upper bound of the failure rate
    miss: float  # chance that ``examples`` independent draws at the observed rate find no failure


def sample_exams(manifest: Manifest, n: int) -> list[str]:
    """``n`` exam ids evenly spread over the sorted ids (all when ``n`` >= the set)."""
    ids = sorted(e.exam_id for e in manifest.exams)
    if n <= 0:
        raise UsageError(f"--exams {n}: must be at least 1")
    if n >= len(ids):
        return ids
    return [ids[(i * len(ids)) // n] for i in range(n)]


def criteria_by_relation(standard: Standard) -> dict[str, InvarianceCriterion]:
    """relation -> the standard's (first) invariance criterion for it."""
    out: dict[str, InvarianceCriterion] = {}
    for c in standard.criteria:
        if c.kind == "invariance":
            out.setdefault(
                str(c.params["relation"]),
                InvarianceCriterion(
                    c.id, float(c.params.get("tolerance", 0.0)), int(c.params["examples"])
                ),
            )
        elif c.kind == "decision_stability":
            out.setdefault(
                str(c.params["relation"]),
                InvarianceCriterion(c.id, 0.0, int(c.params["exams"]), decision=True),
            )
        elif c.kind == "insertion_response":
            out.setdefault(
                "lesion_insertion", InvarianceCriterion(c.id, 0.0, int(c.params["exams"]))
            )
    return out


def relation_of(condition: str) -> str:
    return condition.partition(":")[0]


def grid_conditions(
    conditions: Sequence[str] | None, tested: Mapping[str, InvarianceCriterion]
) -> list[str]:
    """Validated condition ids: the given ones, else the default grid; only relations the
    standard has an invariance criterion for (nothing to judge them against otherwise)."""
    if conditions:
        ids = []
        for text in conditions:
            rel, params = parse_condition(text)
            if rel.name not in tested:
                raise UsageError(
                    f"--condition {text}: the standard has no invariance criterion for {rel.name}; "
                    f"use one of {', '.join(sorted(tested)) or '(none)'}"
                )
            ids.append(condition_id(params))
    else:
        ids = [condition_id(p) for p in DEFAULT_GRID if p.relation in tested]
    if not ids:
        raise UsageError("the standard has no invariance criteria; pass --standard with some")
    return list(dict.fromkeys(ids))


def judge(
    preds: Sequence[Prediction],
    labels: Mapping[str, int],
    tested: Mapping[str, InvarianceCriterion],
    operating_point: float | None = None,
) -> list[Pair]:
    """Each perturbed prediction against the exam's original, with its relation's check (or, for
    a decision_stability criterion, the recall decision at ``operating_point``), on the exams the
    relation judges (``Relation.eligible``, as the criterion)."""
    before = {p.exam_id: p for p in preds if p.condition == ORIGINAL}
    pairs = []
    for p in preds:
        if p.condition == ORIGINAL or p.exam_id not in before:
            continue
        rel, params = parse_condition(p.condition)
        if not rel.eligible(labels[p.exam_id]):
            continue
        b = before[p.exam_id]
        if tested[rel.name].decision:
            if operating_point is None:
                raise UsageError(
                    f"{p.condition}: judging a recall decision needs an operating point"
                )
            flipped, detail = flip(b, p, operating_point)
            ok = not flipped
        else:
            ok, detail = rel.check(b, p, tested[rel.name].tolerance, params)
        change, _ = rel.change(b, p)
        pairs.append(Pair(p.exam_id, p.condition, ok, change, detail))
    return pairs


def summarise(
    pairs: Sequence[Pair], tested: Mapping[str, InvarianceCriterion]
) -> list[RelationSummary]:
    out = []
    for rel in sorted({relation_of(p.condition) for p in pairs}):
        mine = [p for p in pairs if relation_of(p.condition) == rel]
        failed = sum(not p.ok for p in mine)
        c = tested[rel]
        out.append(
            RelationSummary(
                rel,
                c,
                len(mine),
                failed,
                clopper_pearson(failed, len(mine))[1],
                (1.0 - failed / len(mine)) ** c.examples,
            )
        )
    return out


def examples_to_catch(rate: float, power: float = 0.95) -> int | None:
    """Independent draws needed to hit at least one failure with probability ``power``."""
    if rate <= 0.0:
        return None
    if rate >= 1.0:
        return 1
    return math.ceil(math.log(1.0 - power) / math.log(1.0 - rate))


def report_lines(pairs: Sequence[Pair], summaries: Sequence[RelationSummary]) -> list[str]:
    """The printed table: per condition, then per relation."""
    conds = list(dict.fromkeys(p.condition for p in pairs))
    w = max([len("condition"), *map(len, conds)])
    lines = [f"{'condition':{w}} {'pairs':>5} {'failed':>6} {'largest change':>14}  worst exam"]
    for cond in conds:
        mine = [p for p in pairs if p.condition == cond]
        worst = max(mine, key=lambda p: (not p.ok, p.change))
        lines.append(
            f"{cond:{w}} {len(mine):>5} {sum(not p.ok for p in mine):>6} "
            f"{max(p.change for p in mine):>14.4g}  {worst.exam_id}: {worst.detail}"
        )
    for s in summaries:
        c = s.criterion
        judged = "recall decision" if c.decision else f"tolerance {c.tolerance:g}"
        line = (
            f"{s.relation} ({c.criterion}, {judged}): {s.failed}/{s.pairs} failed "
            f"({100 * s.failed / s.pairs:.1f} %, 95 % upper bound {100 * s.upper95:.1f} %)"
        )
        if s.failed:
            need = examples_to_catch(s.failed / s.pairs)
            line += (
                f"; at that rate its {c.examples} examples all miss with probability "
                f"{s.miss:.2f}, and {need} catch it 95 % of the time"
            )
        lines.append(line)
    return lines


def run_grid(
    vendor: Path,
    cases: Path,
    standard: Path = DEFAULT_STANDARD,
    exams: int = DEFAULT_EXAMS,
    conditions: Sequence[str] | None = None,
    journal: Path | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[list[Pair], list[RelationSummary]]:
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    std = load_standard(standard)
    tested = criteria_by_relation(std)
    conds = grid_conditions(conditions, tested)
    manifest = load_manifest(cases)
    ids = sample_exams(manifest, exams)
    pkg = load_vendor_package(vendor)
    adapter = open_adapter(pkg, device)
    try:
        opened = (
            nullcontext()
            if journal is None
            else Journal(journal, model_digest(adapter.info.model_digests))
        )
        with opened as j:
            preds = run_predictions(
                adapter,
                manifest,
                [ORIGINAL, *conds],
                journal=j,
                transform=apply_condition,
                exam_ids=ids,
                progress=progress,
            )
    finally:
        adapter.close()
    pairs = judge(preds, {e.exam_id: e.label for e in manifest.exams}, tested, pkg.operating_point)
    return pairs, summarise(pairs, tested)


def grid_cli(args: argparse.Namespace) -> int:
    """``mammocert grid`` (options in mammocert/cli.py): 0 when every pair held, 1 when any
    failed; bad input raises UsageError (2)."""
    out = check_output_file(Path(args.out), "--out") if args.out else None
    if args.journal:
        check_output_file(Path(args.journal), "--journal")
    standard = Path(args.standard) if args.standard else DEFAULT_STANDARD
    pairs, summaries = run_grid(
        Path(args.vendor),
        Path(args.cases),
        standard,
        DEFAULT_EXAMS if args.exams is None else args.exams,
        args.condition,
        Path(args.journal) if args.journal else None,
        args.device,
    )
    print("\n".join(report_lines(pairs, summaries)))
    if out is not None:
        doc = {
            "vendor": args.vendor,
            "cases": args.cases,
            "standard": str(standard),
            "relations": [asdict(s) for s in summaries],
            "pairs": [
                {**asdict(p), "change": p.change if math.isfinite(p.change) else None}
                for p in pairs
            ],
        }
        write_atomic(out, (json.dumps(doc, indent=1) + "\n").encode("utf-8"), "--out")
    return 0 if all(p.ok for p in pairs) else 1
