"""The phantom's shortcuts (a polar grid shared by both breasts, the nipple bump and hole filling on
a box, skin distances only where kept, one spectral filter per image size, two percentiles in one
call, grid rounding in place) give the plain computations' arrays bit for bit."""

import numpy as np
from scipy import ndimage

from harness.cases import phantom as ph
from harness.cases.devices import PROFILES


def reference_breast_geometry(shape, view, rows, cols, spacing, side_jitter):
    """The outline as the phantom computed it before the shortcuts."""
    height_mm = rows * spacing
    y = (np.arange(rows, dtype=np.float64) + 0.5)[:, None] * spacing
    x = (np.arange(cols, dtype=np.float64) + 0.5)[None, :] * spacing
    d = shape.depth_mm * (1 + side_jitter)
    if view == "CC":
        y0 = 0.5 * height_mm
        tilt = 0.0
        up, down = shape.height_ratio_up * d, shape.height_ratio_down * d
        depth = d
    else:
        y0 = 0.58 * height_mm
        tilt = np.deg2rad(shape.mlo_tilt_deg)
        up, down = 1.25 * y0, 0.95 * shape.height_ratio_down * d
        depth = d * 1.05
    down = min(down, 0.95 * (height_mm - y0))
    if view == "CC":
        up = min(up, 0.95 * y0)
    dy, dx = y - y0, x + 0 * y
    phi = np.arctan2(dy, dx) - tilt
    r = np.hypot(dx, dy)
    half = np.where(np.sin(phi) < 0, up, down)
    p = shape.exponent
    rho = (np.abs(np.cos(phi) / depth) ** p + np.abs(np.sin(phi) / half) ** p) ** (-1 / p)
    for k, (amp, ph_) in zip((3, 4, 5), shape.harmonics, strict=True):
        rho = rho * (1 + amp * np.cos(k * phi + ph_ + 7 * side_jitter))
    mask = (r <= rho) & (np.abs(phi + tilt) < np.pi / 2)
    nx, ny = depth * np.cos(tilt), y0 + depth * np.sin(tilt)
    mask |= np.hypot(x - (nx - 1.0), y - ny) < 4.0
    mask = ndimage.binary_fill_holes(mask)
    pad_px = int(np.ceil(40.0 / spacing))
    padded = np.pad(mask, ((pad_px, pad_px), (pad_px, 0)), mode="edge")
    skin_dist = ndimage.distance_transform_edt(padded, sampling=spacing)[pad_px:-pad_px, pad_px:]
    skin_dist = ph._q(skin_dist, 1e-6)
    muscle = np.zeros((rows, cols))
    if view == "MLO":
        top_w = shape.muscle_top_ratio * d
        y_end = (0.45 + shape.muscle_len_ratio) * y0
        t = np.clip(y / y_end, 0, 1)
        boundary = top_w * (1 - t) + 0.12 * top_w * np.sin(np.pi * t)
        inside = (x < boundary) & (y < y_end)
        soft = np.clip((boundary - x) / 1.5 + 0.5, 0, 1)
        muscle = np.where(inside | (soft > 0), soft, 0.0) * mask * (y < y_end)
    return ph.Geometry(
        mask, skin_dist, muscle, (ny / spacing - 0.5, nx / spacing - 0.5), spacing, np.pi + tilt
    )


def _same_geometry(a, b):
    assert np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.skin_dist, b.skin_dist)
    assert np.array_equal(a.muscle, b.muscle)
    assert a.nipple_rc == b.nipple_rc and a.axis_angle == b.axis_angle


