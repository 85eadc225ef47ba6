"""Presentation pixels, orientation and resizing of mammograms (`docs/contracts.md` §3.2), and the way back.

Everything a vendor model sees passes through here, so every step is written out and
deterministic:

1. **Presentation pixels** (``presentation_pixels``): stored values -> Modality LUT (rescale,
   ``pydicom.pixels.apply_modality_lut``) -> the VOI LUT (``VOILUTSequence``), or else the first
   window (center/width with its VOI LUT Function, PS3.3 C.11.2.1.2 / C.11.2.1.3) -> values in
   ``[0, 2^BitsStored - 1]`` -> MONOCHROME1 inverted -> divided by ``2^BitsStored - 1``.

   Why windows are computed here and not by ``apply_voi_lut``: pydicom's windowing maps onto
   ``[y_min, y_max]`` where the range is *rescaled* by RescaleSlope/Intercept when they are
   present; the contract fixes the output to ``[0, 2^BitsStored - 1]``. For the identity
   rescale every Digital Mammography image has (slope 1, intercept 0) both agree exactly
   (tests/test_pixels.py checks it); for any other rescale ours follows the contract. A VOI LUT
   sequence is applied with pydicom and its output (``[0, 2^n - 1]`` for an n-bit LUT) is
   scaled onto ``[0, 2^BitsStored - 1]``. An image with neither a VOI LUT nor a window (For
   Processing) is clipped to ``[0, 2^BitsStored - 1]`` after the Modality LUT.
   ``raw`` pixels are the stored values divided by ``2^BitsStored - 1`` (no LUT, no inversion),
   so the package's ``scale`` can map them back onto stored units.

2. **Orientation** (``chest_wall_on_right``): for ``chest_wall_left`` images whose chest wall is
   on the right are mirrored left-right. The side comes from Patient Orientation (0020,0020):
   its first value is the direction of increasing column index; ``A`` (anterior, towards the
   nipple) means the chest wall is at column 0 (left), ``P`` means it is at the right edge
   (the usual display of a right breast: R CC ``P\\L``, L CC ``A\\R``). Without Patient
   Orientation the Image Laterality decides: ``R`` = chest wall on the right.

3. **Resize** (``fit`` or ``stretch``): separable, exact area averaging when shrinking (each
   output pixel is the mean of the input area it covers, so it is anti-aliased without a
   tunable filter) and bilinear interpolation with pixel-centre alignment when enlarging.
   ``fit`` keeps the aspect ratio, anchors the image at the top-left (the chest wall after
   mirroring) and pads with 0 on the right and at the bottom, i.e. away from the chest wall.

``Geometry`` records what was done to one image; ``model_to_image`` maps a point of the model
input (continuous pixel coordinates, (0, 0) = top-left corner of the top-left pixel, as DICOM
SCOORD) back to stored-image columns/rows, undoing resize, padding and mirroring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID, ExplicitVRLittleEndian

PIXEL_MODES = ("presentation", "raw")
ORIENTATIONS = ("chest_wall_left", "as_stored")
RESIZE_MODES = ("fit", "stretch")


# OpenJPEG (pylibjpeg-openjpeg) is not thread-safe: JPEG 2000 encodes and decodes in the runner's
# prefetch threads at once crash the process (a fixed grid with a JPEG 2000 condition: 10 of 15
# runs). Every compressed encode or decode goes through this one lock; native pixel data needs none.
CODEC_LOCK = threading.RLock()


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax (Explicit VR LE when it has no file meta)."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(ts) if ts else ExplicitVRLittleEndian


# Where compressed pixel data is decoded while a run has installed a decoder (harness.decode):
# process-wide, because the prefetch threads that decode are pool threads of the run.
_decoder: Callable[[Dataset], np.ndarray] | None = None


@contextmanager
def decoding_with(decoder: Callable[[Dataset], np.ndarray]) -> Iterator[None]:
    """Compressed pixel data goes to ``decoder`` inside the block (the one before it after)."""
    global _decoder
    before, _decoder = _decoder, decoder
    try:
        yield
    finally:
        _decoder = before


def decoded(ds: Dataset) -> np.ndarray:
    """``ds.pixel_array``; compressed pixel data goes to the installed decoder, else it is decoded
    here under CODEC_LOCK."""
    if transfer_syntax(ds).is_compressed:
        decoder = _decoder
        if decoder is not None:
            return decoder(ds)
        with CODEC_LOCK:
            return ds.pixel_array
    return ds.pixel_array


class PixelError(ValueError):
    """The dataset's pixel module cannot be turned into presentation pixels (bad attribute)."""


@dataclass(frozen=True)
class Geometry:
    """How one stored image was placed into the model input.

    ``rows``/``cols``: stored image size; ``height``/``width``: model input size;
    ``scale_y``/``scale_x``: model pixels per stored pixel; ``mirrored``: flipped left-right
    before resizing; the resized image sits at the top-left corner (no offset) for both modes.
    """

    rows: int
    cols: int
    height: int
    width: int
    scale_y: float
    scale_x: float
    mirrored: bool

    @property
    def content_height(self) -> int:
        return min(self.height, round(self.rows * self.scale_y))

    @property
    def content_width(self) -> int:
        return min(self.width, round(self.cols * self.scale_x))


