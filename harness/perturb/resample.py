"""``resample``: the image as a detector with another pixel pitch would have sampled it.

Real mammography detectors have pitches from 0.05 to 0.1 mm (e.g. 0.05 Fujifilm, 0.07 Hologic,
0.085 Siemens, 0.1 GE); a model must cope with all of them. The exam score may move by at most
the tolerance.

How: the field of view is kept; the image gets ``round(n * old / new)`` rows and columns and
is interpolated linearly on pixel areas (``scipy.ndimage.zoom`` with ``grid_mode=True``, so
pixel edges, not centres, line up). When shrinking by ``f`` = new/old pixel count, it is first
low-pass filtered with a Gaussian of sigma ``0.5 * sqrt(1/f^2 - 1)`` input pixels: taking a
pixel's own blur as a Gaussian of half its pitch, that is the blur which brings the old pixel's
up to the new, larger one's (Gaussian blurs add in quadrature). It suppresses the frequencies the
coarser grid cannot hold, so fine structure does not alias into false calcifications, and it
vanishes smoothly as ``f -> 1``, so a mild resampling stays mild. Rows,
Columns and ImagerPixelSpacing follow; PixelSpacing (patient plane), when present, scales by
the same factor. The spacing written is the requested one; the rounding of the pixel count
makes the true one differ by under half a pixel over the whole image. A spacing equal to the
original is the identity, bit for bit.

On images stored coarser than any detector (the synthetic reference sets: 0.56-0.6 mm pixels)
every pitch in the range upsamples 6-12x, and a model that resizes to its own input grid sees the
round trip as a mild blur; the relation then tests sensitivity to sharpness, not to pitch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from scipy import ndimage

from harness.errors import UsageError
from harness.exam_input import ExamInput
from harness.perturb.image import map_images, replace_pixels, stored_pixels
from harness.perturb.relation import Relation

DETECTOR_RANGE_MM = (0.05, 0.1)


@dataclass(frozen=True)
class ResampleParams:
    """``spacing_mm``: the new ImagerPixelSpacing (square pixels)."""

    spacing_mm: float = 0.07
    relation: ClassVar[str] = "resample"

    def __post_init__(self) -> None:
        if not (0.01 <= self.spacing_mm <= 1.0):
            raise ValueError(
                f"resample: spacing_mm must be within 0.01-1.0 mm, got {self.spacing_mm}"
            )


def imager_spacing(ds: Dataset) -> tuple[float, float]:
    """(row, column) spacing in mm at the detector: ImagerPixelSpacing, else PixelSpacing."""
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        if keyword in ds and ds[keyword].VM == 2:
            row, column = (float(v) for v in ds[keyword].value)
            if row > 0 and column > 0:
                return row, column
    raise UsageError(
        f"resample: image {ds.get('SOPInstanceUID', '?')} has no ImagerPixelSpacing; the DX IOD requires it"
    )


def _ds_text(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".")


def resample_pixels(pixels: np.ndarray, old: tuple[float, float], new: float) -> np.ndarray:
    """Area-aligned linear resampling of a 2-D array to pitch ``new``, anti-aliased when shrinking."""
    shape = tuple(max(1, round(n * o / new)) for n, o in zip(pixels.shape, old, strict=True))
    factors = tuple(s / n for s, n in zip(shape, pixels.shape, strict=True))
    work = pixels.astype(np.float64)
    sigma = tuple(0.5 * float(np.sqrt(max(0.0, 1.0 / f**2 - 1.0))) for f in factors)
    if any(s > 0 for s in sigma):
        work = ndimage.gaussian_filter(work, sigma=sigma, mode="nearest")
    out = ndimage.zoom(work, factors, order=1, mode="nearest", grid_mode=True)
    if out.shape != shape:  # zoom rounds the same way; guard against a future change
        raise AssertionError(f"resample: got shape {out.shape}, expected {shape}")
    return out


def apply_resample(exam: ExamInput, params: ResampleParams) -> ExamInput:
    """Resample every image to ``spacing_mm`` (the input exam is not modified)."""

    def one(_i: int, ref, ds: Dataset):
        old = imager_spacing(ds)
        if old == (params.spacing_mm, params.spacing_mm):
            return ref, ds
        replace_pixels(ds, resample_pixels(stored_pixels(ds), old, params.spacing_mm))
        ratio = (params.spacing_mm / old[0], params.spacing_mm / old[1])
        if "PixelSpacing" in ds and ds["PixelSpacing"].VM == 2:
            ds.PixelSpacing = [
                _ds_text(float(v) * r) for v, r in zip(ds.PixelSpacing, ratio, strict=True)
            ]
        ds.ImagerPixelSpacing = [_ds_text(params.spacing_mm)] * 2
        return ref, ds

    return map_images(exam, one)


def resample_params(original_spacing_mm: float = 0.07) -> st.SearchStrategy[ResampleParams]:
    """Pitches 0.050-0.100 mm in 1 um steps, shrinking towards ``original_spacing_mm`` (identity)."""
    lo, hi = (round(v * 1000) for v in DETECTOR_RANGE_MM)
    origin = min(max(round(original_spacing_mm * 1000), lo), hi)
    return st.builds(
        ResampleParams,
        spacing_mm=st.integers(lo - origin, hi - origin).map(
            lambda k: round((origin + k) / 1000, 3)
        ),
    )


RELATION = Relation(
    name=ResampleParams.relation,
    kind="tolerance",
    expectation="another detector pitch within 0.05-0.1 mm: score change within tolerance",
    params_type=ResampleParams,
    apply=apply_resample,
    strategy=resample_params(),
    position=70,
    at_level=lambda level: ResampleParams(spacing_mm=float(level)),
    levels=(0.05, 0.07, 0.085, 0.1),
    grid=tuple(ResampleParams(spacing_mm=s) for s in DETECTOR_RANGE_MM),
)
