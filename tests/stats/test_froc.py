"""FROC points, lesion sensitivity at an FP rate, and the localisation hit rule."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import UsageError
from harness.stats.froc import froc_curve, is_hit, lesion_sensitivity_at_fp, match_marks

BOX = (100.0, 200.0, 140.0, 230.0)  # 40 x 30 px, centre (120, 215), half diagonal 25 px


@pytest.mark.parametrize(
    ("x", "y", "spacing", "r_min", "hit"),
    [
        (100.0, 200.0, 0.1, 0.0, True),  # corner, inside (edges included)
        (120.0, 215.0, 0.1, 0.0, True),  # centre
        (
            120.0,
            239.9,
            0.1,
            0.0,
            True,
        ),  # outside the box, 24.9 px from the centre < half diagonal 25
        (120.0, 240.1, 0.1, 0.0, False),  # 25.1 px > 25 px
        (120.0, 255.0, 0.1, 4.0, True),  # 40 px = 4.0 mm: within r_min
        (120.0, 255.1, 0.1, 4.0, False),
        (120.0, 255.0, (0.1, 0.2), 4.0, True),  # rows at 0.1 mm: 40 rows = 4 mm
        # columns at 0.2 mm: 40 columns = 8 mm > max(half diagonal 0.5*hypot(8, 3) = 4.27 mm, 4 mm)
        (160.0, 215.0, (0.1, 0.2), 4.0, False),
        (float("nan"), 215.0, 0.1, 4.0, False),
    ],
)
def test_is_hit(x: float, y: float, spacing, r_min: float, hit: bool) -> None:  # type: ignore[no-untyped-def]
    assert is_hit(x, y, BOX, spacing, r_min) is hit


def test_is_hit_bad_input() -> None:
    with pytest.raises(UsageError, match="box"):
        is_hit(1, 1, (5, 5, 1, 1), 0.1, 1.0)
    with pytest.raises(UsageError, match="spacing"):
        is_hit(1, 1, BOX, 0.0, 1.0)


def test_match_marks() -> None:
    boxes = [BOX, (400.0, 400.0, 410.0, 410.0)]
    marks = [(120.0, 215.0, 0.9), (121.0, 216.0, 0.4), (10.0, 10.0, 0.7)]
    lesion, nl = match_marks(marks, boxes, 0.1, 2.0)
    np.testing.assert_array_equal(lesion, [0.9, -np.inf])  # best hit kept, second lesion missed
    np.testing.assert_array_equal(nl, [0.7])  # the lower hitting mark is dropped, not an NL


def test_froc_curve_by_hand() -> None:
    lesions = [0.9, 0.6, -np.inf, 0.3]  # 4 lesions, one missed
    nl = [0.8, 0.6, 0.2, 0.1]
    c = froc_curve(lesions, nl, n_images=2)
    np.testing.assert_array_equal(c.thresholds, [np.inf, 0.9, 0.8, 0.6, 0.3, 0.2, 0.1])
    np.testing.assert_array_equal(c.llf, [0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75])
    np.testing.assert_array_equal(c.nlf, [0, 0, 0.5, 1.0, 1.0, 1.5, 2.0])
    assert lesion_sensitivity_at_fp(c, 0.0) == 0.25
    assert lesion_sensitivity_at_fp(c, 0.5) == 0.25
    assert lesion_sensitivity_at_fp(c, 1.0) == 0.75
    assert lesion_sensitivity_at_fp(c, 10.0) == 0.75
    assert np.all(np.diff(c.llf) >= 0) and np.all(np.diff(c.nlf) >= 0)


def test_froc_bad_input() -> None:
    with pytest.raises(UsageError, match="no lesions"):
        froc_curve([], [0.1], 1)
    with pytest.raises(UsageError, match="n_images"):
        froc_curve([0.5], [0.1], 0)
