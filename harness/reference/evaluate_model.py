"""Evaluate a vendor package on a reference set: exam-level AUC with DeLong CI, and localisation.

``python -m harness.reference.evaluate_model --cases DIR [--vendor PKG]`` runs the package
(default: the bundled reference vendor) through the real runner and prints one JSON object:
exam-level AUC with its 95 % DeLong CI (``harness.stats.roc.delong``), counts, the fraction of
cancers whose top finding falls inside a lesion box (localisation), sensitivity and specificity at
the package's ``operating_point``, and, for the cancers flagged there, the fraction whose top
finding on a marked image hits the lesion (``harness.stats.is_hit``, r_min 10 mm); the
sensitivity at the Danish first reader's specificity (0.978, pROC's interpolation), and per group
of exams (cancers by lesion type, subtle or not; benign findings by type) the exam AUC of that
group against the normal exams: which lesions a model misses, and which benign findings it takes
for cancers, decide the high-specificity end that the reader comparisons judge;
``cancers_above_normals[f]`` counts the cancers above all but f normal exams (benign findings
left out), to set against ``mammocert standard bar``'s figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.cases.manifest import Manifest, load_manifest
from harness.errors import run_script
from harness.predictions import Prediction
from harness.resources import REFERENCE_VENDOR
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter

DEFAULT_VENDOR = REFERENCE_VENDOR


def localisation_rate(
    manifest: Manifest, preds: list[Prediction], margin_px: float = 0.0
) -> tuple[int, int]:
    """(hits, cancers with marks): top finding of the exam inside any mark box of its file."""
    by_id = {p.exam_id: p for p in preds}
    hits = total = 0
    for exam in manifest.exams:
        marks = [m for les in exam.lesions for m in les.marks]
        if exam.label != 1 or not marks:
            continue
        total += 1
        p = by_id.get(exam.exam_id)
        if p is None or p.status != "ok" or not p.findings:
            continue
        f = p.findings[0]
        if any(
            m.file == f.file
            and m.box[0] - margin_px <= f.x <= m.box[2] + margin_px
            and m.box[1] - margin_px <= f.y <= m.box[3] + margin_px
            for m in marks
        ):
            hits += 1
    return hits, total


def flagged_localisation(
    manifest: Manifest, preds: list[Prediction], threshold: float, r_min_mm: float = 10.0
) -> tuple[int, int]:
    """(hits, flagged cancers with marks): for cancers scored >= ``threshold``, whether the top finding
    on a marked image hits a mark (``harness.stats.is_hit``: inside the box or within
    max(half the box diagonal, ``r_min_mm``) of its centre)."""
    import pydicom

    from harness.stats import is_hit

    by_id = {p.exam_id: p for p in preds}
    hits = total = 0
    for exam in manifest.exams:
        marks = [m for les in exam.lesions for m in les.marks]
        p = by_id.get(exam.exam_id)
        if exam.label != 1 or not marks or p is None or p.status != "ok" or p.score < threshold:
            continue
        total += 1
        hit = False
        for file in sorted({m.file for m in marks}):
            found = [f for f in p.findings if f.file == file]
            if not found:
                continue
            top = max(found, key=lambda f: f.score)
            ref = next(r for r in exam.images if r.file == file)
            ds = pydicom.dcmread(manifest.path(ref), stop_before_pixels=True)
            sp = [float(v) for v in (ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))]
            hit |= any(is_hit(top.x, top.y, m.box, sp, r_min_mm) for m in marks if m.file == file)
        hits += int(hit)
    return hits, total


READER_SPECIFICITY = 0.978  # Danish first reader (Elhakim 2023), as standards/demo.yaml


def group_of(exam) -> str:
    """``cancer:<lesion type>[:subtle]``, ``benign:<finding>`` or ``normal``."""
    a = exam.attributes
    if exam.label == 1:
        return f"cancer:{a.get('lesion_type')}" + (":subtle" if a.get("subtle") else "")
    if exam.truth == "benign":
        return f"benign:{a.get('benign_finding')}"
    return "normal"


def by_group(manifest: Manifest, preds: list[Prediction]) -> dict:
    """Per group of exams: how many, and the AUC of its scores against the normal exams'."""
    from harness.stats.roc import auc

    scores = {p.exam_id: p.score for p in preds if p.status == "ok"}
    groups: dict[str, list[float]] = {}
    for exam in manifest.exams:
        if exam.exam_id in scores:
            groups.setdefault(group_of(exam), []).append(scores[exam.exam_id])
    normal = groups.get("normal", [])
    return {
        name: {
            "n": len(s),
            "auc_vs_normal": round(auc(s + normal, [1] * len(s) + [0] * len(normal)), 4)
            if normal and name != "normal"
            else None,
        }
        for name, s in sorted(groups.items())
    }


