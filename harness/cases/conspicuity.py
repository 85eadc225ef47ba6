"""How conspicuous a focal finding is in the rendered pixels (``reader_model: pixels``).

Measured on the stored image as a viewer shows it (``harness.pixels.presentation_pixels``: dense
is bright), with no knowledge of what was rendered except where the breast and the pectoral
muscle are (anatomy every reader recognises) and, for the lesion's own value, where the lesion is:

* **density channel**: a prewhitening matched filter, the ideal linear observer for a known
  signal in a Gaussian background of power spectrum 1/f^beta (Burgess, Jacobson & Judy, Med Phys
  2001;28:419: mammographic structure has a 1/f^3 spectrum and it, not quantum noise, limits
  mass detection). Templates are projected spheres (a mass's chord profile) of radius 2, 4, 7 and
  11 mm, spanning the recipes' 5-30 mm masses; each output is normalised by its median and SD
  inside the breast (the SD, not a robust spread: in a fatty breast the few glandular islands are
  the structure a reader is used to, not outliers), so a focal density scores in SDs of the
  breast's own structure;
* **calcification channel**: the number of distinct specks (> 7 SD above their 1 mm
  surroundings) within 5 mm (BI-RADS: a group is at least 5 within 1 cm).

A view's *focal map* is the larger of the two. A lesion's measured conspicuity is the focal map's
maximum inside its box; the view's most suspicious *other* focal density (what a false positive
is made of) is the maximum over the rest of the breast, away from the skin line and the muscle.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

TEMPLATE_RADII_MM = (2.0, 4.0, 7.0, 11.0)  # projected spheres, 4-22 mm across
SKIN_MARGIN_MM = 6.0
MUSCLE_MARGIN_MM = 4.0
SPECK_Z = 7.0  # a speck: this many SDs above its 1 mm surroundings
CLUSTER_RADIUS_MM = 5.0
WHITEN_BETA = 3.0  # the phantom's texture exponent (phantom.BETA; Chen 2012 measured 3.2)
WHITEN_CUTOFF = 0.5  # cycles/mm: above this, quantum noise, not texture, dominates
PEAKS = 12  # local maxima kept per view (candidates for the two-view check)


def _norm_blur(img: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of ``img`` inside ``mask`` (normalised convolution: no bleeding of the
    background outside the breast into the edge)."""
    num = ndimage.gaussian_filter(img * mask, sigma_px, mode="constant")
    den = ndimage.gaussian_filter(mask.astype(np.float64), sigma_px, mode="constant")
    return num / np.maximum(den, 1e-6)


