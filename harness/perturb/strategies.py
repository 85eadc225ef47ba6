"""Hypothesis strategies over each relation's parameters, within the clinical range.

Every strategy draws on an integer grid and maps it to parameters, for two reasons: condition
ids stay short and exact (``gamma=0.9``, not ``gamma=0.9000000000000001``), and Hypothesis
shrinks integers towards 0, which each mapping sends to the *mildest* perturbation (the
identity where there is one). So a failing model is reported with the smallest perturbation
that breaks it, and ``hypothesis.find(strategy, lambda p: True)`` is that mildest example.
"""

from __future__ import annotations

from hypothesis import strategies as st

from harness.perturb.encoding import SYNTAXES, EncodingParams
from harness.perturb.intensity import IntensityParams
from harness.perturb.lesion import KINDS, LesionParams
from harness.perturb.metadata import MetadataParams
from harness.perturb.mirror import MirrorParams
from harness.perturb.noise import NoiseParams
from harness.perturb.order import OrderParams
from harness.perturb.resample import DETECTOR_RANGE_MM, ResampleParams

SEEDS = st.integers(0, 2**32 - 1)


def mirror_params() -> st.SearchStrategy[MirrorParams]:
    """The mirror has no parameters."""
    return st.just(MirrorParams())


def metadata_params() -> st.SearchStrategy[MetadataParams]:
    """Any seed; dates shifted by up to 10 years either way (0 = dates kept)."""
    return st.builds(MetadataParams, seed=SEEDS, date_shift_days=st.integers(-3650, 3650))


def encoding_params() -> st.SearchStrategy[EncodingParams]:
    """Every supported syntax (Explicit VR LE first), with or without the photometric flip."""
    return st.builds(EncodingParams, syntax=st.sampled_from(tuple(SYNTAXES)), invert=st.booleans())


def order_params() -> st.SearchStrategy[OrderParams]:
    """The 24 orders of a 4-view exam (rank 0 = original order)."""
    return st.builds(OrderParams, rank=st.integers(0, 23))


def intensity_params() -> st.SearchStrategy[IntensityParams]:
    """Gamma 0.80-1.25, width x0.85-1.15, centre +-0.10 widths, in steps of 0.01."""
    return st.builds(
        IntensityParams,
        gamma=st.integers(-20, 25).map(lambda k: round(1.0 + k / 100, 2)),
        width_scale=st.integers(-15, 15).map(lambda k: round(1.0 + k / 100, 2)),
        center_shift=st.integers(-10, 10).map(lambda k: round(k / 100, 2)),
    )


def noise_params() -> st.SearchStrategy[NoiseParams]:
    """Dose fraction 1.00 down to 0.50 in steps of 0.01, any noise seed."""
    return st.builds(
        NoiseParams, dose=st.integers(0, 50).map(lambda k: round(1.0 - k / 100, 2)), seed=SEEDS
    )


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


def lesion_params() -> st.SearchStrategy[LesionParams]:
    """Conspicuous masses or calcification clusters 8-20 mm, peak contrast 0.15-0.35, either breast.

    A directional relation demands a rise, so it draws no faint specks (a 3 mm mass need not move
    any model): the range is that of clearly visible lesions in a fatty breast. The synthetic set's
    masses have a median presentation contrast of 0.24 against a local texture SD of ~0.10, so the
    mildest lesion drawn here (8 mm, 0.15) is hard to see in a dense breast (measured in
    harness/reference/README.md, DK-INV-LESION). Shrinks towards that mildest case: the one that
    must still raise the score.
    """
    return st.builds(
        LesionParams,
        kind=st.sampled_from(KINDS),
        size_mm=st.integers(0, 24).map(lambda k: 8.0 + k / 2),
        contrast=st.integers(0, 20).map(lambda k: round(0.15 + k / 100, 2)),
        laterality=st.sampled_from(("L", "R")),
        seed=SEEDS,
    )
