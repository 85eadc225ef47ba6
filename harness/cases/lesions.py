"""Lesion models: masses (circumscribed, spiculated), calcification clusters, architectural distortion.

Lesions are material in the compressed breast, as in VICTRE/OpenVCT insertion: a mass replaces
the background tissue along its chord (excess attenuation ``(mu_lesion - mu_bg) * chord``), a
calcification is a small sphere of hydroxyapatite (malignant) or calcium oxalate (benign) whose
transmission is averaged over sub-pixels (partial volume), and an architectural distortion is a
radial pull of the glandular tissue plus thin radiating strands without a central mass.
Attenuation coefficients at 20 keV are the research table's (xraydb, Hammerstein tissues);
the malignant mass is 5 % more attenuating than fibroglandular tissue (Johns & Yaffe 1987; VICTRE's
1.06 g/cm3 mass gives 2.4 %, Carroll 1994 10.9 %), so in a dense breast its contrast against
glandular tissue is only a few percent (masking), and in a fatty breast about 60 %.

All functions work on a local window and return what they add to the line integral ``L``
(attenuation, in units of mu * cm), plus the lesion's box in pixel coordinates
``[x0, y0, x1, y1]`` (columns/rows; (0, 0) is the top-left corner of the top-left pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Linear attenuation coefficients at 20 keV [1/cm] (research notes B.2, xraydb 4.5.8).
MU_ADIPOSE = 0.513
MU_GLANDULAR = 0.798
# Invasive carcinoma: Johns & Yaffe 1987 measured IDC 0.844 vs fibroglandular 0.802 1/cm at 20 keV
# (+5.2 %); Carroll 1994 (14-18 keV) +10.9 %; VICTRE's glandular composition at 1.06 g/cm3 gives +2.4 %.
# We use Carroll's +10.9 %, the top of the published range, measured at the low energies
# (14-18 keV) where mammography contrast is made.
MU_MASS = MU_GLANDULAR * 1.109
MU_BENIGN_MASS = 0.805  # fibroadenoma / cyst: close to glandular tissue and water (0.810)
MU_HYDROXYAPATITE = 20.73
MU_CA_OXALATE = 8.76


@dataclass(frozen=True)
class LesionRender:
    """What a lesion adds to one view."""

    rows: slice
    cols: slice
    delta_l: np.ndarray  # added to the line integral inside (rows, cols)
    box: tuple[float, float, float, float]
    core_mask: np.ndarray  # where the lesion's own material is (for contrast measurement)


def _window(
    shape: tuple[int, int], center_rc: tuple[float, float], half_px: float
) -> tuple[slice, slice]:
    r, c = center_rc
    h = int(np.ceil(half_px)) + 2
    r0, r1 = max(0, int(r) - h), min(shape[0], int(r) + h + 1)
    c0, c1 = max(0, int(c) - h), min(shape[1], int(c) + h + 1)
    return slice(r0, r1), slice(c0, c1)


def _local_mm(
    rows: slice, cols: slice, center_rc: tuple[float, float], spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (dy, dx) in mm of the window's pixel centres from the lesion centre."""
    rr = (np.arange(rows.start, rows.stop, dtype=np.float64) + 0.5 - center_rc[0]) * spacing
    cc = (np.arange(cols.start, cols.stop, dtype=np.float64) + 0.5 - center_rc[1]) * spacing
    return rr[:, None] + 0 * cc[None, :], cc[None, :] + 0 * rr[:, None]


def _box_of(
    mask: np.ndarray, rows: slice, cols: slice, pad: float = 0.0
) -> tuple[float, float, float, float]:
    rr = np.flatnonzero(mask.any(axis=1))
    cc = np.flatnonzero(mask.any(axis=0))
    if rr.size == 0:  # a lesion too small for the grid still gets a one-pixel box
        return (float(cols.start), float(rows.start), float(cols.start + 1), float(rows.start + 1))
    return (
        float(cols.start + cc[0]) - pad,
        float(rows.start + rr[0]) - pad,
        float(cols.start + cc[-1] + 1) + pad,
        float(rows.start + rr[-1] + 1) + pad,
    )