def _robust_z(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    v = x[valid]
    if v.size < 10:
        return np.zeros_like(x)
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    if mad <= 1e-12:
        mad = float(v.std()) or 1.0
    return (x - med) / mad


def _z(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``x`` in SDs of its values inside ``valid``, from their median."""
    v = x[valid]
    if v.size < 10:
        return np.zeros_like(x)
    sd = float(v.std())
    return (x - float(np.median(v))) / (sd if sd > 1e-12 else 1.0)


def _sphere_spectrum(shape: tuple[int, int], spacing: float, radius_mm: float) -> np.ndarray:
    """rfft2 of a projected sphere (its chord profile) of ``radius_mm`` centred on pixel (0, 0)."""
    yy = (np.fft.fftfreq(shape[0]) * shape[0] * spacing)[:, None]
    xx = (np.fft.fftfreq(shape[1]) * shape[1] * spacing)[None, :]
    chord = np.sqrt(np.clip(1 - (yy * yy + xx * xx) / (radius_mm * radius_mm), 0, None))
    return np.real(np.fft.rfft2(chord))  # symmetric about the origin: real


def _downsample(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a.astype(np.float64)
    r, c = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:r, :c].astype(np.float64).reshape(r // f, f, c // f, f).mean(axis=(1, 3))


def focal_map(
    img: np.ndarray, breast: np.ndarray, muscle: np.ndarray | None, spacing: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(focal map, where a reader looks for focal densities, downsampling factor)."""
    f = max(1, int(np.floor(0.25 / spacing)))  # full-size images: work at >= 0.25 mm pitch
    sp = spacing * f
    im = _downsample(img, f)
    m = _downsample(breast.astype(np.float64), f) > 0.5
    mus = _downsample(muscle, f) > 0.05 if muscle is not None else np.zeros_like(m, dtype=bool)
    valid = ndimage.binary_erosion(m, iterations=max(1, int(SKIN_MARGIN_MM / sp)))
    if mus.any():
        valid &= ~ndimage.binary_dilation(mus, iterations=max(1, int(MUSCLE_MARGIN_MM / sp)))
    if valid.sum() < 50:  # a tiny breast: look everywhere inside it
        valid = m
    mf = m.astype(np.float64)
    # Outside the breast, continue the breast smoothly (no skin-line edge for the filters).
    filled = np.where(m, im, _norm_blur(im, mf, 8.0 / sp))
    spec = np.fft.rfft2(filled - float(filled[m].mean()) if m.any() else filled)
    fy = np.fft.fftfreq(im.shape[0], d=sp)[:, None]
    fx = np.fft.rfftfreq(im.shape[1], d=sp)[None, :]
    fr = np.sqrt(fy * fy + fx * fx)
    # Prewhitening matched filter S(f)/P(f) with P ~ f^-beta (flat above the cutoff, where
    # quantum noise takes over): the template's spectrum times the whitening filter squared.
    white2 = np.minimum(fr, WHITEN_CUTOFF) ** WHITEN_BETA
    dens = np.full(im.shape, -np.inf)
    for radius in TEMPLATE_RADII_MM:
        r = np.fft.irfft2(spec * white2 * _sphere_spectrum(im.shape, sp, radius), s=im.shape)
        dens = np.maximum(dens, _z(r, valid))
    hp = im - _norm_blur(im, mf, 1.0 / sp)
    zs = _robust_z(hp, valid)
    specks = (zs > SPECK_Z) & (zs == ndimage.maximum_filter(zs, size=3)) & m
    # Calcification channel: how many distinct specks lie within 5 mm (grouped: >= 5 in 1 cm).
    rad = max(1, int(round(CLUSTER_RADIUS_MM / sp)))
    yy, xx = np.mgrid[-rad : rad + 1, -rad : rad + 1]
    disc = (yy * yy + xx * xx <= rad * rad).astype(np.float64)
    calc = ndimage.convolve(specks.astype(np.float64), disc, mode="constant")
    return np.maximum(dens, calc), valid, f


def measure_view(
    img: np.ndarray,
    breast: np.ndarray,
    muscle: np.ndarray | None,
    spacing: float,
    box: tuple[float, float, float, float] | None,
    nipple_rc: tuple[float, float] | None = None,
) -> dict[str, object]:
    """``lesion``: the focal map's maximum in the lesion box (None without a lesion);
    ``background``: the most suspicious focal density elsewhere in the breast; ``peaks``: the
    view's strongest local maxima elsewhere as ``[z, distance from the nipple in mm]`` (a reader
    believes a density seen in both views at about the same distance from the nipple)."""
    z, valid, f = focal_map(img, breast, muscle, spacing)
    lesion = None
    look = valid.copy()
    if box is not None:
        x0, y0, x1, y1 = (int(np.floor(box[0] / f)), int(np.floor(box[1] / f)),
                          int(np.ceil(box[2] / f)), int(np.ceil(box[3] / f)))  # fmt: skip
        win = z[max(0, y0) : max(y0 + 1, y1), max(0, x0) : max(x0 + 1, x1)]
        lesion = round(float(win.max()), 4) if win.size else 0.0
        pad = int(np.ceil(3.0 / (spacing * f)))
        look[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = False
    bg = round(float(z[look].max()), 4) if look.any() else 0.0
    peaks: list[list[float]] = []
    if look.any():
        zl = np.where(look, z, -np.inf)
        is_max = (zl == ndimage.maximum_filter(zl, size=max(3, int(4.0 / (spacing * f))))) & look
        rr, cc = np.nonzero(is_max)
        order = np.argsort(-zl[rr, cc])[:PEAKS]
        nr, nc = nipple_rc if nipple_rc is not None else (0.0, 0.0)
        for k in order:
            dist = float(np.hypot((rr[k] + 0.5) * f - nr, (cc[k] + 0.5) * f - nc)) * spacing
            peaks.append([round(float(zl[rr[k], cc[k]]), 4), round(dist, 2)])
    return {"lesion": lesion, "background": bg, "peaks": peaks}


TWO_VIEW_TOLERANCE_MM = 5.0


def two_view_background(cc_peaks: list, mlo_peaks: list) -> float:
    """The most suspicious density seen in both views of a breast: over pairs of peaks at about
    the same distance from the nipple, the larger of their smaller values."""
    best = 0.0
    for zc, dc in cc_peaks:
        for zm, dm in mlo_peaks:
            if abs(dc - dm) <= TWO_VIEW_TOLERANCE_MM:
                best = max(best, min(zc, zm))
    return best


__all__ = ["focal_map", "measure_view", "two_view_background"]
