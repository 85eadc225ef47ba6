"""``lesion_insertion`` (directional): a synthetic lesion put into a normal breast must raise its score.

The relation is applied by the conformance suite to exams whose truth is ``normal``; inserting
a lesion adds evidence of cancer, so the score of the breast that received it must rise
(Relation.check = rise > tolerance) and the exam score must not fall. Hypothesis shrinks
towards the smallest, faintest lesion, so a failure reports the most subtle insertion the model
still misses.

Lesion model (in presentation space, where for-presentation mammograms are roughly
logarithmic in transmitted exposure, so a denser structure *adds* brightness):

* ``mass``: the projection of a lobulated sphere. A sphere of radius R seen in projection has
  thickness ``2 R sqrt(1 - r^2/R^2)`` at distance r from its centre, so the added presentation
  value is ``contrast * sqrt(1 - (r / R(theta))^2)``. The radius varies with angle,
  ``R(theta) = R (1 + sum_k a_k cos(k theta + phi_k))`` for k = 2..4 with a_k up to 0.06, to
  make a lobulated outline, and the edge is softened with a Gaussian of 4 % of the diameter
  (an indistinct margin, the suspicious kind).
* ``calcification``: a cluster of 5-15 specks, each the projection of a 0.2-0.5 mm sphere with
  peak ``contrast``, placed uniformly in a disc of diameter ``size_mm`` (a grouped cluster,
  BI-RADS "grouped" distribution).

The change in presentation units is written back to stored values through the first window's
slope (``dp/dx = 1/(w-1)`` for LINEAR, ``1/w`` otherwise; over the full stored range without a
window), negated for MONOCHROME1. The lesion goes into both views (CC and MLO) of one breast,
each at a position drawn, with a PCG64 generator seeded by (seed, image index), among pixels
whose distance to the breast edge (presentation value <= 0.05) exceeds the lesion radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from scipy import ndimage

from harness.exam_input import ExamInput
from harness.perturb.image import (
    map_images,
    max_value,
    presentation_pixels,
    replace_pixels,
    stored_pixels,
    windows,
)
from harness.perturb.relation import Relation
from harness.perturb.resample import imager_spacing
from harness.perturb.strategies import SEEDS

KINDS = ("mass", "calcification")
BREAST_THRESHOLD = 0.05  # presentation value above which a pixel counts as breast


@dataclass(frozen=True)
class LesionParams:
    """What to insert (kind, size, peak contrast), into which breast, and where (seed)."""

    kind: str = "mass"
    size_mm: float = 5.0
    contrast: float = 0.05
    laterality: str = "L"
    seed: int = 0
    relation: ClassVar[str] = "lesion_insertion"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"lesion_insertion: kind {self.kind!r} is not one of {', '.join(KINDS)}"
            )
        if not (0.5 <= self.size_mm <= 60.0):
            raise ValueError(f"lesion_insertion: size_mm must be within 0.5-60, got {self.size_mm}")
        if not (0.0 < self.contrast <= 1.0):
            raise ValueError(
                f"lesion_insertion: contrast must be within (0, 1], got {self.contrast}"
            )
        if self.laterality not in ("L", "R"):
            raise ValueError(
                f"lesion_insertion: laterality must be 'L' or 'R', got {self.laterality!r}"
            )
        if self.seed < 0:
            raise ValueError(f"lesion_insertion: seed must be >= 0, got {self.seed}")


def _sphere(
    rows: np.ndarray, cols: np.ndarray, cy: float, cx: float, radius: np.ndarray | float
) -> np.ndarray:
    r2 = ((rows - cy) ** 2 + (cols - cx) ** 2) / np.square(radius)
    return np.sqrt(np.clip(1.0 - r2, 0.0, None))


def insert_lesion(
    pixels: np.ndarray,
    spacing_mm: float,
    center: tuple[float, float],
    kind: str,
    size_mm: float,
    rng: np.random.Generator,
    contrast: float = 0.1,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Add a lesion to presentation ``pixels`` (values in [0, 1]) around ``center`` = (x, y).

    Returns the new pixels (clipped to [0, 1]) and the lesion's box [x0, y0, x1, y1] in pixel
    columns/rows (pixels raised by >= 1 % of the peak). The input array is not modified.
    """
    if kind not in KINDS:
        raise ValueError(f"insert_lesion: kind {kind!r} is not one of {', '.join(KINDS)}")
    cx, cy = center
    radius = size_mm / 2.0 / spacing_mm
    blur = max(0.5, 0.08 * radius)
    margin = int(math.ceil(radius * 1.2 + 4 * blur)) + 3  # room for the lobes and the blur's tail
    y0, y1 = max(0, int(cy) - margin), min(pixels.shape[0], int(cy) + margin + 1)
    x0, x1 = max(0, int(cx) - margin), min(pixels.shape[1], int(cx) + margin + 1)
    rows, cols = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    if kind == "mass":
        theta = np.arctan2(rows - cy, cols - cx)
        lobes = np.ones_like(theta)
        for k in (2, 3, 4):
            lobes += rng.uniform(0.0, 0.06) * np.cos(k * theta + rng.uniform(0.0, 2 * math.pi))
        patch = _sphere(rows, cols, cy, cx, radius * lobes)
        patch = ndimage.gaussian_filter(patch, sigma=blur)
    else:
        patch = np.zeros_like(rows)
        for _ in range(int(rng.integers(5, 16))):
            r = radius * math.sqrt(rng.uniform())
            a = rng.uniform(0.0, 2 * math.pi)
            speck = rng.uniform(0.1, 0.25) / spacing_mm  # radius of a 0.2-0.5 mm speck
            patch = np.maximum(
                patch,
                _sphere(rows, cols, cy + r * math.sin(a), cx + r * math.cos(a), max(speck, 0.75)),
            )
    out = np.array(pixels, dtype=np.float64, copy=True)
    out[y0:y1, x0:x1] = np.clip(out[y0:y1, x0:x1] + contrast * patch, 0.0, 1.0)
    # The box holds every pixel the lesion raises by at least 1 % of its peak (the blur's far
    # tail is invisible), as [x0, y0, x1, y1] pixel edges like the manifest's marks.
    ys, xs = np.nonzero(patch >= 0.01 * patch.max())
    box = (
        float(x0 + xs.min()),
        float(y0 + ys.min()),
        float(x0 + xs.max() + 1),
        float(y0 + ys.max() + 1),
    )
    return out, box


