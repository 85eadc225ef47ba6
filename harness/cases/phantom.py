"""Procedural 2-D mammography phantom: anatomy, X-ray physics and vendor "For Presentation" processing.

One view is made in these steps (research notes Topic B; in the spirit of VICTRE / M-SYNTH, but
2-D and procedural so that a CI-sized set builds in a minute):

1. **Outline** (left-breast orientation, chest wall at column 0): a half-superellipse footprint
   for CC; for MLO a longer footprint running up into the axilla with the pectoral muscle as a
   slightly convex band in the upper chest-wall corner. Nipple at the tip.
2. **Thickness**: compressed thickness T in the centre, a semicircular rounded edge of radius
   T/2 toward the skin line, and a 1.5 mm skin shell (seen tangentially: the skin line).
3. **Glandular fraction** g: a power-law random field (P(f) ~ 1/f^beta, beta = 3, Chen 2012
   measured 3.2 on CC) plus a duct-like field converging on the nipple, confined by fat layers
   (subcutaneous, retromammary), mapped through a smooth logistic ramp (width GLAND_RAMP = 3.5
   field SDs, no hard clip: a projection averages tissue over the compressed thickness, so the
   projected fraction has no flat plateaus or sharp fat/gland edges; low-density breasts end up
   in the ramp's exponential tail, i.e. roughly +-30 % relative fluctuation of g) to at most
   GMAX = 0.8, with the threshold chosen so that the volumetric glandular fraction
   (thickness-weighted mean of g) equals the woman's value. The left and right breasts share
   60 % of their texture, as real breasts are roughly mirror-symmetric.
4. **Line integral** at 20 keV (monoenergetic Beer-Lambert): adipose 0.513, glandular 0.798,
   skin 0.840, muscle 0.85 1/cm; lesions add their excess (``lesions.py``).
5. **Detector**: automatic exposure control scales the fluence to a fixed detector signal
   (times the recipe's dose level), scatter is a broad blur of the primary (SPR ~ 0.05 per cm),
   Poisson quantum noise on the counts per pixel, plus electronic noise.
6. **For Presentation**: log, periphery (thickness) equalisation, one unsharp-mask band of
   contrast enhancement, normalisation and a tone curve, background 0; vendor parameters in
   ``devices.py``. MONOCHROME1 profiles store the inverted values.

Determinism: float64 throughout and every field is rounded to a fixed grid (``_q``) right after
each FFT or transcendental function, so last-bit differences between CPUs (SIMD exp/log, FFT
code paths) cannot reach the stored integers except in the rare case of a value exactly on a
rounding boundary.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from harness.cases.devices import DeviceProfile
from harness.cases.lesions import MU_ADIPOSE, MU_GLANDULAR

MU_SKIN = 0.840
MU_MUSCLE = 0.85
SKIN_MM = 1.5
BETA = 3.0
GMAX = 0.8  # projected glandular fraction: even the densest path holds some fat (extremely dense
#             breasts, VGF up to 50 %, need local projected fractions of 70-80 % without saturating)
GLAND_RAMP = 3.5  # width (in SDs of the texture field) of the soft threshold fat -> glandular
DETECTOR_FLUENCE = 1.0e6  # photons per mm2 behind the breast centre at dose 1.0 (AEC target)


def _q(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a fixed grid: keeps CPU-dependent last bits out of everything downstream."""
    y = np.divide(x, step)
    if not isinstance(y, np.ndarray):
        return np.round(y) * step
    np.round(y, out=y)  # in place: the same values without two image-sized temporaries
    y *= step
    return y


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def power_law_field(
    shape: tuple[int, int],
    spacing: float,
    beta: float,
    rng: np.random.Generator,
    f_min: float = 0.01,
) -> np.ndarray:
    """Gaussian random field with power spectrum ~ 1/f^beta (f in cycles/mm), zero mean, unit SD."""
    white = rng.standard_normal(shape)
    spec = np.fft.rfft2(white)
    field = np.fft.irfft2(spec * _spectral_filter(shape, spacing, beta, f_min), s=shape)
    field -= field.mean()
    return _q(field / field.std(), 1e-6)


@functools.lru_cache(maxsize=1)  # an exam's six fields share one image size
def _spectral_filter(
    shape: tuple[int, int], spacing: float, beta: float, f_min: float
) -> np.ndarray:
    """The amplitude filter f^(-beta/2) on the rfft2 grid (read-only)."""
    fy = np.fft.fftfreq(shape[0], d=spacing)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=spacing)[None, :]
    f = np.maximum(np.sqrt(fy * fy + fx * fx), f_min)
    out = f ** (-beta / 2)
    out.flags.writeable = False
    return out


