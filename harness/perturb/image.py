"""Pixel and dataset plumbing shared by the perturbations.

Every perturbation is a pure function of an :class:`~harness.exam_input.ExamInput`: it
deep-copies each dataset before touching it, so the caller's exam (and the runner's cache of
decoded datasets) is never mutated. Pixel-changing perturbations keep the image's transfer
syntax where pydicom can encode it losslessly, so that the *only* difference a model sees is
the one the relation is about (an image that arrived JPEG 2000 stays JPEG 2000).

UIDs are deliberately kept: a perturbed image still answers to its SOP Instance UID, so the
runner can map findings back to the stored file. Re-randomising UIDs before anything leaves
the machine is the network adapters' job (harness/vendors/dicom_adapter.py), and the
``metadata`` relation tests it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    RLELossless,
)

from harness import pixels
from harness.cases.manifest import ImageRef
from harness.errors import UsageError
from harness.exam_input import ExamInput
from harness.pixels import transfer_syntax

# Syntaxes we can re-encode bit-exactly; anything else (lossy JPEG, JPEG-LS, big endian) is
# written back as Explicit VR Little Endian, which still carries exactly the decoded pixels.
REENCODABLE = (JPEG2000Lossless, RLELossless)
# Encoder plugin per syntax: pylibjpeg-openjpeg is the only J2K encoder pydicom 3 has, and
# pylibjpeg-rle is much faster than pydicom's pure-Python RLE encoder (same bytes either way).
ENCODER_PLUGIN = {JPEG2000Lossless: "pylibjpeg", RLELossless: "pylibjpeg"}

Image = tuple[ImageRef, Dataset]


def copy_dataset(ds: Dataset) -> Dataset:
    """A deep copy, file meta included, so perturbations never touch the caller's dataset."""
    return copy.deepcopy(ds)


def map_images(exam: ExamInput, fn: Callable[[int, ImageRef, Dataset], Image]) -> ExamInput:
    """Apply ``fn(index, ref, copied_dataset)`` to every image; the input is left untouched."""
    images = tuple(fn(i, ref, copy_dataset(ds)) for i, (ref, ds) in enumerate(exam.images))
    return ExamInput(exam.exam_id, images)


def max_value(ds: Dataset) -> int:
    """The largest stored value, 2^BitsStored - 1 (MG images are unsigned)."""
    return (1 << int(ds.BitsStored)) - 1


def stored_pixels(ds: Dataset) -> np.ndarray:
    """The decoded stored values as int64 (a copy; safe to modify)."""
    if int(ds.get("PixelRepresentation", 0)) != 0:
        raise UsageError(
            f"image {ds.get('SOPInstanceUID', '?')}: signed pixel data; mammography images are unsigned"
        )
    return np.array(pixels.decoded(ds), dtype=np.int64)


def presentation_pixels(ds: Dataset) -> np.ndarray:
    """Presentation values in [0, 1] exactly as docs/contracts.md §3.2 defines them
    (harness.pixels), float64."""
    return np.asarray(pixels.presentation_pixels(ds), dtype=np.float64)


def _ensure_meta(ds: Dataset) -> None:
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()


def set_transfer_syntax(ds: Dataset, syntax: UID) -> None:
    """Re-encode in place to ``syntax`` (decoded pixel values are unchanged)."""
    _ensure_meta(ds)
    current = transfer_syntax(ds)
    if current == syntax:
        return
    if current.is_compressed:
        with pixels.CODEC_LOCK:
            ds.decompress(generate_instance_uid=False)
    if syntax.is_compressed:
        with pixels.CODEC_LOCK:
            ds.compress(
                syntax, encoding_plugin=ENCODER_PLUGIN.get(syntax, ""), generate_instance_uid=False
            )
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    # Every syntax reached here is lossless, so LossyImageCompression is rightly left alone.


def replace_pixels(ds: Dataset, values: np.ndarray) -> None:
    """Store ``values`` (clipped to [0, 2^BitsStored - 1]) as the pixel data, in place.

    Rows/Columns follow the array's shape; BitsStored and the photometric interpretation are
    kept; the transfer syntax is kept when it is one we re-encode losslessly.
    """
    original = transfer_syntax(ds)
    top = max_value(ds)
    arr = np.rint(values)
    np.clip(arr, 0, top, out=arr)  # in place: upsampled images make every copy count
    arr = arr.astype(np.uint16 if int(ds.BitsAllocated) == 16 else np.uint8)
    _ensure_meta(ds)
    ds.set_pixel_data(
        arr, str(ds.PhotometricInterpretation), int(ds.BitsStored), generate_instance_uid=False
    )
    if original in REENCODABLE:
        set_transfer_syntax(ds, original)


def windows(ds: Dataset) -> list[tuple[float, float]]:
    """Every (center, width) pair of the VOI LUT module's window attributes."""
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return []
    centers = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
    widths = ds.WindowWidth if ds["WindowWidth"].VM > 1 else [ds.WindowWidth]
    return [(float(c), float(w)) for c, w in zip(centers, widths, strict=False)]


def set_windows(ds: Dataset, pairs: list[tuple[float, float]]) -> None:
    """Write window pairs back as DS values (rounded to 4 decimals so they stay <= 16 chars)."""

    def fmt(v: float) -> str:
        text = f"{round(v, 4):.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text

    centers = [fmt(c) for c, _ in pairs]
    widths = [fmt(w) for _, w in pairs]
    ds.WindowCenter = centers if len(centers) > 1 else centers[0]
    ds.WindowWidth = widths if len(widths) > 1 else widths[0]


def window_range(ds: Dataset) -> tuple[float, float]:
    """Stored-value range the first window displays linearly, [lo, hi]; the full range without one."""
    pairs = windows(ds)
    if not pairs:
        return 0.0, float(max_value(ds))
    c, w = pairs[0]
    return c - w / 2.0, c + w / 2.0


def require_window(ds: Dataset, relation: str) -> None:
    """One-line error for images displayed through a VOI LUT Sequence only."""
    if not windows(ds):
        raise UsageError(
            f"{relation}: image {ds.get('SOPInstanceUID', '?')} has no WindowCenter/WindowWidth "
            "(only a VOI LUT Sequence); this perturbation is defined on windowed images"
        )
