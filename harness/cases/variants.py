"""Invalid-input variants of a mammogram, for tests that a vendor (or the harness) rejects bad input.

Each function takes a valid For Presentation dataset (e.g. ``pydicom.dcmread`` of a set image)
and returns a *new* dataset that a screening-mammography AI must refuse: a chest radiograph, a
file with truncated pixel data, and an image without its laterality.
"""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset

from harness.cases.dicomio import uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def _renew(ds: Dataset, tag: str) -> Dataset:
    out = copy.deepcopy(ds)
    new = uid(ds.SOPInstanceUID, tag)
    out.SOPInstanceUID = new
    out.file_meta.MediaStorageSOPInstanceUID = new
    return out


def chest_cr(ds: Dataset) -> Dataset:
    """The same pixels labelled as a Computed Radiography chest image (wrong modality and body part)."""
    out = _renew(ds, "chest_cr")
    out.SOPClassUID = CR_IMAGE_STORAGE
    out.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    out.Modality = "CR"
    out.BodyPartExamined = "CHEST"
    out.ViewPosition = "PA"
    out.StudyDescription = "Chest PA"
    for kw in ("ImageLaterality", "ViewCodeSequence", "PresentationIntentType", "OrganExposed", "PositionerType",
               "AnatomicRegionSequence", "BreastImplantPresent"):
        if kw in out:
            delattr(out, kw)
    return out


def truncated_pixels(ds: Dataset, keep_fraction: float = 0.5) -> Dataset:
    """Pixel Data cut short: fewer bytes than Rows x Columns x 2 (a corrupt transfer)."""
    out = _renew(ds, "truncated")
    data = bytes(ds.PixelData)
    keep = int(len(data) * keep_fraction) // 2 * 2
    out.PixelData = data[:keep]
    return out


def no_laterality(ds: Dataset) -> Dataset:
    """Image Laterality removed (a required type 1 attribute of the Mammography Image module)."""
    out = _renew(ds, "no_laterality")
    if "ImageLaterality" in out:
        del out.ImageLaterality
    return out


VARIANTS = {"chest_cr": chest_cr, "truncated_pixels": truncated_pixels, "no_laterality": no_laterality}