def lowpass(x: np.ndarray, sigma_mm: float, spacing: float) -> np.ndarray:
    """Gaussian low-pass; large kernels run on a block-averaged grid and are upsampled bilinearly."""
    sigma_px = sigma_mm / spacing
    f = int(max(1, sigma_px // 4))
    if f == 1:
        return ndimage.gaussian_filter(x, sigma_px, mode="nearest")
    h, w = x.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    xp = np.pad(x, ((0, hp - h), (0, wp - w)), mode="edge")
    small = xp.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / f, mode="nearest")
    big = ndimage.zoom(
        small, (hp / small.shape[0], wp / small.shape[1]), order=1, mode="nearest", grid_mode=True
    )
    return big[:h, :w]


@dataclass(frozen=True)
class BreastShape:
    """A woman's breast shape, shared by her views (left and right differ slightly)."""

    depth_mm: float  # chest wall to nipple
    height_ratio_up: float  # half-height above the nipple axis / depth (CC: lateral)
    height_ratio_down: float
    exponent: float
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) for k = 3, 4, 5
    mlo_tilt_deg: float
    muscle_top_ratio: float  # pectoral muscle width at the top edge / depth
    muscle_len_ratio: float  # muscle length down the chest wall / image height
    thickness_mm: float


@dataclass(frozen=True)
class Geometry:
    """The outline and derived maps of one view (left-breast orientation)."""

    mask: np.ndarray  # breast incl. skin
    skin_dist: np.ndarray  # mm from the skin line (chest wall is not skin)
    muscle: np.ndarray  # 0..1 pectoral muscle weight (MLO only)
    nipple_rc: tuple[float, float]
    spacing: float
    axis_angle: (
        float  # direction nipple -> chest wall along the breast axis (radians, image coords)
    )


def draw_shape(depth_mm: float, thickness_mm: float, rng: np.random.Generator) -> BreastShape:
    return BreastShape(
        depth_mm=depth_mm,
        height_ratio_up=float(rng.uniform(0.95, 1.25)),
        height_ratio_down=float(rng.uniform(0.85, 1.1)),
        exponent=float(rng.uniform(1.8, 2.4)),
        harmonics=tuple(
            (float(rng.uniform(0, 0.025)), float(rng.uniform(0, 2 * np.pi))) for _ in range(3)
        ),
        mlo_tilt_deg=float(rng.uniform(5, 15)),
        muscle_top_ratio=float(rng.uniform(0.3, 0.5)),
        muscle_len_ratio=float(rng.uniform(0.15, 0.5)),
        thickness_mm=thickness_mm,
    )


@dataclass(frozen=True)
class ViewGrid:
    """Polar coordinates of the pixels about the nipple axis's chest-wall end, for one view.

    They depend on the view and the woman's MLO tilt, not on the side: both breasts' views share
    one grid (only the outline's size and ripple differ by side)."""

    y0: float  # mm, the axis's row at the chest wall
    tilt: float  # radians
    phi: np.ndarray  # angle from the axis
    r: np.ndarray  # mm from (y0, 0)
    sin: np.ndarray  # sin(phi)
    cos: np.ndarray  # cos(phi)
    front: np.ndarray  # bool: in front of the chest wall


def view_grid(shape: BreastShape, view: str, rows: int, cols: int, spacing: float) -> ViewGrid:
    height_mm = rows * spacing
    y = (np.arange(rows, dtype=np.float64) + 0.5)[:, None] * spacing
    x = (np.arange(cols, dtype=np.float64) + 0.5)[None, :] * spacing
    if view == "CC":
        y0, tilt = 0.5 * height_mm, 0.0
    else:  # MLO: nipple below the middle, tissue up into the axilla past the top edge
        y0, tilt = 0.58 * height_mm, float(np.deg2rad(shape.mlo_tilt_deg))
    dy, dx = y - y0, x + 0 * y
    phi = np.arctan2(dy, dx) - tilt
    r = np.hypot(dx, dy)
    front = np.abs(phi + tilt) < np.pi / 2
    return ViewGrid(y0, tilt, phi, r, np.sin(phi), np.cos(phi), front)


