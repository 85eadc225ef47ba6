"""Contract-level preprocessing tests (`docs/contracts.md` §3.2): known stored pixels -> the exact tensor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from vendors.mgfactory import make_mg

from harness.pixels import (
    Geometry,
    _window,
    chest_wall_on_right,
    image_to_model,
    model_to_image,
    place,
    presentation_pixels,
    raw_pixels,
    resample,
    to_model_plane,
)

RAMP = np.array([[0, 1000, 2000, 4095]], dtype=np.uint16)


def test_no_window_is_stored_over_full_scale():
    ds = make_mg(RAMP, window=None)
    np.testing.assert_array_equal(presentation_pixels(ds), (RAMP / 4095.0).astype(np.float32))


def test_monochrome1_is_inverted_after_the_lut():
    ds = make_mg(RAMP, photometric="MONOCHROME1")
    np.testing.assert_array_equal(
        presentation_pixels(ds), ((4095 - RAMP.astype(float)) / 4095.0).astype(np.float32)
    )


def test_linear_window_by_hand():
    # LINEAR, C=2000 W=1001: c'=1999.5, w'=1000; x<=1499.5 -> 0, x>2499.5 -> 4095
    ds = make_mg(np.array([[1499, 1500, 2000, 2499, 2500]], np.uint16), window=(2000, 1001))
    c, w = 1999.5, 1000.0
    expect = np.array(
        [0.0, ((1500 - c) / w + 0.5), ((2000 - c) / w + 0.5), ((2499 - c) / w + 0.5), 1.0]
    )
    np.testing.assert_allclose(presentation_pixels(ds)[0], expect, rtol=0, atol=1e-7)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_windows_match_pydicom_for_identity_rescale(function):
    arr = np.arange(0, 4096, 7, dtype=np.uint16).reshape(1, -1)
    ds = make_mg(arr, window=(1800, 1200), voi_function=function, rescale=(1, 0))
    expect = apply_voi_lut(arr.astype(np.float64), ds) / 4095.0
    np.testing.assert_allclose(
        presentation_pixels(ds), expect.astype(np.float32), rtol=0, atol=1e-6
    )


def _ps33_window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3 written as plain numpy expressions (float64, 12 bits)."""
    y = 4095.0
    if function == "LINEAR":
        c, w = c - 0.5, w - 1.0
        out = ((x - c) / w + 0.5) * y if w > 0 else np.where(x > c, y, 0.0)
        out = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, y, out))
    elif function == "LINEAR_EXACT":
        out = ((x - c) / w + 0.5) * y
        out = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, y, out))
    else:
        out = y / (1.0 + np.exp(-4.0 * (x - c) / w))
    return out


@settings(max_examples=60, deadline=None)
@given(
    center=st.floats(-200, 4300),
    width=st.floats(1, 6000),
    function=st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID"]),
    photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2"]),
)
def test_windowing_is_bit_identical_to_the_plain_expressions(center, width, function, photometric):
    """The in-place windowing (no full-size temporaries) must stay bit for bit what the
    expressions give: presentation values feed the model, and a changed bit changes a score."""
    arr = np.arange(0, 4096, dtype=np.uint16).reshape(16, 256)
    ds = make_mg(arr, window=(center, width), voi_function=function, photometric=photometric)
    x = apply_modality_lut(arr, ds).astype(np.float64)
    with np.errstate(over="ignore"):
        window = _ps33_window(x, center, width, function)
        assert np.array_equal(  # float64: the last bit shows, before float32 would hide it
            _window(x, center, width, function, 4095.0).view(np.uint64), window.view(np.uint64)
        )
        got = presentation_pixels(ds)
    out = np.clip(window, 0.0, 4095.0)
    out = 4095.0 - out if photometric == "MONOCHROME1" else out
    assert np.array_equal(got.view(np.uint32), (out / 4095.0).astype(np.float32).view(np.uint32))


def test_modality_rescale_before_window_and_output_in_bits_stored_range():
    # slope 2: stored 500 -> 1000; window C=1000 W=2000 LINEAR_EXACT -> ((1000-1000)/2000+0.5) = 0.5
    ds = make_mg(
        np.array([[0, 500, 1000]], np.uint16),
        window=(1000, 2000),
        voi_function="LINEAR_EXACT",
        rescale=(2, 0),
    )
    np.testing.assert_allclose(presentation_pixels(ds)[0], [0.0, 0.5, 1.0], atol=1e-7)


def test_voi_lut_sequence_is_used_and_scaled_to_bits_stored():
    lut = [0, 255, 128, 64]  # 8-bit LUT over stored values 0..3
    ds = make_mg(np.array([[0, 1, 2, 3]], np.uint16), window=(2000, 4000), voi_lut=lut, lut_bits=8)
    np.testing.assert_allclose(presentation_pixels(ds)[0], np.array(lut) / 255.0, atol=1e-7)


def test_raw_pixels_ignore_luts():
    ds = make_mg(RAMP, photometric="MONOCHROME1", window=(10, 2))
    np.testing.assert_array_equal(raw_pixels(ds), (RAMP / 4095.0).astype(np.float32))


