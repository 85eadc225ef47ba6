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
from dataclasses import dataclass

import numpy as np
import pydicom

from harness.cases.manifest import Exam, Manifest, load_manifest
from harness.errors import UsageError, run_script
from harness.perturb.resample import imager_spacing
from harness.pixels import presentation_pixels
from harness.stats.roc import auc

MANUFACTURERS = ("HOLOGIC", "GE", "SIEMENS")


@dataclass(frozen=True)
class MassView:
    """One marked view of a mass and its features (see ``design``)."""

    exam_id: str
    malignant: bool
    margin: str | None  # cancers: spiculated | circumscribed; benign: None
    manufacturer: str
    size_mm: float
    contrast: float  # core mean minus ring median, presentation units over the image's range
    peak: float
    background: float  # ring median
    ring_sd: float
    edge: float  # mean over the box ellipse minus core mean (spicules make it lower)


def _masses(manifest: Manifest) -> list[tuple[Exam, bool, list[tuple[str, list[float]]]]]:
    """(exam, malignant, [(file, box)]) per mass: cancers' lesions and the generator's benign
    findings (``benign_findings``, an extension of the manifest kept in ``extra``)."""
    out = [
        (e, True, [(m.file, list(m.box)) for m in les.marks])
        for e in manifest.exams
        if e.label == 1
        for les in e.lesions
        if les.type == "mass"
    ]
    by_id = {e.exam_id: e for e in manifest.exams}
    for exam_id, findings in manifest.extra.get("benign_findings", {}).items():
        for f in findings:
            if f["type"] == "mass":
                out.append((by_id[exam_id], False, [(m["file"], m["box"]) for m in f["marks"]]))
    return out


def mass_views(manifest: Manifest) -> list[MassView]:
    """Every marked view of every mass (cancer or benign finding) in the set."""
    out = []
    for exam, malignant, marks in _masses(manifest):
        for file, (x0, y0, x1, y1) in marks:
            ds = pydicom.dcmread(manifest.root / file)
            img = presentation_pixels(ds).astype(np.float64)
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-9)
            try:
                spacing = imager_spacing(ds)[0]
            except UsageError:
                raise UsageError(
                    f"{manifest.root / file}: no pixel spacing (ImagerPixelSpacing or "
                    "PixelSpacing); mass sizes need it: use a reference set built by mammocert"
                ) from None
            cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
            rn = np.hypot((xx + 0.5 - cx) / max(hw, 1), (yy + 0.5 - cy) / max(hh, 1))
            core, inner = img[rn < 0.5], img[rn < 1.0]
            ring = img[(rn > 1.3) & (rn < 2.2) & (img > 0.02)]
            if core.size == 0 or ring.size < 5:
                continue
            bg = float(np.median(ring))
            out.append(
                MassView(
                    exam.exam_id,
                    malignant,
                    exam.attributes.get("mass_margin") if malignant else None,
                    str(exam.attributes.get("manufacturer")),
                    (hw + hh) * spacing,
                    float(core.mean()) - bg,
                    float(core.max()) - bg,
                    bg,
                    float(ring.std()),
                    float(inner.mean() - core.mean()),
                )
            )
    return out


def design(views: list[MassView]) -> np.ndarray:
    """The regression's columns: the features, ratios and products that physics suggests
    (excess attenuation per size, contrast against the local background and device)."""
    size = np.array([v.size_mm for v in views])
    c = np.array([v.contrast for v in views])
    bg = np.array([v.background for v in views])
    sd = np.array([v.ring_sd for v in views])
    edge = np.array([v.edge for v in views])
    man = np.array([[v.manufacturer == m for m in MANUFACTURERS] for v in views], dtype=float)
    return np.column_stack(
        [
            np.log(size), c, c / size, bg, c * bg, [v.peak for v in views], sd,
            c / np.maximum(sd, 1e-3), edge, edge / np.maximum(np.abs(c), 1e-3), man,
            c * man[:, 0], c * man[:, 1], c / size * bg,
        ]
    )  # fmt: skip


@dataclass(frozen=True)
class Classifier:
    """Logistic regression on standardised columns (gradient descent, L2; deterministic)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, steps: int = 5000) -> Classifier:
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
        a = (x - mean) / scale
        w, b = np.zeros(a.shape[1]), 0.0
        for _ in range(steps):
            g = 1 / (1 + np.exp(-(a @ w + b))) - y
            w -= 0.1 * (a.T @ g / len(y) + 0.01 * w)
            b -= 0.1 * float(g.mean())
        return cls(mean, scale, w, b)

    def score(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale @ self.weights + self.bias


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
