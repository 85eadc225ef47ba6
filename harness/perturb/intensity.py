"""``intensity``: a slightly different display curve (gamma) and window, as sites and vendors' image
processing differ; the exam score may move by at most the tolerance.

Clinical range (what the strategy draws): gamma 0.8-1.25, window width x0.85-1.15, window centre
moved by up to +-10 % *of the window width* (a fraction of the centre value would depend on the
detector's offset, which has no clinical meaning; a fraction of the width is a fixed fraction of
display brightness).

How: the gamma acts on the presentation value inside the first window's displayed range
``[c - w/2, c + w/2]``: with ``q`` the stored value's position in that range, MONOCHROME2 gets
``q' = q^gamma``, MONOCHROME1 ``q' = 1 - (1 - q)^gamma`` (its presentation is ``1 - q``), and the
stored value becomes ``lo + q' * w`` (rounded). The range end points are fixed, so values outside the
window are untouched. For a LINEAR_EXACT window this is exactly presentation ``p -> p^gamma``;
for LINEAR it is within half a stored step of it; for SIGMOID it is a contrast change of the same
size. Then every window is rescaled by ``width_scale`` about its centre and the centre moved by
``center_shift * width``. ``gamma=1, width_scale=1, center_shift=0`` is the identity, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from harness.exam_input import ExamInput
from harness.perturb.image import (
    map_images,
    replace_pixels,
    require_window,
    set_windows,
    stored_pixels,
    window_range,
    windows,
)
from harness.perturb.relation import Relation


@dataclass(frozen=True)
class IntensityParams:
    """Presentation gamma, window width factor, window centre shift (fraction of the width)."""

    gamma: float = 1.0
    width_scale: float = 1.0
    center_shift: float = 0.0
    relation: ClassVar[str] = "intensity"

    def __post_init__(self) -> None:
        if not (0.1 <= self.gamma <= 10.0):
            raise ValueError(f"intensity: gamma must be within 0.1-10, got {self.gamma}")
        if not (0.1 <= self.width_scale <= 10.0):
            raise ValueError(
                f"intensity: width_scale must be within 0.1-10, got {self.width_scale}"
            )
        if not (-1.0 <= self.center_shift <= 1.0):
            raise ValueError(
                f"intensity: center_shift must be within -1..1 window widths, got {self.center_shift}"
            )


def apply_gamma(ds: Dataset, gamma: float) -> None:
    """Apply the presentation gamma to the stored values inside the first window, in place."""
    if gamma == 1.0:
        return
    lo, hi = window_range(ds)
    pixels = stored_pixels(ds).astype(np.float64)
    inside = (pixels > lo) & (pixels < hi)
    q = (pixels[inside] - lo) / (hi - lo)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        q = 1.0 - (1.0 - q) ** gamma
    else:
        q = q**gamma
    pixels[inside] = lo + q * (hi - lo)
    replace_pixels(ds, pixels)


def apply_intensity(exam: ExamInput, params: IntensityParams) -> ExamInput:
    """Change display gamma and window of every image (the input exam is not modified)."""

    def one(_i: int, ref, ds: Dataset):
        require_window(ds, "intensity")
        apply_gamma(ds, params.gamma)
        if params.width_scale != 1.0 or params.center_shift != 0.0:
            set_windows(
                ds, [(c + params.center_shift * w, w * params.width_scale) for c, w in windows(ds)]
            )
        return ref, ds

    return map_images(exam, one)


def intensity_params() -> st.SearchStrategy[IntensityParams]:
    """Gamma 0.80-1.25, width x0.85-1.15, centre +-0.10 widths, in steps of 0.01."""
    return st.builds(
        IntensityParams,
        gamma=st.integers(-20, 25).map(lambda k: round(1.0 + k / 100, 2)),
        width_scale=st.integers(-15, 15).map(lambda k: round(1.0 + k / 100, 2)),
        center_shift=st.integers(-10, 10).map(lambda k: round(k / 100, 2)),
    )


RELATION = Relation(
    name=IntensityParams.relation,
    kind="tolerance",
    expectation="display gamma 0.8-1.25, window width +-15 %, centre +-10 % of the width: score change within tolerance",
    params_type=IntensityParams,
    apply=apply_intensity,
    strategy=intensity_params(),
    position=50,
    at_level=lambda level: IntensityParams(gamma=float(level)),
    levels=(0.8, 0.9, 1.0, 1.1, 1.25),
    # the ends of the strategy's range, one parameter at a time
    grid=(
        IntensityParams(gamma=0.8),
        IntensityParams(gamma=1.25),
        IntensityParams(width_scale=0.85),
        IntensityParams(width_scale=1.15),
        IntensityParams(center_shift=-0.1),
        IntensityParams(center_shift=0.1),
    ),
)