def test_chest_wall_side_from_orientation_then_laterality():
    z = np.zeros((4, 4), np.uint16)
    assert chest_wall_on_right(make_mg(z, "R", "CC"))  # P\L
    assert not chest_wall_on_right(make_mg(z, "L", "CC"))  # A\R
    assert not chest_wall_on_right(
        make_mg(z, "R", "CC", orientation=["A", "L"])
    )  # stored already flipped
    assert chest_wall_on_right(make_mg(z, "R", "CC", orientation=False))


def test_right_breast_mirrored_and_fit_pads_away_from_chest_wall():
    # 2 x 4 image -> 4 x 4 model input; R CC (chest wall right) is mirrored; fit keeps aspect (scale 1)
    img = np.array([[0, 0, 1000, 4095], [0, 0, 1000, 4095]], np.uint16)
    plane, g = to_model_plane(make_mg(img, "R", "CC"), 4, 4)
    expect = np.zeros((4, 4), np.float32)
    expect[:2] = (img[:, ::-1] / 4095.0).astype(np.float32)
    np.testing.assert_array_equal(plane, expect)
    assert g == Geometry(2, 4, 4, 4, 1.0, 1.0, True)


def test_fit_shrink_is_exact_area_average():
    img = np.arange(16, dtype=np.uint16).reshape(4, 4) * 100
    plane, g = to_model_plane(
        make_mg(img, "L", "CC"), 2, 4
    )  # scale 0.5: 2x2 block means, padded right
    blocks = (img.reshape(2, 2, 2, 2).mean(axis=(1, 3)) / 4095.0).astype(np.float32)
    np.testing.assert_allclose(plane[:, :2], blocks, atol=1e-6)
    assert not plane[:, 2:].any()
    assert (g.content_height, g.content_width) == (2, 2)


def test_stretch_fills_and_scale_maps_range():
    img = np.full((4, 2), 4095, np.uint16)
    plane, g = to_model_plane(make_mg(img, "L", "CC"), 4, 4, resize="stretch", scale=(-1.0, 1.0))
    np.testing.assert_allclose(plane, 1.0)
    assert (g.scale_y, g.scale_x) == (1.0, 2.0)


def test_resample_preserves_mean_when_shrinking_non_integer_ratio():
    rng = np.random.default_rng(0)
    img = rng.random((91, 67)).astype(np.float32)
    out = resample(img, 30, 22)
    assert out.shape == (30, 22)
    assert abs(out.mean() - img.mean()) < 1e-3
    np.testing.assert_array_equal(out, resample(img, 30, 22))  # deterministic


def test_shrinking_is_anti_aliased():
    # A 1-pixel checkerboard must average to grey, not alias to stripes.
    img = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    out = resample(img, 16, 16)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(8, 400),
    cols=st.integers(8, 400),
    mirror=st.booleans(),
    resize=st.sampled_from(["fit", "stretch"]),
    fx=st.floats(0, 1),
    fy=st.floats(0, 1),
)
def test_model_to_image_round_trip(rows, cols, mirror, resize, fx, fy):
    _, g = place(np.zeros((rows, cols), np.float32), 64, 48, resize, mirror)
    col, row = fx * cols, fy * rows
    x, y = image_to_model(col, row, g)
    assert 0 <= x <= g.content_width + 1e-9 and 0 <= y <= g.content_height + 1e-9
    back = model_to_image(x, y, g)
    assert back == pytest.approx((col, row), abs=1e-9)


def test_model_to_image_finds_the_bright_pixel():
    img = np.zeros((100, 80), np.uint16)
    img[30, 70] = 4095  # near the chest wall of a right breast
    plane, g = to_model_plane(make_mg(img, "R", "CC"), 50, 40)
    r, c = np.unravel_index(np.argmax(plane), plane.shape)
    col, row = model_to_image(c + 0.5, r + 0.5, g)
    assert abs(col - 70.5) <= 1.0 and abs(row - 30.5) <= 1.0


_JPEG2000_THREADS = """
import sys, threading
import numpy as np
from pydicom.uid import JPEG2000Lossless
from vendors.mgfactory import make_mg
from harness import pixels
from harness.perturb.image import set_transfer_syntax
img = np.random.default_rng(0).integers(0, 4096, (256, 192)).astype(np.uint16)
bad = []
def work():
    for _ in range(10):
        ds = make_mg(img)
        set_transfer_syntax(ds, JPEG2000Lossless)
        ds._pixel_array = None  # decode the encoded bytes again, not pydicom's cached array
        ds._pixel_id = {}
        bad.append(not (pixels.decoded(ds) == img).all())
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
sys.exit(1 if any(bad) else 0)
"""


def test_jpeg2000_in_many_threads_at_once_neither_crashes_nor_corrupts():
    """OpenJPEG is not thread-safe and the runner (de)compresses in prefetch threads: without
    CODEC_LOCK this script dies of a segmentation fault every time (measured 5 of 5)."""
    tests = Path(__file__).resolve().parent
    run = subprocess.run(
        [sys.executable, "-c", _JPEG2000_THREADS], cwd=tests, capture_output=True, text=True
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
