"""``encoding``: the same image in another transfer syntax and/or the other photometric sense.

A DICOM image can arrive Explicit or Implicit VR Little Endian, JPEG 2000 lossless or RLE
lossless, and as MONOCHROME1 (high stored value = dark) or MONOCHROME2; every one of these
encodes the *same presentation pixels* (docs/contracts.md §3.2), so the output must not change. A
model that reads stored values raw, or ignores the photometric interpretation, fails this.

The photometric flip stores ``(2^BitsStored - 1) - x`` and adjusts everything that reads stored
values so the presentation is identical: every window centre is mirrored (LINEAR:
``c' = 2^BitsStored - c``, because PS3.3 C.11.2.1.2.1 centres the linear ramp at ``c - 0.5``;
LINEAR_EXACT and SIGMOID: ``c' = 2^BitsStored - 1 - c``), a VOI LUT Sequence is read backwards
and inverted,
PresentationLUTShape becomes INVERSE/IDENTITY as the DX IOD requires, and pixel padding
values and PixelIntensityRelationshipSign follow the inversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from harness.errors import UsageError
from harness.exam_input import ExamInput
from harness.perturb.image import (
    map_images,
    max_value,
    set_transfer_syntax,
    set_windows,
    stored_pixels,
    windows,
)
from harness.perturb.relation import Relation

# Condition-id name -> transfer syntax. The first is the mildest (the usual archive encoding).
SYNTAXES: dict[str, UID] = {
    "explicit_le": ExplicitVRLittleEndian,
    "implicit_le": ImplicitVRLittleEndian,
    "jpeg2000_lossless": JPEG2000Lossless,
    "rle_lossless": RLELossless,
}
OTHER_PHOTOMETRIC = {"MONOCHROME1": "MONOCHROME2", "MONOCHROME2": "MONOCHROME1"}


@dataclass(frozen=True)
class EncodingParams:
    """``syntax``: one of :data:`SYNTAXES`; ``invert``: flip MONOCHROME1 <-> MONOCHROME2."""

    syntax: str = "explicit_le"
    invert: bool = False
    relation: ClassVar[str] = "encoding"

    def __post_init__(self) -> None:
        if self.syntax not in SYNTAXES:
            raise ValueError(
                f"encoding: syntax {self.syntax!r} is not one of {', '.join(SYNTAXES)}"
            )


def _mirror_center(center: float, top: int, function: str) -> float:
    return (top + 1 - center) if function == "LINEAR" else (top - center)


def _invert_voi_lut(ds: Dataset, top: int) -> None:
    for item in ds.get("VOILUTSequence", []):
        n, first, bits = (int(v) for v in item.LUTDescriptor)
        n = n or 65536  # PS3.3 C.11.1.1: 0 means 2^16 entries
        data = np.asarray(item.LUTData, dtype=np.int64)
        # harness.pixels scales a LUT's output [0, 2^bits - 1] onto the stored range before the
        # MONOCHROME1 inversion, so the inverted LUT is (2^bits - 1) - LUT, read backwards.
        flipped = ((1 << bits) - 1) - data[::-1]
        item.LUTDescriptor = [n if n < 65536 else 0, top - (first + n - 1), bits]
        item.LUTData = [int(v) for v in flipped]


def invert_photometric(ds: Dataset) -> None:
    """Flip MONOCHROME1 <-> MONOCHROME2 in place, keeping presentation pixels identical."""
    photometric = str(ds.PhotometricInterpretation)
    if photometric not in OTHER_PHOTOMETRIC:
        raise UsageError(
            f"encoding: image {ds.get('SOPInstanceUID', '?')} is {photometric}; only MONOCHROME1/2 can be inverted"
        )
    top = max_value(ds)
    pixels = stored_pixels(ds)
    if (
        ds.get("ModalityLUTSequence")
        or float(ds.get("RescaleSlope", 1)) != 1
        or float(ds.get("RescaleIntercept", 0)) != 0
    ):
        raise UsageError(
            f"encoding: image {ds.get('SOPInstanceUID', '?')} has a non-identity modality LUT; DX/MG images have slope 1, intercept 0"
        )
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    pairs = windows(ds)
    if pairs:
        set_windows(ds, [(_mirror_center(c, top, function), w) for c, w in pairs])
    _invert_voi_lut(ds, top)
    new = OTHER_PHOTOMETRIC[photometric]
    dtype = np.uint16 if int(ds.BitsAllocated) == 16 else np.uint8
    ds.set_pixel_data(
        (top - pixels).astype(dtype), new, int(ds.BitsStored), generate_instance_uid=False
    )
    if "PresentationLUTShape" in ds:
        ds.PresentationLUTShape = "INVERSE" if new == "MONOCHROME1" else "IDENTITY"
    if "PixelIntensityRelationshipSign" in ds:
        ds.PixelIntensityRelationshipSign = -int(ds.PixelIntensityRelationshipSign)
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        if keyword in ds:
            setattr(ds, keyword, top - int(getattr(ds, keyword)))
    lo, hi = ds.get("SmallestImagePixelValue"), ds.get("LargestImagePixelValue")
    if lo is not None and hi is not None:
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = top - int(hi), top - int(lo)


def apply_encoding(exam: ExamInput, params: EncodingParams) -> ExamInput:
    """Re-encode every image (the input exam is not modified)."""
    syntax = SYNTAXES[params.syntax]

    def one(_i: int, ref, ds: Dataset):
        if params.invert:
            invert_photometric(ds)
        set_transfer_syntax(ds, syntax)
        return ref, ds

    return map_images(exam, one)


def encoding_params() -> st.SearchStrategy[EncodingParams]:
    """Every supported syntax (Explicit VR LE first), with or without the photometric flip."""
    return st.builds(EncodingParams, syntax=st.sampled_from(tuple(SYNTAXES)), invert=st.booleans())


RELATION = Relation(
    name=EncodingParams.relation,
    kind="invariant",
    expectation="another lossless transfer syntax or MONOCHROME1/2 with identical presentation pixels: output unchanged",
    params_type=EncodingParams,
    apply=apply_encoding,
    strategy=encoding_params(),
    position=30,
    grid=(EncodingParams(syntax="jpeg2000_lossless", invert=True),),
)
