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


# --- lesion_model: birads (harness/cases/birads.py) -------------------------------------------
# Shapes and signs as the ACR BI-RADS Atlas (5th ed.) describes them; each function draws only
# what its descriptors say, so what a reader could see is in the pixels.

MU_WATER = 0.810  # simple cyst contents at 20 keV (research notes B.2: water 0.810 1/cm)


def _lobulation(phi: np.ndarray, shape: str, margin: str, rng: np.random.Generator) -> np.ndarray:
    """Radial modulation of the outline: oval/round at most two or three gentle lobulations,
    irregular more and larger ones; a microlobulated margin adds short undulations (k 10-16)."""
    lob = np.ones_like(phi)
    if shape == "irregular":
        amps = [(k, 0.10 + 0.06 * float(rng.uniform())) for k in (2, 3, 4, 5, 6)]
        amps = [(k, a * (1.0 if k < 4 else 0.6)) for k, a in amps]
    else:
        amps = [(2, 0.03 * float(rng.uniform())), (3, 0.02 * float(rng.uniform()))]
    if margin == "microlobulated":
        amps += [(int(k), 0.05 + 0.03 * float(rng.uniform())) for k in rng.integers(10, 17, 2)]
    for k, am in amps:
        lob += am * np.cos(k * phi + float(rng.uniform(0, 2 * np.pi)))
    return lob


def render_mass_birads(
    shape: tuple[int, int],
    spacing: float,
    center_rc: tuple[float, float],
    spec,  # population.LesionSpec with descriptors
    thickness_mm: float,
    g_local_fn,
    rng: np.random.Generator,
) -> LesionRender:
    """A mass with its BI-RADS shape and margin; benign signs (fat-containing centre, halo)."""
    d = spec.desc
    form, margin, finding = str(d["shape"]), str(d["margin"]), str(d["finding"])
    signs = list(d.get("signs") or [])
    a = spec.size_mm / 2 * float(rng.uniform(0.9, 1.1))
    if form == "round":
        b = a * float(rng.uniform(0.92, 1.0))
    elif form == "oval":
        b = a * float(rng.uniform(0.55, 0.8))
    else:
        b = a * float(rng.uniform(0.7, 1.0))
    c = min(0.5 * (a + b), 0.45 * thickness_mm)
    theta = float(rng.uniform(0, np.pi))
    spic = margin == "spiculated"
    reach = max(a, b) * (2.6 if spic else 1.5)
    rows, cols = _window(shape, center_rc, reach / spacing)
    dy, dx = _local_mm(rows, cols, center_rc, spacing)
    xr = dx * np.cos(theta) + dy * np.sin(theta)
    yr = -dx * np.sin(theta) + dy * np.cos(theta)
    phi = np.arctan2(yr, xr)
    rho = np.sqrt((xr / a) ** 2 + (yr / b) ** 2) / _lobulation(phi, form, margin, rng)
    chord = 2 * c * np.sqrt(np.clip(1 - rho * rho, 0, None))  # mm of lesion material
    core = rho < 1.0
    g = g_local_fn(rows, cols)
    mu_bg = MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g
    if spec.malignant:
        mu_lesion = MU_MASS
    elif finding == "cyst":
        mu_lesion = MU_WATER
    else:
        mu_lesion = MU_BENIGN_MASS
    delta = (mu_lesion - mu_bg) * chord
    if "fat_centre" in signs:
        if finding == "lymph_node":  # fatty hilum: a fat notch off-centre, reniform outline
            hx, hy, f = 0.45 * a, 0.0, 0.5
            blobs = [(hx, hy, f)]
        else:  # hamartoma: fat lobules inside a thin capsule ("breast within a breast")
            blobs = [
                (float(rng.uniform(-0.5, 0.5)) * a, float(rng.uniform(-0.5, 0.5)) * b, 0.3)
                for _ in range(int(rng.integers(3, 6)))
            ]
        for bx, by, f in blobs:
            rr = np.sqrt(((xr - bx) / (f * a)) ** 2 + ((yr - by) / (f * b)) ** 2)
            fat = 2 * f * c * np.sqrt(np.clip(1 - rr * rr, 0, None))
            fat = np.minimum(fat, chord)
            delta = delta - (mu_lesion - MU_ADIPOSE) * fat
    if "halo" in signs:  # a thin shell of fat, 0.5-1 mm, around the mass (radiolucent halo)
        h = float(rng.uniform(0.5, 1.0))
        rho_o = np.sqrt((xr / (a + h)) ** 2 + (yr / (b + h)) ** 2)
        outer = 2 * (c + h) * np.sqrt(np.clip(1 - rho_o * rho_o, 0, None))
        delta = delta + (MU_ADIPOSE - mu_bg) * np.clip(outer - chord, 0, None)
    if margin == "indistinct":  # the edge fades over about a fifth of the radius
        delta = ndimage.gaussian_filter(delta, 0.2 * min(a, b) / spacing, mode="constant")
    if spic:
        n = int(rng.integers(10, 22))
        strands = _spicules(dy, dx, spacing, n, 0.8 * min(a, b), (0.6 * a, 1.6 * a), 0.45, rng)
        delta = delta + (mu_lesion - mu_bg) * strands
    delta = spec.contrast * delta * 0.1  # mm -> cm
    pad = (0.3 * a / spacing) if spic else 0.0
    return LesionRender(rows, cols, delta, _box_of(core, rows, cols, pad), core)


