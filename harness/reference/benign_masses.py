"""Can a benign mass be told from a cancer in the phantom's pixels, at a known location?

``python -m harness.reference.benign_masses --train-cases TRAIN --cases DEFAULT`` takes every
mass view of both sets (cancers' lesion marks, benign findings' marks), measures simple features
on its presentation pixels - size, core and peak contrast against a surrounding ring, background
level and spread, edge profile (spicules), device - fits a logistic regression on the training
set's views and prints, as JSON, its AUC on the training views, on the evaluation set per lesion
(mean of its views) and for circumscribed cancers against benign masses only. An upper-bound
check on a detector's benign-vs-malignant head: the location is given, not found.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from harness.cases.manifest import Manifest, load_manifest
from harness.cases.massfeatures import (  # noqa: F401  (re-exported: the check's names)
    MANUFACTURERS,
    Classifier,
    MassView,
    _masses,
    design,
    mass_views,
)
from harness.errors import UsageError, run_script
from harness.stats.roc import auc


def _need_both(views: list[MassView], where: str) -> None:
    n_bad = sum(v.malignant for v in views)
    if n_bad == 0 or n_bad == len(views):
        raise UsageError(
            f"{where}: needs both malignant and benign masses ({n_bad} of {len(views)} views are "
            "malignant); use a set built from a recipe with benign findings"
        )


def separability(train: Manifest, test: Manifest) -> dict:
    """Fit on ``train``'s mass views; AUCs on them and, per lesion, on ``test``."""
    tr, te = mass_views(train), mass_views(test)
    _need_both(tr, f"{train.root}"), _need_both(te, f"{test.root}")
    y_tr = np.array([v.malignant for v in tr], dtype=float)
    model = Classifier.fit(design(tr), y_tr)
    per_view = model.score(design(te))
    lesions: dict[str, list] = {}
    for v, s in zip(te, per_view, strict=True):
        lesions.setdefault(v.exam_id, [v, []])[1].append(float(s))
    les = [(v.malignant, v.margin, float(np.mean(s))) for v, s in lesions.values()]
    circ = [(m, s) for m, margin, s in les if not m or margin == "circumscribed"]
    return {
        "train_views": len(tr),
        "train_malignant_views": int(y_tr.sum()),
        "auc_train_views": round(auc(model.score(design(tr)), y_tr), 3),
        "lesions": len(les),
        "malignant_lesions": sum(m for m, _, _ in les),
        "auc_per_lesion": round(auc([s for *_, s in les], [m for m, *_ in les]), 3),
        "circumscribed_cancers": sum(m for m, _ in circ),
        "auc_circumscribed_vs_benign": round(auc([s for _, s in circ], [m for m, _ in circ]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reference.benign_masses", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--train-cases", required=True, help="set to fit on (the training split)")
    ap.add_argument("--cases", required=True, help="set to evaluate on (e.g. the default set)")
    args = ap.parse_args(argv)

    def body() -> int:
        res = separability(load_manifest(args.train_cases), load_manifest(args.cases))
        print(json.dumps(res, indent=1))
        return 0

    return run_script(ap.prog, body)


if __name__ == "__main__":
    sys.exit(main())