def _spicules(
    dy: np.ndarray,
    dx: np.ndarray,
    spacing: float,
    n: int,
    r_start: float,
    length: tuple[float, float],
    width_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Projected path length [mm] of thin radiating strands, resolution-independent.

    A strand of radius w carries pi w^2 mm^2 of material per mm of length; its projection is spread
    with a Gaussian of width sqrt(w^2/4 + (spacing/2.5)^2) so that sub-pixel strands keep their
    material (no aliasing on the CI-sized grid).
    """
    out = np.zeros_like(dy)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    for ang in angles:
        ln = float(rng.uniform(*length))
        w0 = width_mm * float(rng.uniform(0.7, 1.3))
        ux, uy = np.cos(ang), np.sin(ang)
        s = dx * ux + dy * uy - r_start  # along the strand from its root
        d = np.abs(-dx * uy + dy * ux)  # across
        on = (s > -spacing) & (s < ln)
        w = w0 * np.clip(1 - s / ln, 0.15, 1.0)  # tapers toward the tip
        sigma = np.sqrt(w * w / 4 + (spacing / 2.5) ** 2)
        area = np.pi * w * w
        out += np.where(
            on, area / (np.sqrt(2 * np.pi) * sigma) * np.exp(-0.5 * (d / sigma) ** 2), 0.0
        )
    return out


def render_mass(
    shape: tuple[int, int],
    spacing: float,
    center_rc: tuple[float, float],
    size_mm: float,
    margin: str,
    contrast: float,
    malignant: bool,
    thickness_mm: float,
    g_local_fn,
    rng: np.random.Generator,
) -> LesionRender:
    """A lobulated ellipsoid mass, with radiating spicules when ``margin == 'spiculated'``.

    ``g_local_fn(rows, cols)`` returns the glandular fraction in the window (the tissue the mass replaces).
    """
    a = size_mm / 2 * float(rng.uniform(0.85, 1.15))
    b = size_mm / 2 * float(rng.uniform(0.75, 1.0))
    c = min(0.5 * (a + b), 0.45 * thickness_mm)
    theta = float(rng.uniform(0, np.pi))
    spic = margin == "spiculated"
    reach = max(a, b) * (2.6 if spic else 1.2)
    rows, cols = _window(shape, center_rc, reach / spacing)
    dy, dx = _local_mm(rows, cols, center_rc, spacing)
    xr = dx * np.cos(theta) + dy * np.sin(theta)
    yr = -dx * np.sin(theta) + dy * np.cos(theta)
    phi = np.arctan2(yr, xr)
    amp = (0.12, 0.08, 0.06, 0.04, 0.03) if spic else (0.05, 0.03, 0.02, 0.0, 0.0)
    lob = np.ones_like(phi)
    for k, am in zip(range(2, 7), amp, strict=True):
        lob += (
            am * float(rng.uniform(0.5, 1.0)) * np.cos(k * phi + float(rng.uniform(0, 2 * np.pi)))
        )
    rho = np.sqrt((xr / a) ** 2 + (yr / b) ** 2) / lob
    # Sub-pixel smoothing of the rim: the chord of a sphere already goes to zero continuously.
    chord = 2 * c * np.sqrt(np.clip(1 - rho * rho, 0, None))
    core = rho < 1.0
    if spic:
        n = int(rng.integers(10, 22))
        chord = chord + _spicules(
            dy, dx, spacing, n, 0.8 * min(a, b), (0.6 * a, 1.6 * a), 0.45, rng
        )
    g = g_local_fn(rows, cols)
    mu_bg = MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g
    mu_lesion = MU_MASS if malignant else MU_BENIGN_MASS
    delta = contrast * (mu_lesion - mu_bg) * chord * 0.1  # chord mm -> cm
    pad = (0.3 * a / spacing) if spic else 0.0
    return LesionRender(rows, cols, delta, _box_of(core, rows, cols, pad), core)


def render_calcifications(
    shape: tuple[int, int],
    spacing: float,
    center_rc: tuple[float, float],
    extent_mm: float,
    count: int,
    contrast: float,
    malignant: bool,
    g_local_fn,
    rng: np.random.Generator,
) -> LesionRender:
    """A cluster of ``count`` specks (0.1-1 mm malignant, coarser benign) within ``extent_mm``."""
    half = extent_mm / 2 + 1.5
    rows, cols = _window(shape, center_rc, half / spacing)
    delta = np.zeros((rows.stop - rows.start, cols.stop - cols.start))
    core = np.zeros(delta.shape, dtype=bool)
    mu_calc = MU_HYDROXYAPATITE if malignant else MU_CA_OXALATE
    g = g_local_fn(rows, cols)
    ss = int(np.clip(np.ceil(spacing / 0.05), 1, 10))  # sub-pixel sampling at <= 50 um
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    for _ in range(count):
        rr = extent_mm / 2 * np.sqrt(rng.uniform(0, 1))
        ang = rng.uniform(0, 2 * np.pi)
        py = center_rc[0] + rr * np.sin(ang) / spacing
        px = center_rc[1] + rr * np.cos(ang) / spacing
        if malignant:
            diam = float(np.exp(rng.uniform(np.log(0.1), np.log(1.0))))
        else:
            diam = float(rng.uniform(0.5, 1.5))
        elong = float(rng.uniform(1.0, 2.0)) if malignant else 1.0  # pleomorphic/linear forms
        rad_y, rad_x = diam / 2, diam / 2 * elong
        hw = int(np.ceil(max(rad_x, rad_y) / spacing)) + 1
        r0, r1 = max(rows.start, int(py) - hw), min(rows.stop, int(py) + hw + 1)
        c0, c1 = max(cols.start, int(px) - hw), min(cols.stop, int(px) + hw + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        ys = (np.arange(r0, r1)[:, None] + 0.5 + sub[None, :]).reshape(-1)
        xs = (np.arange(c0, c1)[:, None] + 0.5 + sub[None, :]).reshape(-1)
        yy = (ys[:, None] - py) * spacing
        xx = (xs[None, :] - px) * spacing
        chord = (
            2 * rad_y * np.sqrt(np.clip(1 - (yy / rad_y) ** 2 - (xx / rad_x) ** 2, 0, None))
        )  # mm
        lr, lc = slice(r0 - rows.start, r1 - rows.start), slice(c0 - cols.start, c1 - cols.start)
        mu_bg = MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g[lr, lc]
        mu_bg_sub = np.repeat(np.repeat(mu_bg, ss, axis=0), ss, axis=1)
        trans = np.exp(-contrast * (mu_calc - mu_bg_sub) * chord * 0.1)
        trans = trans.reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))
        delta[lr, lc] += -np.log(trans)
        core[lr, lc] |= trans < 0.999
    return LesionRender(rows, cols, delta, _box_of(core, rows, cols, 1.0), core)


def render_distortion(
    shape: tuple[int, int],
    spacing: float,
    center_rc: tuple[float, float],
    size_mm: float,
    contrast: float,
    g: np.ndarray,
    rng: np.random.Generator,
) -> LesionRender:
    """Architectural distortion: tissue pulled toward a point, with radiating strands and no mass.

    Warps ``g`` in place (inside the window) and returns the strands' excess attenuation.
    """
    radius = size_mm / 2
    rows, cols = _window(shape, center_rc, radius * 1.3 / spacing)
    dy, dx = _local_mm(rows, cols, center_rc, spacing)
    r = np.hypot(dx, dy)
    pull = 1 + 0.8 * contrast * np.exp(
        -((r / (0.6 * radius)) ** 2)
    )  # sample farther out: contraction
    src_r = center_rc[0] - 0.5 + dy * pull / spacing
    src_c = center_rc[1] - 0.5 + dx * pull / spacing
    g[rows, cols] = ndimage.map_coordinates(g, [src_r, src_c], order=1, mode="nearest")
    n = int(rng.integers(12, 24))
    strands = _spicules(dy, dx, spacing, n, 1.0, (0.5 * radius, radius), 0.35, rng)
    mu_bg = MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g[rows, cols]
    delta = contrast * (MU_MASS - mu_bg) * strands * 0.1
    core = r < 0.5 * radius
    return LesionRender(rows, cols, delta, _box_of(core, rows, cols), core)
