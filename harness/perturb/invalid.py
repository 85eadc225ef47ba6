"""Invalid inputs for the input-rejection criterion: what a screening model must decline.

A model in a screening workflow will be sent things that are not screening mammograms (a chest
film routed to the wrong node, a hand X-ray, an image cut short in transfer, an image whose
side is unknown). It must answer ``rejected`` (or a technical error), never a score. Each
builder returns an :class:`InvalidExam` whose ``reason`` says what is wrong, for the report.

The chest and hand images are valid DICOM objects of their own IODs (a CR image, a DX image:
dciodvfy reports no errors), so a model cannot tell them apart by a parse failure; only the
truncated and the unlateralised images are broken DICOM, on purpose. All builders deep-copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from harness.codes import (
    CR_IMAGE_STORAGE,
    DX_FOR_PRESENTATION_STORAGE,
    EXPLICIT_VR_LITTLE_ENDIAN,
    HAND,
    code_item,
)
from harness.exam_input import ExamInput
from harness.perturb.image import copy_dataset, set_transfer_syntax

# Attributes only the mammography IOD and its DX modules define; a CR image has none of them,
# and a DX image of a hand has no breast-specific ones.
MAMMO_ONLY = (
    "ImageLaterality",
    "Laterality",
    "ViewCodeSequence",
    "OrganExposed",
    "BreastImplantPresent",
    "PartialView",
    "PartialViewDescription",
    "PartialViewCodeSequence",
    "PositionerType",
    "AnatomicRegionSequence",
    "PatientOrientation",
    "ViewPosition",
)
DX_ONLY = (
    "PresentationIntentType",
    "DetectorType",
    "ImagerPixelSpacing",
    "PixelIntensityRelationshipSign",
    "PixelIntensityRelationship",
    "PresentationLUTShape",
    "BurnedInAnnotation",
    "AcquisitionContextSequence",
    "ImageType",
    "LossyImageCompression",
)


@dataclass(frozen=True)
class InvalidExam:
    """An exam a conformant model must reject, with the name of the defect and why."""

    kind: str
    exam: ExamInput
    reason: str


def _retype(ds: Dataset, sop_class: UID, modality: str) -> None:
    ds.SOPClassUID = sop_class
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = modality


def _each(exam: ExamInput, fn: Callable[[Dataset], None], only_first: bool = False) -> ExamInput:
    images = []
    for i, (ref, ds) in enumerate(exam.images):
        copy = copy_dataset(ds)
        if i == 0 or not only_first:
            fn(copy)
        images.append((ref, copy))
    return ExamInput(exam.exam_id, tuple(images))


def chest_cr(exam: ExamInput) -> InvalidExam:
    """Every image becomes a computed-radiography chest image (CR IOD, same pixels)."""

    def fn(ds: Dataset) -> None:
        _retype(ds, CR_IMAGE_STORAGE, "CR")
        for keyword in MAMMO_ONLY + DX_ONLY:
            if keyword in ds:
                delattr(ds, keyword)
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.PatientOrientation = [
            "L",
            "F",
        ]  # PA chest as displayed: towards the patient's left, feet down
        ds.SeriesDescription = "CHEST PA"

    return InvalidExam(
        "chest_cr",
        _each(exam, fn),
        "a chest radiograph (CR Image Storage, Modality CR, BodyPartExamined CHEST), not a mammogram",
    )


def non_mammo_modality(exam: ExamInput) -> InvalidExam:
    """Every image becomes a general digital radiograph of a hand (DX IOD, Modality DX)."""

    def fn(ds: Dataset) -> None:
        _retype(ds, DX_FOR_PRESENTATION_STORAGE, "DX")
        for keyword in MAMMO_ONLY:
            # A hand is paired like a breast: its side and anatomy stay, now naming the hand.
            if keyword in ds and keyword not in ("ImageLaterality", "AnatomicRegionSequence"):
                delattr(ds, keyword)
        ds.AnatomicRegionSequence = Sequence([code_item(HAND)])
        ds.PatientOrientation = ["L", "F"]
        ds.BodyPartExamined = "HAND"
        ds.SeriesDescription = "HAND PA"

    return InvalidExam(
        "non_mammo_modality",
        _each(exam, fn),
        "a hand radiograph (DX Image Storage, Modality DX, BodyPartExamined HAND), not a mammogram",
    )


def truncated_pixels(exam: ExamInput) -> InvalidExam:
    """The first image's Pixel Data is cut to half its length (as by an interrupted transfer)."""

    def fn(ds: Dataset) -> None:
        set_transfer_syntax(
            ds, EXPLICIT_VR_LITTLE_ENDIAN
        )  # native, so the cut is in pixels, not a codestream
        data = ds.PixelData
        ds.PixelData = data[: (len(data) // 4) * 2]  # half, kept even as OW requires

    return InvalidExam(
        "truncated_pixels",
        _each(exam, fn, only_first=True),
        "the first image's Pixel Data holds half the bytes Rows x Columns x BitsAllocated require",
    )


def missing_laterality(exam: ExamInput) -> InvalidExam:
    """The first image has no ImageLaterality (nor Laterality): the breast side is unknown."""

    def fn(ds: Dataset) -> None:
        for keyword in ("ImageLaterality", "Laterality"):
            if keyword in ds:
                delattr(ds, keyword)

    return InvalidExam(
        "missing_laterality",
        _each(exam, fn, only_first=True),
        "the first image has no ImageLaterality (0020,0062), a type 1 attribute of the mammography IOD",
    )


INVALID_BUILDERS: dict[str, Callable[[ExamInput], InvalidExam]] = {
    "chest_cr": chest_cr,
    "non_mammo_modality": non_mammo_modality,
    "truncated_pixels": truncated_pixels,
    "missing_laterality": missing_laterality,
}