def _bits_stored(ds: Dataset) -> int:
    bits = ds.get("BitsStored")
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        raise PixelError(f"BitsStored (0028,0101) is {bits!r}; expected 1..16")
    return bits


def _affine(x: np.ndarray, center: float, width: float, y_max: float) -> np.ndarray:
    """((x - center) / width + 0.5) * y_max in one new array: the same IEEE operations in the same
    order as the expression, without its three full-size temporaries (upsampled images are large)."""
    out = x - center
    out /= width
    out += 0.5
    out *= y_max
    return out


def _saturate(out: np.ndarray, x: np.ndarray, lo: float, hi: float, y_max: float) -> None:
    """In place: 0 where x <= lo, y_max where x > hi (disjoint, since lo <= hi)."""
    np.putmask(out, x <= lo, 0.0)
    np.putmask(out, x > hi, y_max)


def _window(
    values: np.ndarray, center: float, width: float, function: str, y_max: float
) -> np.ndarray:
    """PS3.3 C.11.2.1.2 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID) onto [0, y_max]."""
    x = values.astype(np.float64, copy=False)
    if function == "LINEAR":
        if width < 1:
            raise PixelError(f"WindowWidth (0028,1051) is {width}; LINEAR windowing needs >= 1")
        c, w = center - 0.5, width - 1.0
        if w > 0:
            out = _affine(x, c, w, y_max)
        else:
            out = np.where(x > c, y_max, 0.0)
        _saturate(out, x, c - w / 2, c + w / 2, y_max)
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise PixelError(
                f"WindowWidth (0028,1051) is {width}; LINEAR_EXACT windowing needs > 0"
            )
        out = _affine(x, center, width, y_max)
        _saturate(out, x, center - width / 2, center + width / 2, y_max)
    elif function == "SIGMOID":
        if width <= 0:
            raise PixelError(f"WindowWidth (0028,1051) is {width}; SIGMOID windowing needs > 0")
        out = x - center
        out *= -4.0
        out /= width
        np.exp(out, out=out)
        out += 1.0
        np.divide(y_max, out, out=out)
    else:
        raise PixelError(
            f"VOILUTFunction (0028,1056) {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID"
        )
    return out


def _first(value: object, name: str) -> float:
    """First value of a DS element that may be multi-valued; a PixelError when it is empty, not a
    number or not finite."""
    first = value
    try:
        if isinstance(first, list | tuple) or (
            hasattr(first, "__len__") and not isinstance(first, str)
        ):
            first = list(first)[0]  # type: ignore[arg-type]
        number = float(first)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError, OverflowError):
        raise PixelError(f"{name} is {str(value)[:40]!r}; expected a number") from None
    if not np.isfinite(number):
        raise PixelError(f"{name} is {number}; expected a finite number")
    return number


def presentation_pixels(ds: Dataset, stored: np.ndarray | None = None) -> np.ndarray:
    """Presentation values in [0, 1] (float32) of a single-frame grayscale image, per §3.2."""
    arr = decoded(ds) if stored is None else stored
    if arr.ndim != 2:
        raise PixelError(f"pixel data has shape {arr.shape}; expected one grayscale frame")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PixelError(
            f"PhotometricInterpretation (0028,0004) is {photometric!r}; expected MONOCHROME1 or MONOCHROME2"
        )
    bits = _bits_stored(ds)
    y_max = float(2**bits - 1)
    values = apply_modality_lut(arr, ds)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        lut_bits = int(descriptor[2])
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True).astype(np.float64)
        values = values * (y_max / float(2**lut_bits - 1))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        values = _window(
            values,
            _first(ds.WindowCenter, "WindowCenter (0028,1050)"),
            _first(ds.WindowWidth, "WindowWidth (0028,1051)"),
            function,
            y_max,
        )
    else:
        values = values.astype(np.float64)
    # every branch above made a new array, so the rest works in place (same operations, no copies)
    np.clip(values, 0.0, y_max, out=values)
    if photometric == "MONOCHROME1":
        np.subtract(y_max, values, out=values)
    values /= y_max
    return values.astype(np.float32)


def raw_pixels(ds: Dataset, stored: np.ndarray | None = None) -> np.ndarray:
    """Stored values divided by 2^BitsStored - 1 (float32); no LUT, no inversion."""
    arr = decoded(ds) if stored is None else stored
    if arr.ndim != 2:
        raise PixelError(f"pixel data has shape {arr.shape}; expected one grayscale frame")
    return (arr.astype(np.float64) / float(2 ** _bits_stored(ds) - 1)).astype(np.float32)


def chest_wall_on_right(ds: Dataset) -> bool:
    """True when the stored image has the chest wall at its right edge (see module docstring)."""
    orientation = ds.get("PatientOrientation")
    if orientation:
        first = str(
            list(orientation)[0] if not isinstance(orientation, str) else orientation.split("\\")[0]
        ).upper()
        if first.startswith("P"):
            return True
        if first.startswith("A"):
            return False
    return str(ds.get("ImageLaterality", "")).upper() == "R"