def _stored_per_presentation(ds: Dataset) -> float:
    """Stored units per presentation unit on the first window's linear part (signed by polarity)."""
    pairs = windows(ds)
    if pairs:
        width = pairs[0][1]
        slope = (
            width - 1.0 if str(ds.get("VOILUTFunction", "LINEAR")).upper() == "LINEAR" else width
        )
    else:
        slope = float(max_value(ds))
    return -slope if ds.PhotometricInterpretation == "MONOCHROME1" else slope


def choose_center(
    presentation: np.ndarray, radius_px: float, rng: np.random.Generator
) -> tuple[float, float]:
    """A seeded (x, y) inside the breast at least ``radius_px`` from its edge (else its deepest point)."""
    depth = ndimage.distance_transform_edt(presentation > BREAST_THRESHOLD)
    candidates = np.flatnonzero(depth > radius_px + 1.0)
    flat = (
        int(candidates[rng.integers(len(candidates))]) if len(candidates) else int(np.argmax(depth))
    )
    y, x = divmod(flat, presentation.shape[1])
    return float(x), float(y)


def _spacing(ds: Dataset) -> float:
    if "PixelSpacing" in ds and ds["PixelSpacing"].VM == 2:
        return float(ds.PixelSpacing[1])
    return imager_spacing(ds)[1]


def apply_lesion(exam: ExamInput, params: LesionParams) -> ExamInput:
    """Insert the lesion into every image of ``params.laterality`` (the input is not modified)."""

    def one(index: int, ref, ds: Dataset):
        if ref.laterality != params.laterality:
            return ref, ds
        rng = np.random.Generator(np.random.PCG64([params.seed, index]))
        spacing = _spacing(ds)
        before = presentation_pixels(ds)
        center = choose_center(before, params.size_mm / 2.0 / spacing, rng)
        after, _box = insert_lesion(
            before, spacing, center, params.kind, params.size_mm, rng, params.contrast
        )
        stored = stored_pixels(ds).astype(np.float64) + (after - before) * _stored_per_presentation(
            ds
        )
        replace_pixels(ds, stored)
        return ref, ds

    return map_images(exam, one)


def lesion_params() -> st.SearchStrategy[LesionParams]:
    """Conspicuous masses or calcification clusters 8-20 mm, peak contrast 0.15-0.35, either breast.

    A directional relation demands a rise, so it draws no faint specks (a 3 mm mass need not move
    any model): the range is that of clearly visible lesions in a fatty breast. The synthetic set's
    masses have a median presentation contrast of 0.24 against a local texture SD of ~0.10, so the
    mildest lesion drawn here (8 mm, 0.15) is hard to see in a dense breast (measured in
    harness/reference/README.md). Shrinks towards that mildest case: the one that must still
    raise the score.
    """
    return st.builds(
        LesionParams,
        kind=st.sampled_from(KINDS),
        size_mm=st.integers(0, 24).map(lambda k: 8.0 + k / 2),
        contrast=st.integers(0, 20).map(lambda k: round(0.15 + k / 100, 2)),
        laterality=st.sampled_from(("L", "R")),
        seed=SEEDS,
    )


RELATION = Relation(
    name=LesionParams.relation,
    kind="directional",
    expectation="a synthetic mass or calcification cluster inserted into one breast of a normal exam: that breast's score rises, the exam score does not fall",
    params_type=LesionParams,
    apply=apply_lesion,
    strategy=lesion_params(),
    position=80,
    # level = peak contrast of a 10 mm mass
    at_level=lambda level: LesionParams(kind="mass", size_mm=10.0, contrast=float(level)),
    levels=(0.05, 0.1, 0.2, 0.3),
    # the mildest lesions drawn: the ones that must still raise the score
    grid=tuple(
        LesionParams(kind=kind, size_mm=8.0, contrast=0.15, laterality=side, seed=1)
        for kind in KINDS
        for side in ("L", "R")
    ),
)
