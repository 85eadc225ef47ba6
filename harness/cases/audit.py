"""Do the simulated readers read the image? ``python -m harness.cases.audit --cases DIR``.

For a set built with ``lesion_model: birads`` (issue #30 part 2), prints:

* the readers' rates against their targets (Elhakim 2023: first reader 63.7 % / 97.8 %,
  arbitrated double reading 73.9 % / 97.9 %) with Wilson 95 % intervals;
* per lesion, the AUC of reader 1's suspicion of malignant vs benign masses, and the same AUC from
  a simple known-location pixel-feature classifier (``massfeatures``: logistic regression,
  5-fold cross-validated by lesion on the set's own mass views, per-lesion score = mean of its
  views), and the readers' excess over it (the readers may not know more than the pixels show:
  at most 0.05);
* the recall of benign findings and of cancers by descriptor, with their mean measured
  conspicuity (is a recall explained by what the finding looks like?).

``--json FILE`` also writes the figures as JSON. Exit 0 with the figures; 2 (one line) for a set
without lesion descriptors or without both malignant and benign masses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.cases.birads import descriptor_label
from harness.cases.manifest import load_manifest
from harness.cases.massfeatures import Classifier, design_signs, mass_views
from harness.errors import UsageError, run_script
from harness.stats.proportions import wilson
from harness.stats.roc import delong

TARGETS = {  # Elhakim 2023
    "reader1_sensitivity": 0.637,
    "reader1_specificity": 0.978,
    "consensus_sensitivity": 0.739,
    "consensus_specificity": 0.979,
}
MIN_MASS_AUC = 0.80
MAX_EXCESS = 0.05
FOLDS = 5


def _findings(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finding with descriptors: {exam_id, malignant, kind, desc, conspicuity, suspicion,
    readers}."""
    exams = {e["exam_id"]: e for e in raw["exams"]}
    out = []
    for e in raw["exams"]:
        for les in e.get("lesions") or []:
            out.append((e, True, les))
    for exam_id, fs in (raw.get("benign_findings") or {}).items():
        for f in fs:
            out.append((exams[exam_id], False, f))
    return [
        {
            "exam_id": e["exam_id"],
            "malignant": malignant,
            "kind": f.get("type"),
            "desc": f,
            "conspicuity": f.get("conspicuity"),
            "suspicion": (f.get("suspicion") or {}).get("reader1"),
            "readers": e.get("readers") or {},
        }
        for e, malignant, f in out
    ]


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n) if n else (float("nan"), float("nan"))
    return {"k": k, "n": n, "rate": (k / n) if n else float("nan"), "ci95": [lo, hi]}


def reader_rates(raw: dict[str, Any]) -> dict[str, Any]:
    can = [e["readers"] for e in raw["exams"] if e["label"] == 1]
    non = [e["readers"] for e in raw["exams"] if e["label"] == 0]

    def recalls(rs, key):
        return sum(int(r.get(key, 0)) for r in rs)

    sens = {k: _rate(recalls(can, k), len(can)) for k in ("reader1", "reader2", "consensus")}
    spec = {
        k: _rate(len(non) - recalls(non, k), len(non)) for k in ("reader1", "reader2", "consensus")
    }
    return {"sensitivity": sens, "specificity": spec}


def pixel_classifier_scores(views, folds: int = FOLDS) -> dict[str, float]:
    """Cross-validated per-lesion scores: folds by lesion (a lesion's views stay together)."""
    ids = sorted({v.lesion_id for v in views})
    fold_of = {lid: k % folds for k, lid in enumerate(ids)}
    x = design_signs(views)
    y = np.array([v.malignant for v in views], dtype=float)
    per_view = np.zeros(len(views))
    for k in range(folds):
        test = np.array([fold_of[v.lesion_id] == k for v in views])
        train = ~test
        if not test.any():
            continue
        if y[train].min() == y[train].max():
            per_view[test] = 0.0
            continue
        per_view[test] = Classifier.fit(x[train], y[train]).score(x[test])
    scores: dict[str, list[float]] = defaultdict(list)
    for v, s in zip(views, per_view, strict=True):
        scores[v.lesion_id].append(float(s))
    return {lid: float(np.mean(s)) for lid, s in scores.items()}