def breast_geometry(
    shape: BreastShape,
    view: str,
    rows: int,
    cols: int,
    spacing: float,
    side_jitter: float,
    grid: ViewGrid | None = None,
) -> Geometry:
    """Outline, skin distance, muscle and nipple for one view (``grid``: ``view_grid``'s)."""
    if grid is None:
        grid = view_grid(shape, view, rows, cols, spacing)
    height_mm = rows * spacing
    y = (np.arange(rows, dtype=np.float64) + 0.5)[:, None] * spacing
    x = (np.arange(cols, dtype=np.float64) + 0.5)[None, :] * spacing
    d = shape.depth_mm * (1 + side_jitter)
    y0, tilt, phi = grid.y0, grid.tilt, grid.phi
    if view == "CC":
        up, down = shape.height_ratio_up * d, shape.height_ratio_down * d
        depth = d
    else:
        up, down = 1.25 * y0, 0.95 * shape.height_ratio_down * d
        depth = d * 1.05
    # Fit: the breast must stay inside the field (CI images keep the whole detector field).
    down = min(down, 0.95 * (height_mm - y0))
    if view == "CC":
        up = min(up, 0.95 * y0)
    half = np.where(grid.sin < 0, up, down)
    p = shape.exponent
    rho = (np.abs(grid.cos / depth) ** p + np.abs(grid.sin / half) ** p) ** (-1 / p)
    for k, (amp, ph) in zip((3, 4, 5), shape.harmonics, strict=True):
        rho = rho * (1 + amp * np.cos(k * phi + ph + 7 * side_jitter))
    mask = (grid.r <= rho) & grid.front
    # Nipple tip: a small bump at the end of the axis (hypot >= each leg, so the rows and columns
    # within 4 mm of the tip, with a margin for rounding, hold all of it).
    nx, ny = depth * np.cos(tilt), y0 + depth * np.sin(tilt)
    bx, by = x - (nx - 1.0), y - ny
    bc = np.flatnonzero(np.abs(bx[0]) < 4.0 + 1e-6)
    br = np.flatnonzero(np.abs(by[:, 0]) < 4.0 + 1e-6)
    if bc.size and br.size:
        box = slice(br[0], br[-1] + 1), slice(bc[0], bc[-1] + 1)
        mask[box] |= np.hypot(bx[:, box[1]], by[box[0], :]) < 4.0
    mask = _fill_holes(mask)
    pad_px = int(np.ceil(40.0 / spacing))
    padded = np.pad(
        mask, ((pad_px, pad_px), (pad_px, 0)), mode="edge"
    )  # chest wall/edges are not skin
    skin_dist = _q(_cropped_edt(padded, spacing, pad_px), 1e-6)
    muscle = np.zeros((rows, cols))
    if view == "MLO":
        top_w = shape.muscle_top_ratio * d
        y_end = (0.45 + shape.muscle_len_ratio) * y0
        t = np.clip(y / y_end, 0, 1)
        boundary = top_w * (1 - t) + 0.12 * top_w * np.sin(np.pi * t)  # slightly convex
        inside = (x < boundary) & (y < y_end)
        edge_mm = 1.5
        soft = np.clip((boundary - x) / edge_mm + 0.5, 0, 1)
        muscle = np.where(inside | (soft > 0), soft, 0.0) * mask * (y < y_end)
    return Geometry(
        mask, skin_dist, muscle, (ny / spacing - 0.5, nx / spacing - 0.5), spacing, np.pi + tilt
    )


