"""How conspicuous a focal finding is in the rendered pixels (``reader_model: pixels``).

Measured on the stored image as a viewer shows it (``harness.pixels.presentation_pixels``: dense
is bright), with no knowledge of what was rendered except where the breast and the pectoral
muscle are (anatomy every reader recognises) and, for the lesion's own value, where the lesion is:

* **density channel**: centre-surround (difference of Gaussians, sigma 1.5, 3, 5 mm against
  2.5 x sigma), normalised inside the breast, so a blob brighter than its surroundings scores
  in SDs of the breast's own structure (texture and noise);
* **calcification channel**: specks above their 1 mm surroundings (> 3 SD), summed over a 3 mm
  neighbourhood (a group of specks counts more than one), normalised the same way.

A view's *focal map* is the larger of the two. A lesion's measured conspicuity is the focal map's
maximum inside its box; the view's most suspicious *other* focal density (what a false positive
is made of) is the maximum over the rest of the breast, away from the skin line and the muscle.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DOG_SIGMAS_MM = (1.5, 3.0, 5.0)
SKIN_MARGIN_MM = 6.0
MUSCLE_MARGIN_MM = 4.0


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
    dens = np.full(im.shape, -np.inf)
    for s in DOG_SIGMAS_MM:
        r = _norm_blur(im, mf, s / sp) - _norm_blur(im, mf, 2.5 * s / sp)
        dens = np.maximum(dens, _robust_z(r, valid))
    hp = im - _norm_blur(im, mf, 1.0 / sp)
    speck = np.clip(_robust_z(hp, valid) - 3.0, 0, None) * m
    cluster = ndimage.gaussian_filter(speck, 3.0 / sp, mode="constant")
    v = cluster[valid]
    calc = (cluster - float(v.mean())) / max(float(v.std()), 1e-12) if v.size else cluster * 0
    return np.maximum(dens, calc), valid, f


def measure_view(
    img: np.ndarray,
    breast: np.ndarray,
    muscle: np.ndarray | None,
    spacing: float,
    box: tuple[float, float, float, float] | None,
) -> dict[str, float | None]:
    """``lesion``: the focal map's maximum in the lesion box (None without a lesion);
    ``background``: the most suspicious focal density elsewhere in the breast."""
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
    return {"lesion": lesion, "background": bg}


__all__ = ["focal_map", "measure_view"]
