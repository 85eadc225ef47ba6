"""``noise``: the quantum noise of a lower dose; the exam score may move by at most the tolerance.

Model. X-ray quanta are Poisson: a detector element that counts N quanta has relative noise
1/sqrt(N). For-presentation mammograms are (close to) logarithmic in the detected exposure, and
the log of a Poisson count has standard deviation ~ 1/sqrt(N), so in presentation units the
quantum noise is roughly additive Gaussian with variance sigma0^2 ~ 1/N at full dose. At a dose
fraction d the count is d*N, the variance sigma0^2 / d; the image already holds sigma0^2, so the
noise to *add* has variance

    sigma_add^2 = sigma0^2 * (1/d - 1).

We take sigma0 as a detector constant, :data:`FULL_DOSE_NOISE` = 1.5 % of the window width
(a presentation-value standard deviation typical of processed FFDM at screening dose), so
``sigma_add = 0.015 * W * sqrt(1/d - 1)`` stored units. The simplification: sigma0 is taken as
constant over the breast (the real one grows slowly with density). The noise goes only where the
presentation value is above 0 - the breast; the air around it holds so many quanta that its noise
is negligible, and it is shown black. d = 1 adds nothing (identity, bit for bit). Noise for image
i comes from numpy's PCG64 seeded with (seed, i): the same parameters give the same bytes.
The strategy stays in the clinical range 0.5-1.0; sweeps may go lower (M-SYNTH used 20-100 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from harness.exam_input import ExamInput
from harness.perturb.image import (
    map_images,
    presentation_pixels,
    replace_pixels,
    require_window,
    stored_pixels,
    windows,
)
from harness.perturb.relation import Relation
from harness.perturb.strategies import SEEDS

FULL_DOSE_NOISE = 0.015  # sigma0, as a fraction of the window width (presentation units)


@dataclass(frozen=True)
class NoiseParams:
    """``dose``: fraction of the original dose (0 < dose <= 1); ``seed``: the noise realisation."""

    dose: float = 1.0
    seed: int = 0
    relation: ClassVar[str] = "noise"

    def __post_init__(self) -> None:
        if not (0.0 < self.dose <= 1.0):
            raise ValueError(f"noise: dose must be within (0, 1], got {self.dose}")
        if self.seed < 0:
            raise ValueError(f"noise: seed must be >= 0, got {self.seed}")


def added_sigma(dose: float, window_width: float) -> float:
    """Standard deviation (stored units) of the noise that turns full dose into ``dose``."""
    return FULL_DOSE_NOISE * window_width * math.sqrt(1.0 / dose - 1.0)


def apply_noise(exam: ExamInput, params: NoiseParams) -> ExamInput:
    """Add lower-dose quantum noise to every image (the input exam is not modified)."""

    def one(index: int, ref, ds: Dataset):
        require_window(ds, "noise")
        sigma = added_sigma(params.dose, windows(ds)[0][1])
        if sigma == 0.0:
            return ref, ds
        rng = np.random.Generator(np.random.PCG64([params.seed, index]))
        pixels = stored_pixels(ds).astype(np.float64)
        breast = presentation_pixels(ds) > 0.0
        pixels[breast] += rng.normal(0.0, sigma, size=int(breast.sum()))
        replace_pixels(ds, pixels)
        return ref, ds

    return map_images(exam, one)


def noise_params() -> st.SearchStrategy[NoiseParams]:
    """Dose fraction 1.00 down to 0.50 in steps of 0.01, any noise seed."""
    return st.builds(
        NoiseParams, dose=st.integers(0, 50).map(lambda k: round(1.0 - k / 100, 2)), seed=SEEDS
    )


RELATION = Relation(
    name=NoiseParams.relation,
    kind="tolerance",
    expectation="quantum noise of a lower dose (50-100 %): score change within tolerance",
    params_type=NoiseParams,
    apply=apply_noise,
    strategy=noise_params(),
    position=60,
    at_level=lambda level: NoiseParams(dose=float(level)),
    levels=(0.2, 0.4, 0.6, 0.8, 1.0),  # M-SYNTH's dose grid
    grid=(NoiseParams(dose=0.5, seed=1), NoiseParams(dose=0.75, seed=2)),
)