def _capsule_chord(
    yy: np.ndarray, xx: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float
) -> np.ndarray:
    """Chord [mm] through a capsule of radius r around the segment p0-p1 (y, x in mm)."""
    vy, vx = p1[0] - p0[0], p1[1] - p0[1]
    ll = vy * vy + vx * vx
    t = (
        np.zeros_like(yy)
        if ll == 0
        else np.clip(((yy - p0[0]) * vy + (xx - p0[1]) * vx) / ll, 0, 1)
    )
    d2 = (yy - p0[0] - t * vy) ** 2 + (xx - p0[1] - t * vx) ** 2
    return 2 * np.sqrt(np.clip(r * r - d2, 0, None))


def _shell_chord(yy: np.ndarray, xx: np.ndarray, c: tuple[float, float], r: float, w: float):
    """Chord [mm] through a spherical shell (outer radius r, wall w): an eggshell/rim calcification."""
    d2 = (yy - c[0]) ** 2 + (xx - c[1]) ** 2
    return 2 * (
        np.sqrt(np.clip(r * r - d2, 0, None)) - np.sqrt(np.clip((r - w) ** 2 - d2, 0, None))
    )


def _calc_primitives(spec, axis: float, rng: np.random.Generator) -> list[tuple]:
    """The calcification particles, in mm around the lesion centre: ('capsule', p0, p1, radius)
    or ('shell', centre, radius, wall). ``axis`` is the direction toward the nipple (radians)."""
    d = spec.desc
    morph, dist = str(d["calc_morphology"]), str(d["calc_distribution"])
    ext = spec.size_mm
    ux, uy = np.cos(axis), np.sin(axis)

    def position() -> tuple[float, float]:
        if dist == "linear":  # along a duct toward the nipple
            s, q = float(rng.uniform(-0.5, 0.5)) * ext, float(rng.normal(0, 0.6))
        elif dist == "segmental":  # a wedge with its apex toward the nipple
            s = float(rng.uniform(-0.5, 0.5)) * ext
            q = float(rng.uniform(-1, 1)) * (0.5 - s / ext) * 0.45 * ext
        else:  # grouped / regional: within a disc
            rr, ang = ext / 2 * np.sqrt(float(rng.uniform())), float(rng.uniform(0, 2 * np.pi))
            return rr * np.sin(ang), rr * np.cos(ang)
        return s * uy + q * ux, s * ux - q * uy

    out: list[tuple] = []
    if morph == "fine_pleomorphic":  # BI-RADS: < 0.5 mm, varying sizes and shapes
        for _ in range(spec.count):
            py, px = position()
            r = float(np.exp(rng.uniform(np.log(0.05), np.log(0.25))))
            ln, ang = float(rng.uniform(0, 2.5)) * r, float(rng.uniform(0, 2 * np.pi))
            out.append(("capsule", (py, px), (py + ln * np.sin(ang), px + ln * np.cos(ang)), r))
    elif morph == "fine_linear_branching":  # thin (< 0.5 mm) linear forms, some branching
        for _ in range(max(2, spec.count // 2)):
            py, px = position()
            ang = axis + float(rng.normal(0, 0.3))
            for _ in range(int(rng.integers(1, 4))):  # a segment and its branches
                ln, r = float(rng.uniform(1.0, 4.0)), float(rng.uniform(0.06, 0.2))
                qy, qx = py + ln * np.sin(ang), px + ln * np.cos(ang)
                out.append(("capsule", (py, px), (qy, qx), r))
                py, px, ang = (
                    qy,
                    qx,
                    ang + float(rng.choice([-1, 1])) * float(rng.uniform(0.3, 0.7)),
                )
    elif morph == "coarse_popcorn":  # > 2-3 mm coarse clumps (involuting fibroadenoma)
        for _ in range(spec.count):
            py, px = position()
            for _ in range(int(rng.integers(2, 5))):
                oy, ox = rng.normal(0, 0.8, 2)
                out.append(
                    (
                        "capsule",
                        (py + oy, px + ox),
                        (py + oy + rng.normal(0, 0.8), px + ox + rng.normal(0, 0.8)),
                        float(rng.uniform(0.5, 1.1)),
                    )
                )
    elif morph == "rim":  # thin calcified wall of an oil cyst / fat necrosis, 2-10 mm
        for _ in range(spec.count):
            py, px = position()
            out.append(
                ("shell", (py, px), float(rng.uniform(1.5, 4.5)), float(rng.uniform(0.15, 0.35)))
            )
    elif morph == "round":  # 0.5-1 mm, smooth
        for _ in range(spec.count):
            py, px = position()
            out.append(("capsule", (py, px), (py, px), float(rng.uniform(0.25, 0.5))))
    elif morph == "vascular":  # parallel tracks: the calcified walls of a vessel
        vr = float(rng.uniform(0.8, 1.5))
        ang = axis + float(rng.normal(0, 0.4))
        vy, vx = np.sin(ang), np.cos(ang)
        n_seg = 6
        for k in range(n_seg):
            s0, s1 = (k / n_seg - 0.5) * ext, ((k + 0.8) / n_seg - 0.5) * ext
            for side in (-1, 1):
                if rng.random() < 0.8:
                    oy, ox = side * vr * vx, -side * vr * vy
                    out.append(
                        (
                            "capsule",
                            (s0 * vy + oy, s0 * vx + ox),
                            (s1 * vy + oy, s1 * vx + ox),
                            float(rng.uniform(0.12, 0.25)),
                        )
                    )
    else:  # large_rod_like: >= 0.5 mm thick, smooth rods toward the nipple (secretory)
        for _ in range(spec.count):
            py, px = position()
            ln, r = float(rng.uniform(3.0, 10.0)), float(rng.uniform(0.3, 0.6))
            ang = axis + float(rng.normal(0, 0.2))
            out.append(("capsule", (py, px), (py + ln * np.sin(ang), px + ln * np.cos(ang)), r))
    return out


def render_calcifications_birads(
    shape: tuple[int, int],
    spacing: float,
    center_rc: tuple[float, float],
    spec,
    axis: float,
    g_local_fn,
    rng: np.random.Generator,
) -> LesionRender:
    """Calcifications with their BI-RADS morphology and distribution, hydroxyapatite particles
    with partial-volume (sub-pixel) averaging of their transmission, as ``render_calcifications``."""
    prims = _calc_primitives(spec, axis, rng)
    reach = max(
        [np.hypot(*p[1]) + (np.hypot(*p[2]) if p[0] == "capsule" else p[2]) for p in prims] + [1.0]
    )
    half = reach + 1.5
    rows, cols = _window(shape, center_rc, half / spacing)
    nr, nc = rows.stop - rows.start, cols.stop - cols.start
    ss = int(np.clip(np.ceil(spacing / 0.05), 1, 10))
    sub = (np.arange(ss) + 0.5) / ss
    ys = (
        (np.arange(rows.start, rows.stop)[:, None] + sub[None, :]).reshape(-1) - center_rc[0]
    ) * spacing
    xs = (
        (np.arange(cols.start, cols.stop)[:, None] + sub[None, :]).reshape(-1) - center_rc[1]
    ) * spacing
    chord = np.zeros((ys.size, xs.size))
    for p in prims:
        if p[0] == "capsule":
            (y0, x0), (y1, x1), r = p[1], p[2], p[3]
            lo_y, hi_y, lo_x, hi_x = (
                min(y0, y1) - r,
                max(y0, y1) + r,
                min(x0, x1) - r,
                max(x0, x1) + r,
            )
        else:
            (y0, x0), r = p[1], p[2]
            lo_y, hi_y, lo_x, hi_x = y0 - r, y0 + r, x0 - r, x0 + r
        iy = np.flatnonzero((ys >= lo_y) & (ys <= hi_y))
        ix = np.flatnonzero((xs >= lo_x) & (xs <= hi_x))
        if iy.size == 0 or ix.size == 0:
            continue
        yy, xx = ys[iy][:, None] + 0 * xs[ix][None, :], xs[ix][None, :] + 0 * ys[iy][:, None]
        if p[0] == "capsule":
            add = _capsule_chord(yy, xx, p[1], p[2], p[3])
        else:
            add = _shell_chord(yy, xx, p[1], p[2], p[3])
        chord[iy[0] : iy[-1] + 1, ix[0] : ix[-1] + 1] += add
    g = g_local_fn(rows, cols)
    mu_bg = MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g
    mu_sub = np.repeat(np.repeat(mu_bg, ss, axis=0), ss, axis=1)
    trans = np.exp(-spec.contrast * (MU_HYDROXYAPATITE - mu_sub) * chord * 0.1)
    trans = trans.reshape(nr, ss, nc, ss).mean(axis=(1, 3))
    delta = -np.log(trans)
    core = trans < 0.999
    return LesionRender(rows, cols, delta, _box_of(core, rows, cols, 1.0), core)


def render_asymmetry(
    shape: tuple[int, int],
    spacing: float,
    center_rc: tuple[float, float],
    spec,
    thickness_mm: float,
    g_local_fn,
    rng: np.random.Generator,
) -> LesionRender:
    """Focal asymmetry: a flat, fibroglandular-looking density without convex borders,
    interspersed with fat (BI-RADS 5th ed.), less than a quadrant; malignant tissue (MU_MASS)."""
    a = spec.size_mm / 2
    b = a * float(rng.uniform(0.5, 0.8))
    c = 0.15 * thickness_mm  # flat: a sheet of tissue, not a ball
    theta = float(rng.uniform(0, np.pi))
    rows, cols = _window(shape, center_rc, 1.3 * a / spacing)
    dy, dx = _local_mm(rows, cols, center_rc, spacing)
    xr = dx * np.cos(theta) + dy * np.sin(theta)
    yr = -dx * np.sin(theta) + dy * np.cos(theta)
    phi = np.arctan2(yr, xr)
    lob = np.ones_like(phi)
    for k in (2, 3, 4, 5):  # concave, wandering outline
        lob += 0.12 * float(rng.uniform()) * np.cos(k * phi + float(rng.uniform(0, 2 * np.pi)))
    rho = np.sqrt((xr / a) ** 2 + (yr / b) ** 2) / lob
    sheet = c * np.clip(1 - rho * rho, 0, None) ** 0.5
    fat = ndimage.gaussian_filter(rng.standard_normal(sheet.shape), 1.2 / spacing)
    fat = np.clip(0.65 + 0.35 * fat / max(float(fat.std()), 1e-9), 0.2, 1.0)  # fat interspersed
    g = g_local_fn(rows, cols)
    mu_bg = MU_ADIPOSE + (MU_GLANDULAR - MU_ADIPOSE) * g
    delta = spec.contrast * (MU_MASS - mu_bg) * sheet * fat * 0.1
    core = rho < 0.7
    return LesionRender(rows, cols, delta, _box_of(rho < 1.0, rows, cols), core)
