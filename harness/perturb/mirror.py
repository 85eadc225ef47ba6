"""``mirror``: every image flipped left-right and its laterality swapped.

A mirrored left breast is anatomically a plausible right breast (and vice versa), so the
exam-level score must not change while the breast scores swap sides. A model that reads the
side from pixel layout alone, or from stale metadata, fails this.

What changes, per image: the pixel columns are reversed; ImageLaterality (and Laterality if
present) L<->R; the manifest ImageRef's laterality L<->R; PatientOrientation as the reflected
patient would have it (row direction: A<->P and H<->F, since the flip reverses it and the
reflection keeps its left/right; column direction: L<->R from the reflection), so that a
left CC ``A\\R`` becomes the right CC ``P\\L`` a real right breast would carry. Applying the
mirror twice gives back the original bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from hypothesis import strategies as st
from pydicom.dataset import Dataset

from harness.cases.manifest import ImageRef
from harness.exam_input import ExamInput
from harness.perturb.image import Image, map_images, replace_pixels, stored_pixels
from harness.perturb.relation import Relation

SWAP_SIDE = {"L": "R", "R": "L"}
# Row direction: reversed by the flip, then L/R swapped back by the reflection.
_ROW = str.maketrans({"A": "P", "P": "A", "H": "F", "F": "H"})
# Column direction: only the reflection acts on it.
_COLUMN = str.maketrans({"L": "R", "R": "L"})


@dataclass(frozen=True)
class MirrorParams:
    """The mirror has no parameters; its condition id is plain ``mirror``."""

    relation: ClassVar[str] = "mirror"


def _mirror_orientation(ds: Dataset) -> None:
    if "PatientOrientation" not in ds or ds["PatientOrientation"].VM != 2:
        return
    row, column = (str(v) for v in ds.PatientOrientation)
    ds.PatientOrientation = [row.translate(_ROW), column.translate(_COLUMN)]


def mirror_image(ref: ImageRef, ds: Dataset) -> Image:
    """Mirror one (already copied) dataset in place and return it with its swapped ImageRef."""
    pixels = stored_pixels(ds)
    replace_pixels(ds, pixels[:, ::-1])
    for keyword in ("ImageLaterality", "Laterality"):
        value = ds.get(keyword)
        if value in SWAP_SIDE:
            setattr(ds, keyword, SWAP_SIDE[value])
    _mirror_orientation(ds)
    return replace(ref, laterality=SWAP_SIDE.get(ref.laterality, ref.laterality)), ds


def apply_mirror(exam: ExamInput, params: MirrorParams) -> ExamInput:
    """Mirror every image of the exam (the input exam is not modified)."""
    return map_images(exam, lambda _i, ref, ds: mirror_image(ref, ds))


def mirror_params() -> st.SearchStrategy[MirrorParams]:
    """The mirror has no parameters."""
    return st.just(MirrorParams())


RELATION = Relation(
    name=MirrorParams.relation,
    kind="invariant",
    expectation="mirrored images with swapped laterality: breast scores swap sides, exam score unchanged",
    params_type=MirrorParams,
    apply=apply_mirror,
    strategy=mirror_params(),
    position=10,
    swaps_sides=True,
    grid=(MirrorParams(),),
)