def _cropped_edt(padded: np.ndarray, spacing: float, pad: int) -> np.ndarray:
    """``distance_transform_edt(padded, sampling=spacing)[pad:-pad, pad:]``, with the distances
    taken (by scipy's own expression) from the feature transform only where they are kept."""
    ft = ndimage.distance_transform_edt(
        padded, sampling=spacing, return_distances=False, return_indices=True
    )
    rows, cols = padded.shape[0] - 2 * pad, padded.shape[1] - pad
    dy = ft[0, pad:-pad, pad:] - np.arange(pad, pad + rows, dtype=ft.dtype)[:, None]
    dx = ft[1, pad:-pad, pad:] - np.arange(pad, pad + cols, dtype=ft.dtype)[None, :]
    dy = dy.astype(np.float64) * spacing
    dx = dx.astype(np.float64) * spacing
    return np.sqrt(dy * dy + dx * dx)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` on the mask's bounding box plus one background pixel: the
    background around that box reaches the image border, so the same pixels are holes."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return mask.copy()
    box = (
        slice(max(0, rows[0] - 1), rows[-1] + 2),
        slice(max(0, cols[0] - 1), cols[-1] + 2),
    )
    out = np.zeros_like(mask)
    out[box] = ndimage.binary_fill_holes(mask[box])
    return out


def thickness_maps(geom: Geometry, thickness_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Total and inner (skin excluded) thickness [mm] with a rounded compressed edge."""
    d = geom.skin_dist
    radius = thickness_mm / 2
    total = (
        thickness_mm * np.sqrt(np.clip(1 - (1 - np.clip(d / radius, 0, 1)) ** 2, 0, 1)) * geom.mask
    )
    inner_t = thickness_mm - 2 * SKIN_MM
    inner = inner_t * np.sqrt(
        np.clip(1 - (1 - np.clip((d - SKIN_MM) / (inner_t / 2), 0, 1)) ** 2, 0, 1)
    )
    inner = inner * (d > SKIN_MM) * geom.mask
    return _q(total, 1e-6), _q(np.minimum(inner, total), 1e-6)


def duct_field(geom: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Strands converging on the nipple: noise smooth along the radius, sharp across it."""
    rows, cols = geom.mask.shape
    nr, na = 96, 360
    noise = ndimage.gaussian_filter(
        rng.standard_normal((nr, na)), (5.0, 0.8), mode=("nearest", "wrap")
    )
    yy = np.arange(rows, dtype=np.float64)[:, None] - geom.nipple_rc[0]
    xx = np.arange(cols, dtype=np.float64)[None, :] - geom.nipple_rc[1]
    r = np.hypot(yy, xx) * geom.spacing
    ang = np.arctan2(yy, xx) % (2 * np.pi)
    field = ndimage.map_coordinates(
        noise,
        [np.clip(r / 200.0 * (nr - 1), 0, nr - 1), ang / (2 * np.pi) * na],
        order=1,
        mode="grid-wrap",
    )
    field -= field.mean()
    return _q(field / (field.std() + 1e-12), 1e-6)


def glandular_fraction(
    geom: Geometry,
    inner: np.ndarray,
    vgf: float,
    shared: np.ndarray,
    own: np.ndarray,
    ducts: np.ndarray,
) -> np.ndarray:
    """Fraction of the inner thickness that is glandular, with thickness-weighted mean ``vgf``."""
    x_mm = (np.arange(geom.mask.shape[1]) + 0.5)[None, :] * geom.spacing
    # the chest-wall ramp depends on the column only: one row of it, broadcast in the product
    env = _smoothstep(geom.skin_dist, 3.0, 12.0) * _smoothstep(x_mm, 4.0, 18.0)
    z = np.sqrt(0.6) * shared + np.sqrt(0.4) * own + 0.2 * ducts + 1.0 * env
    w = inner * geom.mask
    wsum = w.sum()

    def ramp(tau: float) -> np.ndarray:
        # A smooth logistic ramp (no hard clip at 0 or GMAX): the projected glandular fraction is
        # an average over the compressed thickness, so it has no sharp plateaus or edges; fat
        # regions keep a little fibrous texture and dense regions stay textured, not flat.
        return 0.5 * (1 + np.tanh((z - tau) / GLAND_RAMP))

    def mean_g(tau: float) -> float:
        return float((ramp(tau) * GMAX * env * w).sum() / wsum)

    weighted = (env != 0) & (w != 0)  # every other pixel adds exactly 0 to mean_g's sum
    zs, cs = z[weighted], GMAX * env[weighted] * w[weighted]
    above, below = threshold_bounds(zs, cs, float(wsum), vgf)
    tau = replay_bisection(mean_g, vgf, above, below)
    return _q(ramp(tau) * GMAX * env * geom.mask, 1e-6)


EPS = float(np.finfo(np.float64).eps)


def replay_bisection(
    mean_g: Callable[[float], float], vgf: float, above: float, below: float
) -> float:
    """The threshold tau with ``mean_g(tau) = vgf``: 50 halvings of [-10, 10], rounded to 1e-9.

    ``mean_g`` decreases with tau; it is called only for midpoints in (above, below), where its
    outcome is not already known (``threshold_bounds``), and not at all once the bracket lies
    inside one rounding cell (every later midpoint lies in [lo, hi], and rounding is monotone).
    """
    lo, hi = -10.0, 10.0
    for _ in range(50):
        if round(lo, 9) == round(hi, 9):
            break
        mid = 0.5 * (lo + hi)
        if mid <= above or (mid < below and mean_g(mid) > vgf):
            lo = mid
        else:
            hi = mid
    return round(0.5 * (lo + hi), 9)


def threshold_bounds(z: np.ndarray, c: np.ndarray, wsum: float, vgf: float) -> tuple[float, float]:
    """(above, below): ``mean_g(tau) > vgf`` for sure at every tau <= above, and not at tau >= below.

    ``mean_g(tau)`` is ``sum(GMAX * ramp(z - tau) * env * w) / wsum`` over the whole image, whose
    n weighted pixels (``z``, ``c = GMAX * env * w``) are the only nonzero terms. Its true
    (real-number) value m(tau) decreases with tau, and any float evaluation of it, whatever its
    summation order, lies within ``rel * m + small`` of m: a term meets at most n - 1 inexact
    additions (adding an exact zero is exact), so the sum is within ``gamma_n = n u / (1 - n u)``
    relative, plus a few ulps of argument, tanh and products per term (``small``); u = EPS / 2,
    and both are taken twice over. So one estimate ``est(t)``, taken on the weighted pixels alone in
    any order, that is above ``vgf`` even after both errors proves the outcome for every
    tau <= t, and one below it for every tau >= t. Newton's method on the estimate brings the two
    together around the root, a few ``rel * vgf / |slope|`` apart.
    """
    above, below = -np.inf, np.inf
    if not wsum > 0 or not c.size:
        return above, below
    rel = EPS * (c.size + 16)
    small = GMAX * EPS * (float(np.abs(z).max()) + 16)

    def record(t: float, value: float) -> None:
        nonlocal above, below
        if (value - small) * (1 - rel) / (1 + rel) - small > vgf:  # mean_g(tau <= t) > vgf
            above = max(above, t)
        elif (value + small) * (1 + rel) / (1 - rel) + small < vgf:  # mean_g(tau >= t) < vgf
            below = min(below, t)

    margin = 2 * rel * abs(vgf) + 4 * small
    # The root in single precision (a tanh five times cheaper; bounds nothing), one double Newton
    # step from there (error ~ its square), then a probe either side, 1.2 margin / |slope| away:
    # almost always certain at once, else four times further out.
    t = _newton(0.0, z.astype(np.float32), c.astype(np.float32), wsum, vgf, 1e-6 * abs(vgf))[0]
    value, slope = _estimate(t, z, c, wsum)
    record(t, value)
    if not (np.isfinite(value) and slope < 0):
        return above, below
    t = min(max(t - (value - vgf) / slope, -10.0), 10.0)
    step = 1.2 * margin / -slope
    for _ in range(8):
        if above < t - step:
            record(t - step, _estimate(t - step, z, c, wsum, slope=False)[0])
        if below > t + step:
            record(t + step, _estimate(t + step, z, c, wsum, slope=False)[0])
        if (above >= t - step and below <= t + step) or below <= -10.0 or above >= 10.0:
            break  # every midpoint of the bisection in (-10, 10) outside (above, below)
        step *= 4
    return above, below


def _estimate(
    t: float, z: np.ndarray, c: np.ndarray, wsum: float, slope: bool = True
) -> tuple[float, float]:
    """``mean_g(t)`` up to rounding (in ``z``'s precision), and its derivative (or NaN)."""
    th = np.tanh((z - t) / GLAND_RAMP)
    value = float((0.5 * (1 + th) * c).sum(dtype=np.float64)) / wsum
    if not slope:
        return value, np.nan
    return value, -float(((1 - th * th) * c).sum(dtype=np.float64)) / (2 * GLAND_RAMP * wsum)


def _newton(
    t: float, z: np.ndarray, c: np.ndarray, wsum: float, vgf: float, tol: float
) -> tuple[float, float, float]:
    """Safeguarded Newton on est(t) = vgf in [-10, 10]: (t, est(t), slope) where it stopped."""
    a, b = -10.0, 10.0  # est(a) > vgf >= est(b) wherever evaluated
    a_seen = b_seen = False
    value = slope = np.nan
    for _ in range(60):
        value, slope = _estimate(t, z, c, wsum)
        if not np.isfinite(value) or abs(value - vgf) <= tol:
            break
        if value > vgf:
            a, a_seen = t, True
        else:
            b, b_seen = t, True
        if b - a <= 1e-12:
            break
        step = t - (value - vgf) / slope if slope < 0 else np.nan
        if a < step < b:
            t = step
        elif step <= a and not a_seen:  # the root may lie beyond the bisection's bracket
            t = a
        elif step >= b and not b_seen:
            t = b
        else:
            t = 0.5 * (a + b)
    return t, value, slope


@dataclass(frozen=True)
class ViewImage:
    """One rendered view before DICOM encoding (left-breast orientation unless mirrored)."""

    pixels: np.ndarray  # uint16 stored values
    mask: np.ndarray
    glandular: np.ndarray
    line_integral: np.ndarray  # noise-free, for measurements
    window: tuple[float, float]  # (centre, width) of the default window on stored values


def line_integral(
    geom: Geometry, total: np.ndarray, inner: np.ndarray, g: np.ndarray
) -> np.ndarray:
    """Attenuation -ln(I/I0) through tissue, skin and pectoral muscle (no lesions)."""
    tissue = inner * (MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g) + (total - inner) * MU_SKIN
    muscle_l = total * MU_MUSCLE
    m = 0.6 * geom.muscle  # the muscle fills part of the compressed thickness near the chest wall
    return 0.1 * (tissue * (1 - m) + muscle_l * m)  # mm -> cm


def expose(
    l_int: np.ndarray, geom: Geometry, thickness_mm: float, dose: float, rng: np.random.Generator
) -> np.ndarray:
    """Detector counts per pixel (Poisson) and the unattenuated counts N0, via AEC."""
    primary = _q(np.exp(-_q(l_int, 1e-9)), 1e-12)
    spr = 0.05 * thickness_mm / 10.0
    inside = geom.mask.astype(np.float64)
    scatter = spr * _q(lowpass(primary * inside, 25.0, geom.spacing), 1e-12)
    central = geom.mask & (geom.skin_dist > 10.0)
    ref = (
        float(np.median(primary[central]))
        if central.any()
        else float(np.median(primary[geom.mask]))
    )
    n_pixel = DETECTOR_FLUENCE * dose * geom.spacing**2
    n0 = n_pixel / ref
    lam = _q(n0 * (primary + scatter), 1e-3)
    counts = rng.poisson(lam).astype(np.float64)
    counts += np.rint(rng.normal(0.0, 2.0 + 1e-4 * n_pixel, size=counts.shape))  # electronic noise
    return np.maximum(counts, 1.0) / n0


def present(
    signal: np.ndarray, geom: Geometry, profile: DeviceProfile
) -> tuple[np.ndarray, tuple[float, float]]:
    """Vendor "For Presentation" processing -> stored uint16 values and a default window."""
    sp = geom.spacing
    log = _q(-np.log(signal), 1e-7)
    m = geom.mask.astype(np.float64)
    # Periphery equalisation: lift the thin rim toward the central level (normalised convolution).
    lp = lowpass(log * m, 6.0, sp) / np.maximum(lowpass(m, 6.0, sp), 1e-6)
    central = geom.mask & (geom.skin_dist > 15.0) & (geom.muscle < 0.5)
    if not central.any():
        central = geom.mask
    level = float(np.percentile(lp[central], 40))
    lift = (
        profile.periphery_equalisation
        * np.clip(level - lp, 0, None)
        * _smoothstep(geom.skin_dist, 0.0, 1.0)
    )
    eq = log + lift * m
    enh = eq + profile.unsharp_amount * (eq - lowpass(eq, profile.unsharp_sigma_mm, sp))
    enh = _q(enh, 1e-7)
    vals = enh[central]
    lo, hi = (float(v) for v in np.percentile(vals, [0.5, 99.8]))  # one partition for both
    lo_lvl = max(lo - 0.35 * (hi - lo), 1e-3)  # thin periphery sits below the central range
    v = np.clip((enh - lo_lvl) / (hi - lo_lvl), 0, 1) ** profile.gamma
    r0, r1 = profile.output_range
    out = (r0 + (r1 - r0) * v) * np.clip(log / (0.5 * lo_lvl), 0, 1)  # background fades to 0
    out = np.where(geom.mask | (log > 0.25 * lo_lvl), out, 0.0)
    top = profile.max_value
    stored = np.clip(np.rint(_q(out, 1e-7) * top), 0, top)
    centre, width = 0.5 * (r0 + r1) * top, 1.05 * (r1 - r0) * top
    if profile.photometric == "MONOCHROME1":
        stored = top - stored
        centre = top - centre
    return stored.astype(np.uint16), (round(centre, 1), round(width, 1))