def audit(cases: Path | str) -> dict[str, Any]:
    manifest = load_manifest(cases)
    raw = json.loads((Path(cases) / "manifest.json").read_text(encoding="utf-8"))
    findings = _findings(raw)
    where = f"{Path(cases) / 'manifest.json'}"
    if not findings or any("shape" not in f["desc"] for f in findings):
        raise UsageError(
            f"{where}: no lesion descriptors (shape, margin, calc_morphology, calc_distribution, "
            "conspicuity); build the set from a v2 recipe (lesion_model: birads, reader_model: "
            "pixels), e.g. reference_cases/default-v2.yaml"
        )
    masses = [f for f in findings if f["kind"] == "mass" and f["suspicion"] is not None]
    n_bad = sum(f["malignant"] for f in masses)
    if n_bad < 2 or len(masses) - n_bad < 2:
        raise UsageError(
            f"{where}: needs at least 2 malignant and 2 benign masses with reader suspicions "
            f"({n_bad} malignant of {len(masses)}); build more exams"
        )
    # reader-1 suspicion AUC, per lesion
    rd = delong([f["suspicion"] for f in masses], [int(f["malignant"]) for f in masses])
    # pixel classifier on the same lesions
    views = mass_views(manifest)
    per_lesion = pixel_classifier_scores(views)
    mal = {v.lesion_id: v.malignant for v in views}
    px = delong([per_lesion[k] for k in per_lesion], [int(mal[k]) for k in per_lesion])
    # recall by descriptor
    table: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        group = "malignant" if f["malignant"] else "benign"
        table[(group, descriptor_label(f["kind"], f["desc"]))].append(f)
    by_descriptor = []
    for (group, label), fs in sorted(table.items()):
        cons = [f["conspicuity"] for f in fs if f["conspicuity"] is not None]
        by_descriptor.append(
            {
                "group": group,
                "descriptor": label,
                "n": len(fs),
                "reader1_recall": float(np.mean([f["readers"].get("reader1", 0) for f in fs])),
                "consensus_recall": float(np.mean([f["readers"].get("consensus", 0) for f in fs])),
                "mean_conspicuity": float(np.mean(cons)) if cons else None,
            }
        )
    benign = [f for f in findings if not f["malignant"]]
    return {
        "cases": str(cases),
        "set": f"{manifest.id} {manifest.version}",
        "digest": manifest.digest,
        "exams": len(manifest.exams),
        "reader_model": (raw.get("generator") or {}).get("reader_model"),
        "readers": reader_rates(raw),
        "targets": TARGETS,
        "masses": {
            "malignant": n_bad,
            "benign": len(masses) - n_bad,
            "reader1_auc": rd.auc,
            "reader1_auc_ci95": [rd.ci_low, rd.ci_high],
            "pixel_classifier_auc": px.auc,
            "pixel_classifier_auc_ci95": [px.ci_low, px.ci_high],
            "pixel_classifier_lesions": len(per_lesion),
            "reader_excess": rd.auc - px.auc,
            "checks": {
                f"reader1_auc >= {MIN_MASS_AUC}": rd.auc >= MIN_MASS_AUC,
                f"pixel_classifier_auc >= {MIN_MASS_AUC}": px.auc >= MIN_MASS_AUC,
                f"reader_excess <= {MAX_EXCESS}": rd.auc - px.auc <= MAX_EXCESS,
            },
        },
        "benign_findings": {
            "n": len(benign),
            "reader1_recall": float(np.mean([f["readers"].get("reader1", 0) for f in benign]))
            if benign
            else None,
        },
        "recall_by_descriptor": by_descriptor,
    }


def _pct(r: dict[str, Any]) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['rate']:5.1f} % ({r['k']}/{r['n']}; 95 % CI {100 * lo:.1f}-{100 * hi:.1f})"


def render(res: dict[str, Any]) -> str:
    r, m = res["readers"], res["masses"]
    lines = [
        f"audit of {res['cases']}: {res['set']}, {res['exams']} exams, {res['digest']}",
        f"reader model: {res['reader_model']}",
        "",
        "readers (targets: Elhakim 2023)",
        f"  reader 1 sensitivity   {_pct(r['sensitivity']['reader1'])}  target 63.7 %",
        f"  reader 1 specificity   {_pct(r['specificity']['reader1'])}  target 97.8 %",
        f"  reader 2 sensitivity   {_pct(r['sensitivity']['reader2'])}",
        f"  reader 2 specificity   {_pct(r['specificity']['reader2'])}",
        f"  consensus sensitivity  {_pct(r['sensitivity']['consensus'])}  target 73.9 %",
        f"  consensus specificity  {_pct(r['specificity']['consensus'])}  target 97.9 %",
        "",
        f"malignant vs benign masses, per lesion ({m['malignant']} malignant, {m['benign']} benign)",
        f"  reader 1 suspicion AUC       {m['reader1_auc']:.3f} "
        f"(DeLong 95 % CI {m['reader1_auc_ci95'][0]:.3f}-{m['reader1_auc_ci95'][1]:.3f})",
        f"  pixel-feature classifier AUC {m['pixel_classifier_auc']:.3f} "
        f"(DeLong 95 % CI {m['pixel_classifier_auc_ci95'][0]:.3f}-"
        f"{m['pixel_classifier_auc_ci95'][1]:.3f}; {FOLDS}-fold cross-validated by lesion)",
        f"  readers' excess over pixels  {m['reader_excess']:+.3f}",
    ]
    for name, ok in m["checks"].items():
        lines.append(f"  {'met    ' if ok else 'NOT met'}  {name}")
    b = res["benign_findings"]
    lines += [
        "",
        f"recall by descriptor (benign findings: reader 1 recalls "
        f"{100 * (b['reader1_recall'] or 0):.1f} % of {b['n']})",
        f"  {'group':9} {'descriptor':44} {'n':>3} {'reader1':>8} {'consensus':>9} {'conspicuity':>11}",
    ]
    for d in res["recall_by_descriptor"]:
        c = "-" if d["mean_conspicuity"] is None else f"{d['mean_conspicuity']:.2f}"
        lines.append(
            f"  {d['group']:9} {d['descriptor']:44} {d['n']:3d} "
            f"{100 * d['reader1_recall']:7.1f}% {100 * d['consensus_recall']:8.1f}% {c:>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.cases.audit", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--cases", required=True, help="a reference set built with lesion_model: birads"
    )
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    def body() -> int:
        res = audit(args.cases)
        print(render(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
        return 0

    return run_script(ap.prog, body)


if __name__ == "__main__":
    sys.exit(main())