def cancers_above_normals(
    manifest: Manifest, preds: list[Prediction], max_false_positives: int = 5
) -> list[int]:
    """Entry f: the cancers scoring above all but f of the *normal* exams, benign findings left
    out. Set against what the model does with every negative, this is the share of its
    high-specificity losses that benign findings cause (reader and programme criteria judge
    that end)."""
    scores = {p.exam_id: p.score for p in preds if p.status == "ok"}
    normal = sorted(
        (scores[e.exam_id] for e in manifest.exams if e.truth == "normal" and e.exam_id in scores),
        reverse=True,
    )
    cancers = [scores[e.exam_id] for e in manifest.exams if e.label == 1 and e.exam_id in scores]
    return [
        sum(s > normal[f] for s in cancers) if f < len(normal) else len(cancers)
        for f in range(max_false_positives + 1)
    ]


def evaluate(cases: Path, vendor: Path = DEFAULT_VENDOR, progress: bool = False) -> dict:
    from harness.stats.roc import delong, sensitivity_at_specificity

    manifest = load_manifest(cases)
    pkg = load_vendor_package(vendor)
    adapter = open_adapter(pkg)
    try:
        preds = run_predictions(adapter, manifest, progress=progress, timeout_s=None)
    finally:
        adapter.close()
    labels = {e.exam_id: e.label for e in manifest.exams}
    ok = [p for p in preds if p.status == "ok"]
    res = delong([p.score for p in ok], [labels[p.exam_id] for p in ok])
    hits, total = localisation_rate(manifest, preds)
    op = float(pkg.operating_point)
    flag = {p.exam_id: p.score >= op for p in ok}
    pos = [flag[p.exam_id] for p in ok if labels[p.exam_id] == 1]
    neg = [not flag[p.exam_id] for p in ok if labels[p.exam_id] == 0]
    fhits, ftotal = flagged_localisation(manifest, preds, op)
    return {
        "cases": str(cases),
        "set_digest": manifest.digest,
        "vendor": pkg.name,
        "package_digest": pkg.package_digest,
        "exams": len(preds),
        "ok": len(ok),
        "auc": round(res.auc, 4),
        "ci95": [round(res.ci_low, 4), round(res.ci_high, 4)],
        "cancers": res.n_cases,
        "controls": res.n_controls,
        "localised": hits,
        "localisable": total,
        "operating_point": op,
        "sensitivity": round(sum(pos) / len(pos), 4) if pos else None,
        "specificity": round(sum(neg) / len(neg), 4) if neg else None,
        "flagged_cancers": ftotal,
        "flagged_localised": fhits,
        "flagged_localised_fraction": round(fhits / ftotal, 4) if ftotal else None,
        "sensitivity_at_reader_specificity": round(
            sensitivity_at_specificity(
                [p.score for p in ok], [labels[p.exam_id] for p in ok], READER_SPECIFICITY
            ),
            4,
        ),
        "by_group": by_group(manifest, preds),
        "cancers_above_normals": cancers_above_normals(manifest, preds),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reference.evaluate_model", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--cases", required=True, help="evaluation reference set (not the training set)"
    )
    ap.add_argument(
        "--vendor",
        default=str(DEFAULT_VENDOR),
        help="vendor package (default: the reference vendor)",
    )
    args = ap.parse_args(argv)

    def body() -> int:
        print(json.dumps(evaluate(Path(args.cases), Path(args.vendor), progress=True), indent=1))
        return 0

    return run_script(ap.prog, body)


if __name__ == "__main__":
    sys.exit(main())
