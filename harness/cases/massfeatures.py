"""Known-location pixel features of a mass view, and the small logistic regression fitted on them.

Shared by ``python -m harness.reference.benign_masses`` (can a detector's benign-vs-malignant head
work on this phantom?) and ``python -m harness.cases.audit`` (do the simulated readers know more
than the pixels show?). ``design`` is the reference check's original column set; ``design_signs``
is the audit's: the signs the BI-RADS lesions carry (margin sharpness, outline irregularity, a
fat-containing centre, a radiolucent halo, radial strands) and the size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from scipy import ndimage

from harness.cases.manifest import Exam, Manifest
from harness.errors import UsageError
from harness.pixels import presentation_pixels

MANUFACTURERS = ("HOLOGIC", "GE", "SIEMENS")


def _row_spacing(ds) -> float | None:
    """Row spacing in mm at the detector: ImagerPixelSpacing, else PixelSpacing (as
    ``harness.perturb.resample.imager_spacing``; not imported: perturb imports this package)."""
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        if keyword in ds and ds[keyword].VM == 2:
            row = float(ds[keyword].value[0])
            if row > 0:
                return row
    return None


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
    sharpness: float = 0.0  # share of the core-to-ring drop within +-15 % of the box radius
    irregularity: float = 0.0  # CV of the half-contrast radius over 32 directions
    centre_dip: float = 0.0  # (annulus 0.45-0.85 minus centre < 0.3) over contrast: fat centre
    halo: float = 0.0  # (ring 1.3-2.2 median minus ring 1.0-1.25 mean) over contrast
    strands: float = 0.0  # angular SD of the 1.1-1.8 ring over contrast (spicules)
    lesion_id: str = ""  # exam id + finding index: the unit of a per-lesion score


def _masses(
    manifest: Manifest,
) -> list[tuple[Exam, bool, list[tuple[str, list[float]]], str]]:
    """(exam, malignant, [(file, box)]) per mass: cancers' lesions and the generator's benign
    findings (``benign_findings``, an extension of the manifest kept in ``extra``)."""
    out = [
        (e, True, [(m.file, list(m.box)) for m in les.marks], f"{e.exam_id}#{k}")
        for e in manifest.exams
        if e.label == 1
        for k, les in enumerate(e.lesions)
        if les.type == "mass"
    ]
    by_id = {e.exam_id: e for e in manifest.exams}
    for exam_id, findings in manifest.extra.get("benign_findings", {}).items():
        for k, f in enumerate(findings):
            if f["type"] == "mass":
                marks = [(m["file"], m["box"]) for m in f["marks"]]
                out.append((by_id[exam_id], False, marks, f"{exam_id}#b{k}"))
    return out


def mass_views(manifest: Manifest) -> list[MassView]:
    """Every marked view of every mass (cancer or benign finding) in the set."""
    out = []
    for exam, malignant, marks, lesion_id in _masses(manifest):
        for file, (x0, y0, x1, y1) in marks:
            ds = pydicom.dcmread(manifest.root / file)
            img = presentation_pixels(ds).astype(np.float64)
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-9)
            spacing = _row_spacing(ds)
            if spacing is None:
                raise UsageError(
                    f"{manifest.root / file}: no pixel spacing (ImagerPixelSpacing or "
                    "PixelSpacing); mass sizes need it: use a reference set built by mammocert"
                )
            cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
            rn = np.hypot((xx + 0.5 - cx) / max(hw, 1), (yy + 0.5 - cy) / max(hh, 1))
            core, inner = img[rn < 0.5], img[rn < 1.0]
            ring = img[(rn > 1.3) & (rn < 2.2) & (img > 0.02)]
            if core.size == 0 or ring.size < 5:
                continue
            bg = float(np.median(ring))
            signs = _signs(img, cx, cy, hw, hh, rn, float(core.mean()) - bg, bg)
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
                    *signs,
                    lesion_id=lesion_id,
                )
            )
    return out


def _signs(
    img: np.ndarray, cx: float, cy: float, hw: float, hh: float, rn: np.ndarray, c: float, bg: float
) -> tuple[float, float, float, float, float]:
    """(sharpness, irregularity, centre_dip, halo, strands) of one mass view (see MassView)."""
    cs = c if abs(c) > 1e-3 else (1e-3 if c >= 0 else -1e-3)

    def ring(lo: float, hi: float) -> np.ndarray:
        return img[(rn >= lo) & (rn < hi)]

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else bg

    drop = mean(ring(0.0, 0.5)) - bg
    sharp = (mean(ring(0.85, 1.0)) - mean(ring(1.0, 1.15))) / (drop if abs(drop) > 1e-3 else 1e-3)
    ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    t = np.linspace(0.0, 2.0, 41)
    xs = cx - 0.5 + np.outer(np.cos(ang), t) * max(hw, 1.0)
    ys = cy - 0.5 + np.outer(np.sin(ang), t) * max(hh, 1.0)
    prof = ndimage.map_coordinates(ndimage.gaussian_filter(img, 1.0), [ys, xs], order=1)
    half = bg + 0.5 * c
    radii = []
    for p in prof:
        below = np.flatnonzero(p < half) if c > 0 else np.flatnonzero(p > half)
        radii.append(t[below[0]] if below.size else t[-1])
    radii_a = np.array(radii)
    irregular = float(radii_a.std() / max(radii_a.mean(), 1e-3))
    dip = (mean(ring(0.45, 0.85)) - mean(ring(0.0, 0.3))) / cs
    halo = (bg - mean(ring(1.0, 1.25))) / cs
    band = (t >= 1.1) & (t <= 1.8)
    strands = float(prof[:, band].mean(axis=1).std()) / abs(cs)
    return float(sharp), irregular, float(dip), float(halo), strands


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


def design_signs(views: list[MassView]) -> np.ndarray:
    """The audit's columns: the BI-RADS signs a reader looks at (margin sharpness, outline
    irregularity, fat centre, halo, radial strands) and the log size. Few columns on purpose: a
    reference set holds a few dozen masses, and ``design``'s device and contrast columns (the
    reference check's, fitted on thousands of views) only add variance at that size."""
    return np.array(
        [
            [np.log(v.size_mm), v.sharpness, v.irregularity, v.centre_dip, v.halo, v.strands]
            for v in views
        ]
    ).reshape(len(views), 6)
