"""FROC analysis of localised findings, and the hit rule used by localisation criteria.

Terms (Chakraborty's FROC paradigm): a mark that satisfies the acceptance rule for a lesion is
a lesion localisation (LL, "hit"); any other mark is a non-lesion localisation (NL, false
positive). The FROC curve plots the lesion localisation fraction LLF(t) = (lesions whose best
hitting mark has score >= t) / (all lesions) against NLF(t) = (NL marks with score >= t) /
(images), over all thresholds t.

Conventions fixed here (they must be, see research A.3):
* each lesion counts once, with the highest score among the marks that hit it;
* a mark that hits a lesion is never an NL, also when another mark scored higher on the same
  lesion (it is dropped, as in coco-froc-analysis), and a mark hitting two lesions counts for both;
* lesion sensitivity at a given FP rate is the LLF at the lowest threshold whose NLF does not
  exceed that rate (an achievable operating point; no interpolation between points).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.errors import UsageError

__all__ = ["FrocCurve", "froc_curve", "is_hit", "lesion_sensitivity_at_fp", "match_marks"]


def is_hit(
    x: float,
    y: float,
    box: Sequence[float],
    spacing_mm: float | Sequence[float],
    r_min_mm: float,
) -> bool:
    """Whether a mark at pixel (x, y) hits the lesion box [x0, y0, x1, y1] (pixel columns/rows).

    Hit if the mark lies inside the box (edges included), or within max(half the box diagonal,
    ``r_min_mm``) of the box centre. Distances are measured in mm with the pixel spacing
    (a scalar, or (row spacing, column spacing) as DICOM Pixel/Imager Pixel Spacing lists them),
    which for square pixels equals converting ``r_min_mm`` to pixels. ``r_min_mm`` keeps tiny
    boxes (a calcification cluster drawn tight) from demanding sub-millimetre precision.
    """
    if len(box) != 4:
        raise UsageError(f"box must be [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise UsageError(f"box must have x0 <= x1 and y0 <= y1, got {box!r}")
    if isinstance(spacing_mm, int | float):
        row_mm = col_mm = float(spacing_mm)
    else:
        if len(spacing_mm) != 2:
            raise UsageError(
                f"spacing_mm must be a number or (row, column) spacing, got {spacing_mm!r}"
            )
        row_mm, col_mm = (float(v) for v in spacing_mm)
    if not (row_mm > 0 and col_mm > 0):
        raise UsageError(f"pixel spacing must be positive mm, got {spacing_mm!r}")
    if not (r_min_mm >= 0):
        raise UsageError(f"r_min_mm must be >= 0, got {r_min_mm!r}")
    if not (math.isfinite(x) and math.isfinite(y)):
        return False
    if x0 <= x <= x1 and y0 <= y <= y1:
        return True
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half_diag = 0.5 * math.hypot((x1 - x0) * col_mm, (y1 - y0) * row_mm)
    dist = math.hypot((x - cx) * col_mm, (y - cy) * row_mm)
    return dist <= max(half_diag, float(r_min_mm))


def match_marks(
    marks: Sequence[tuple[float, float, float]],
    boxes: Sequence[Sequence[float]],
    spacing_mm: float | Sequence[float],
    r_min_mm: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Match the marks of one image to its lesion boxes.

    ``marks``: (x, y, score) per mark. Returns (lesion_scores, nl_scores): per lesion the best
    hitting mark's score (-inf if missed), and the scores of marks that hit no lesion.
    """
    lesion = np.full(len(boxes), -np.inf)
    nl: list[float] = []
    for x, y, score in marks:
        hits = [i for i, b in enumerate(boxes) if is_hit(x, y, b, spacing_mm, r_min_mm)]
        for i in hits:
            lesion[i] = max(lesion[i], float(score))
        if not hits:
            nl.append(float(score))
    return lesion, np.asarray(nl, dtype=np.float64)


@dataclass(frozen=True)
class FrocCurve:
    """FROC operating points, thresholds descending (one per distinct mark score), +inf first."""

    thresholds: NDArray[np.float64]
    llf: NDArray[np.float64]
    nlf: NDArray[np.float64]
    n_lesions: int
    n_images: int


def froc_curve(lesion_scores: ArrayLike, nl_scores: ArrayLike, n_images: int) -> FrocCurve:
    """FROC curve from per-lesion best-hit scores (-inf = missed) and all NL mark scores.

    At threshold t: LLF = #(lesion_scores >= t) / n_lesions; NLF = #(nl_scores >= t) / n_images.
    """
    les = np.asarray(lesion_scores, dtype=np.float64).ravel()
    nl = np.asarray(nl_scores, dtype=np.float64).ravel()
    if les.size == 0:
        raise UsageError("no lesions: lesion sensitivity (LLF) is undefined")
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 1:
        raise UsageError(f"n_images must be a whole number >= 1, got {n_images!r}")
    if np.isnan(les).any() or not np.isfinite(nl).all():
        raise UsageError("mark scores must be finite numbers (use -inf only for a missed lesion)")
    hit_scores = les[np.isfinite(les)]
    thr = np.unique(np.concatenate([hit_scores, nl]))[::-1]
    thr = np.concatenate([[np.inf], thr])
    # counts >= t via sorted arrays: n - (number strictly below t)
    les_sorted, nl_sorted = np.sort(les), np.sort(nl)
    ll = les.size - np.searchsorted(les_sorted, thr, side="left")
    nlc = nl.size - np.searchsorted(nl_sorted, thr, side="left")
    return FrocCurve(
        thresholds=thr,
        llf=ll / les.size,
        nlf=nlc / int(n_images),
        n_lesions=int(les.size),
        n_images=int(n_images),
    )


def lesion_sensitivity_at_fp(curve: FrocCurve, fp_per_image: float) -> float:
    """LLF at the lowest threshold whose NLF <= ``fp_per_image`` (step rule, no interpolation)."""
    if not (float(fp_per_image) >= 0.0):
        raise UsageError(f"fp_per_image must be >= 0, got {fp_per_image!r}")
    ok = np.flatnonzero(curve.nlf <= fp_per_image)
    # thresholds descend, so NLF and LLF rise along the arrays; the last allowed point is best
    return float(curve.llf[ok[-1]])
