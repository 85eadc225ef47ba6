"""Write Digital Mammography X-Ray Image – For Presentation objects (SOP class: harness.codes).

The modules follow PS3.3 as dciodvfy checks them (research notes dicom.md §1): DX Series,
Mammography Series, DX Anatomy Imaged, DX Image, DX Detector, Mammography Image (ImageLaterality,
ViewCodeSequence with its ViewModifierCodeSequence, AnatomicRegionSequence), VOI LUT (windows
required for FOR PRESENTATION), Acquisition Context, SOP Common. PresentationLUTShape is
INVERSE for MONOCHROME1 and IDENTITY for MONOCHROME2.

De-identified by construction: dummy patient name and id, Patient Identity Removed YES and a
De-identification Method. Every UID is derived from the caller's entropy (``uid``), and the file
meta information names mammocert, not the pydicom version, so the bytes depend only on the inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from harness.codes import (
    BREAST,
    EXPLICIT_VR_LITTLE_ENDIAN,
    MAMMOCERT_IMPLEMENTATION_UID,
    MG_FOR_PRESENTATION,
    VIEW_CODES,
    code_item,
)

IMPLEMENTATION_VERSION = "MAMMOCERT_01"

# PatientOrientation (row direction \ column direction) for stored images (dicom.md §1).
ORIENTATION = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}


def uid(*entropy: object) -> str:
    """A deterministic 2.25 UID: a name-based (version 5 style) UUID of the given values.

    pydicom's ``generate_uid(prefix=None, ...)`` ignores its entropy sources and returns a random
    UUID, so the hash is taken here: SHA-256 of the values, truncated to 128 bits.
    """
    digest = hashlib.sha256("\x1f".join(repr(e) for e in entropy).encode("utf-8")).digest()
    value = bytearray(digest[:16])
    value[6] = (value[6] & 0x0F) | 0x50  # UUID version 5 layout (RFC 4122 name-based)
    value[8] = (value[8] & 0x3F) | 0x80
    return f"2.25.{int.from_bytes(value, 'big')}"


@dataclass(frozen=True)
class MammogramMeta:
    """What a mammogram's header says besides its pixels."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    laterality: str  # L | R
    view: str  # CC | MLO
    manufacturer: str
    model: str
    pixel_spacing_mm: float
    bits_stored: int
    photometric: str  # MONOCHROME1 | MONOCHROME2
    windows: tuple[tuple[float, float, str], ...]  # (centre, width, explanation)
    voi_lut_function: str = "LINEAR"
    detector_type: str = "DIRECT"
    study_date: str = "20250101"
    accession: str = ""
    patient_age: int | None = None
    instance_number: int = 1
    series_number: int = 1
    body_part_thickness_mm: float | None = None
    compression_force_n: float | None = None
    implant: bool = False


def _ds_str(x: float) -> str:
    """A DS value of at most 16 characters."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return s[:16]


def mammogram_dataset(pixels: np.ndarray, meta: MammogramMeta) -> Dataset:
    """A complete For Presentation dataset (with file meta) for uint16 ``pixels``."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError("pixels must be a 2-D uint16 array")
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    fm.MediaStorageSOPInstanceUID = meta.sop_uid
    fm.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    fm.ImplementationClassUID = MAMMOCERT_IMPLEMENTATION_UID
    fm.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = fm
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = meta.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = meta.accession
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = meta.manufacturer
    ds.ManufacturerModelName = meta.model
    ds.InstitutionName = "MAMMOCERT SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Screening mammography (synthetic phantom)"
    ds.SeriesDescription = f"{meta.laterality} {meta.view}"
    # Patient (de-identified by construction)
    ds.PatientName = "SYNTHETIC^" + meta.patient_id
    ds.PatientID = meta.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    if meta.patient_age is not None:
        ds.PatientAge = f"{meta.patient_age:03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom: no patient data (mammocert)"
    ds.BodyPartExamined = "BREAST"
    ds.StudyInstanceUID = meta.study_uid
    ds.SeriesInstanceUID = meta.series_uid
    ds.StudyID = meta.accession[:16] or "1"
    ds.SeriesNumber = meta.series_number
    ds.InstanceNumber = meta.instance_number
    ds.PatientOrientation = ORIENTATION[(meta.laterality, meta.view)]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Image Pixel / DX Image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = meta.photometric
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = meta.bits_stored
    ds.HighBit = meta.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if meta.photometric == "MONOCHROME1" else 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if meta.photometric == "MONOCHROME1" else "IDENTITY"
    # VOI LUT
    ds.WindowCenter = [_ds_str(c) for c, _, _ in meta.windows]
    ds.WindowWidth = [_ds_str(w) for _, w, _ in meta.windows]
    ds.WindowCenterWidthExplanation = [e for _, _, e in meta.windows]
    ds.VOILUTFunction = meta.voi_lut_function
    # DX Detector / positioning
    spacing = _ds_str(meta.pixel_spacing_mm)
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.DetectorType = meta.detector_type
    ds.DetectorConfiguration = "AREA"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.ViewPosition = meta.view
    ds.DistanceSourceToDetector = "660"
    ds.DistanceSourceToPatient = "640"
    ds.EstimatedRadiographicMagnificationFactor = _ds_str(660 / 640)
    if meta.body_part_thickness_mm is not None:
        ds.BodyPartThickness = _ds_str(meta.body_part_thickness_mm)
    if meta.compression_force_n is not None:
        ds.CompressionForce = _ds_str(meta.compression_force_n)
    # DX Anatomy Imaged / Mammography Image
    ds.ImageLaterality = meta.laterality
    ds.OrganExposed = "BREAST"
    ds.BreastImplantPresent = "YES" if meta.implant else "NO"
    ds.AnatomicRegionSequence = Sequence([code_item(BREAST)])
    view_code = code_item(VIEW_CODES[meta.view])
    view_code.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([view_code])
    ds.AcquisitionContextSequence = Sequence([])
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def write_dataset(path: Path | str, ds: Dataset) -> None:
    """Write a dataset as a DICOM Part 10 file (little endian, explicit VR)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_mammogram(path: Path | str, pixels: np.ndarray, meta: MammogramMeta) -> Dataset:
    """Write one For Presentation mammogram; returns the dataset written."""
    ds = mammogram_dataset(pixels, meta)
    write_dataset(path, ds)
    return ds