def test_breast_geometry_with_a_shared_grid_matches_the_plain_outline():
    rng = np.random.default_rng(34)
    sizes = [PROFILES[m].geometry("ci") for m in PROFILES] + [(200, 160, 1.2), (96, 300, 0.8)]
    for n in range(20):
        rows, cols, spacing = sizes[n % len(sizes)]
        # breasts from small to deeper than the field (the outline then meets the image edge)
        depth = float(rng.uniform(20, 1.3 * cols * spacing))
        shape = ph.draw_shape(depth, float(rng.uniform(25, 100)), rng)
        for view in ("CC", "MLO"):
            grid = ph.view_grid(shape, view, rows, cols, spacing)
            for jitter in (0.0, float(rng.uniform(-0.04, 0.04))):
                want = reference_breast_geometry(shape, view, rows, cols, spacing, jitter)
                _same_geometry(
                    ph.breast_geometry(shape, view, rows, cols, spacing, jitter, grid), want
                )
                _same_geometry(ph.breast_geometry(shape, view, rows, cols, spacing, jitter), want)


def _masks(rng, n):
    for i in range(n):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        field = ndimage.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(0.5, 5))
        mask = field > rng.uniform(-0.6, 0.6)  # blobs with holes, touching the border or not
        if i % 9 == 0:
            mask[:] = True
        elif i % 9 == 1:
            mask[:] = False
        elif i % 9 == 2:
            mask[:] = False
            mask[h // 2, w // 2] = True
        yield mask


def test_hole_filling_on_the_box_matches_the_whole_image():
    for mask in _masks(np.random.default_rng(1), 400):
        assert np.array_equal(ph._fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_skin_distance_from_the_feature_transform_matches_the_whole_transform():
    rng = np.random.default_rng(2)
    for mask in _masks(rng, 300):
        pad = int(rng.integers(1, 15))
        spacing = float(rng.uniform(0.05, 1.5))
        padded = np.pad(mask, ((pad, pad), (pad, 0)), mode="edge")
        want = ndimage.distance_transform_edt(padded, sampling=spacing)[pad:-pad, pad:]
        assert np.array_equal(ph._cropped_edt(padded, spacing, pad), want)


def test_the_cached_spectral_filter_gives_the_same_fields():
    rng = np.random.default_rng(3)
    for shape, spacing in (((64, 52), 0.56), ((64, 52), 0.56), ((50, 71), 0.1), ((64, 52), 0.5)):
        seed = int(rng.integers(1 << 30))
        got = ph.power_law_field(shape, spacing, ph.BETA, np.random.default_rng(seed))
        white = np.random.default_rng(seed).standard_normal(shape)
        fy = np.fft.fftfreq(shape[0], d=spacing)[:, None]
        fx = np.fft.rfftfreq(shape[1], d=spacing)[None, :]
        f = np.maximum(np.sqrt(fy * fy + fx * fx), 0.01)
        field = np.fft.irfft2(np.fft.rfft2(white) * f ** (-ph.BETA / 2), s=shape)
        field -= field.mean()
        assert np.array_equal(got, ph._q(field / field.std(), 1e-6))


def test_two_percentiles_in_one_call_match_two_calls():
    rng = np.random.default_rng(4)
    for i in range(600):
        vals = rng.standard_normal(int(rng.integers(1, 3000))) * rng.uniform(0.1, 10)
        if i % 3 == 0:
            vals = np.round(vals, 2)  # ties
        both = [float(v) for v in np.percentile(vals, [0.5, 99.8])]
        assert both == [float(np.percentile(vals, 0.5)), float(np.percentile(vals, 99.8))]


def test_grid_rounding_in_place_matches_the_expression():
    rng = np.random.default_rng(5)
    for step in (1e-3, 1e-6, 1e-7, 1e-9, 1e-12):
        for _ in range(40):
            x = rng.standard_normal((37, 23)) * 10 ** rng.uniform(-12, 3)
            x[0, :3] = (-0.0, 0.5 * step, -1.5 * step)  # signed zero and ties to even
            want = np.round(x / step) * step
            got = ph._q(x, step)
            assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))
    assert ph._q(np.float64(0.1234567), 1e-6) == np.round(np.float64(0.1234567) / 1e-6) * 1e-6