@lru_cache(maxsize=64)
def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-sample input indices (n_out, k) and weights (n_out, k) of a 1-D resampling.

    Shrinking: exact box (area) averaging over the covered input interval. Enlarging: bilinear
    with pixel-centre alignment. Zero weights pad rows to a common k.
    """
    if n_out <= n_in:
        ratio = n_in / n_out
        k = int(np.ceil(ratio)) + 1
        idx = np.zeros((n_out, k), dtype=np.intp)
        w = np.zeros((n_out, k), dtype=np.float64)
        for i in range(n_out):
            lo, hi = i * ratio, (i + 1) * ratio
            j0 = int(np.floor(lo))
            for t in range(k):
                j = j0 + t
                if j >= n_in:
                    break
                overlap = min(hi, j + 1) - max(lo, j)
                if overlap > 0:
                    idx[i, t] = j
                    w[i, t] = overlap
        w /= w.sum(axis=1, keepdims=True)
    else:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0.0, n_in - 1)
        j0 = np.floor(pos).astype(np.intp)
        j1 = np.minimum(j0 + 1, n_in - 1)
        frac = pos - j0
        idx = np.stack([j0, j1], axis=1)
        w = np.stack([1.0 - frac, frac], axis=1)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w


def resample(img: np.ndarray, out_rows: int, out_cols: int) -> np.ndarray:
    """Deterministic separable resampling of a 2-D float image (area-average when shrinking)."""
    src = img.astype(np.float32, copy=False)
    if src.shape[0] != out_rows:
        idx, w = _axis_weights(src.shape[0], out_rows)
        acc = np.zeros((out_rows, src.shape[1]), dtype=np.float32)
        for t in range(idx.shape[1]):
            acc += w[:, t, None].astype(np.float32) * src[idx[:, t], :]
        src = acc
    if src.shape[1] != out_cols:
        idx, w = _axis_weights(src.shape[1], out_cols)
        acc = np.zeros((src.shape[0], out_cols), dtype=np.float32)
        for t in range(idx.shape[1]):
            acc += w[None, :, t].astype(np.float32) * src[:, idx[:, t]]
        src = acc
    return src


def place(
    img: np.ndarray, height: int, width: int, resize: str, mirror: bool
) -> tuple[np.ndarray, Geometry]:
    """Mirror (optionally), resize and pad one image into a (height, width) float32 plane."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    rows, cols = img.shape
    src = img[:, ::-1] if mirror else img
    if resize == "stretch":
        out_r, out_c = height, width
    else:
        s = min(height / rows, width / cols)
        out_r, out_c = min(height, max(1, round(rows * s))), min(width, max(1, round(cols * s)))
    plane = np.zeros((height, width), dtype=np.float32)
    plane[:out_r, :out_c] = resample(np.ascontiguousarray(src), out_r, out_c)
    # Exact per-axis scale of what was drawn, so the inverse mapping matches the pixels.
    geometry = Geometry(rows, cols, height, width, out_r / rows, out_c / cols, mirror)
    return plane, geometry


def model_to_image(x: float, y: float, geometry: Geometry) -> tuple[float, float]:
    """Model-input point (x = column, y = row, continuous) -> stored-image (column, row)."""
    col = x / geometry.scale_x
    row = y / geometry.scale_y
    if geometry.mirrored:
        col = geometry.cols - col
    return col, row


def image_to_model(col: float, row: float, geometry: Geometry) -> tuple[float, float]:
    """Stored-image (column, row) -> model-input point; the inverse of :func:`model_to_image`."""
    if geometry.mirrored:
        col = geometry.cols - col
    return col * geometry.scale_x, row * geometry.scale_y


def to_model_plane(
    ds: Dataset,
    height: int,
    width: int,
    *,
    pixels: str = "presentation",
    orientation: str = "chest_wall_left",
    resize: str = "fit",
    scale: tuple[float, float] = (0.0, 1.0),
    stored: np.ndarray | None = None,
) -> tuple[np.ndarray, Geometry]:
    """The whole §3.2 chain for one image: pixels -> orientation -> resize/pad -> scale."""
    if pixels == "presentation":
        values = presentation_pixels(ds, stored)
    elif pixels == "raw":
        values = raw_pixels(ds, stored)
    else:
        raise ValueError(f"pixels must be one of {PIXEL_MODES}, got {pixels!r}")
    mirror = orientation == "chest_wall_left" and chest_wall_on_right(ds)
    plane, geometry = place(values, height, width, resize, mirror)
    lo, hi = float(scale[0]), float(scale[1])
    if (lo, hi) != (0.0, 1.0):
        # Padding stays 0 in the model's units only for scale [0, x]; the contract pads with 0.
        content = plane[: geometry.content_height, : geometry.content_width]
        plane[: geometry.content_height, : geometry.content_width] = lo + content * (hi - lo)
    return plane, geometry
