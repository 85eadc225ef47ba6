"""The pixel readers' observer (harness/cases/conspicuity.py) on a breast of pure 1/f^3 structure:
the prewhitening matched filter finds a projected sphere, at its place, above the most
suspicious normal structure, and its scores do not depend on how the image is displayed."""

import numpy as np
import pytest

from harness.cases import phantom as ph
from harness.cases.conspicuity import focal_map, measure_view

SPACING = 0.5
SHAPE = (240, 200)


def _breast(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 1/f^3 texture inside a disc-shaped breast (no muscle), in display units."""
    rng = np.random.default_rng(seed)
    tex = ph.power_law_field(SHAPE, SPACING, ph.BETA, rng)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    mask = (yy - 120) ** 2 + (xx - 40) ** 2 < 150**2
    mask &= xx > 2
    return 1000 + 40 * tex / tex[mask].std(), mask


def _sphere(centre: tuple[float, float], radius_mm: float, peak: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    r2 = ((yy + 0.5 - centre[0]) ** 2 + (xx + 0.5 - centre[1]) ** 2) * SPACING**2
    return peak * np.sqrt(np.clip(1 - r2 / radius_mm**2, 0, None))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matched_filter_finds_a_sphere_in_breast_structure(seed):
    img, mask = _breast(seed)
    centre, radius = (120.0, 90.0), 5.0
    # A 10 mm sphere whose peak is 4 SDs of the whole breast's structure (most of that SD is
    # the slow variation across the breast, which the prewhitening removes).
    lesion = img + _sphere(centre, radius, 160.0)
    box = (centre[1] - 10, centre[0] - 10, centre[1] + 10, centre[0] + 10)
    with_lesion = measure_view(lesion, mask, None, SPACING, box)
    without = measure_view(img, mask, None, SPACING, box)
    assert with_lesion["lesion"] > without["lesion"] + 3
    assert with_lesion["lesion"] > with_lesion["background"]
    z, valid, f = focal_map(lesion, mask, None, SPACING)
    r, c = np.unravel_index(np.argmax(np.where(valid, z, -np.inf)), z.shape)
    assert np.hypot(r + 0.5 - centre[0], c + 0.5 - centre[1]) * SPACING * f <= 2.0


def test_scores_do_not_depend_on_display_scale():
    img, mask = _breast(4)
    a, _, _ = focal_map(img, mask, None, SPACING)
    b, _, _ = focal_map(3.0 * img + 250.0, mask, None, SPACING)
    np.testing.assert_allclose(a, b, atol=1e-6)
