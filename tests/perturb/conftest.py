"""Hand-made small Digital Mammography For Presentation exams for the perturbation tests.

Four views (L/R x CC/MLO), 12 bits stored in 16, a breast-shaped half ellipse on the chest-wall
side with seeded texture, a window preset; the R MLO is MONOCHROME1 so every transform meets
both photometric senses. Built with pydicom directly (not the phantom generator) so these tests
pin the perturbations' own behaviour. Presentation pixels are computed independently of the
harness: pydicom apply_modality_lut + apply_voi_lut, MONOCHROME1 inverted, / (2^bits - 1).
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from harness.cases.manifest import ImageRef
from harness.exam_input import ExamInput

DM_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
ROWS, COLS, BITS, SPACING = 320, 256, 12, 0.1
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
ORIENTATION = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SCT", meaning
    return item


def breast_pixels(laterality: str, seed: int) -> np.ndarray:
    """MONOCHROME2 stored values: dark air, a textured half ellipse against the chest wall."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:ROWS, 0:COLS].astype(np.float64)
    depth = cols if laterality == "L" else (COLS - 1 - cols)  # chest wall at column 0 for L
    r = np.sqrt((depth / (COLS * 0.8)) ** 2 + ((rows - ROWS / 2) / (ROWS * 0.45)) ** 2)
    tissue = r < 1.0
    texture = rng.normal(0.0, 1.0, (ROWS, COLS))
    texture = np.cumsum(np.cumsum(texture, axis=0), axis=1)  # correlated "parenchyma"
    texture = (texture - texture.mean()) / (texture.std() + 1e-9)
    values = np.where(tissue, 2200 + 250 * texture + 600 * np.sqrt(np.clip(1 - r, 0, 1)), 40)
    return np.clip(np.rint(values), 0, (1 << BITS) - 1).astype(np.uint16)


def make_dataset(laterality: str, view: str, *, mono1: bool = False, seed: int = 0) -> Dataset:
    """A valid DM For Presentation image (dciodvfy: 0 errors)."""
    sop = generate_uid(entropy_srcs=["perturb-test", laterality, view, str(seed)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DM_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = DM_FOR_PRESENTATION, sop
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240315"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = "A1234"
    ds.Modality = "MG"
    ds.Manufacturer = "MAMMOCERT TEST"
    ds.InstitutionName = "TEST HOSPITAL"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "P0001"
    ds.PatientBirthDate = "19650201"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [SPACING, SPACING]
    ds.PixelSpacing = [SPACING, SPACING]
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["perturb-test-study", str(seed)])
    ds.SeriesInstanceUID = generate_uid(
        entropy_srcs=["perturb-test-series", laterality, view, str(seed)]
    )
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ORIENTATION[(laterality, view)]
    ds.ImageLaterality = laterality
    ds.OrganExposed = "BREAST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.AnatomicRegionSequence = Sequence([_code("76752008", "Breast")])
    view_item = _code(*VIEW_CODES[view])
    view_item.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([view_item])
    ds.AcquisitionContextSequence = Sequence([])
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.BreastImplantPresent = "NO"
    top = (1 << BITS) - 1
    pixels = breast_pixels(laterality, seed + (0 if view == "CC" else 7))
    center, width = 2300, 2400
    if mono1:
        pixels = (top - pixels).astype(np.uint16)
        center = top + 1 - center  # same presentation (LINEAR window)
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.VOILUTFunction = "LINEAR"
    ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
    ds.set_pixel_data(
        pixels, "MONOCHROME1" if mono1 else "MONOCHROME2", BITS, generate_instance_uid=False
    )
    return ds


def build_exam(seed: int = 0, mono1_view: tuple[str, str] | None = ("R", "MLO")) -> ExamInput:
    images = []
    for laterality, view in (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")):
        ds = make_dataset(laterality, view, mono1=(laterality, view) == mono1_view, seed=seed)
        images.append((ImageRef(f"E0001/{laterality}{view}.dcm", laterality, view, "0" * 64), ds))
    return ExamInput("E0001", tuple(images))


def presentation(ds: Dataset) -> np.ndarray:
    """Presentation pixels computed with pydicom alone (independent of harness.pixels)."""
    modality = apply_modality_lut(ds.pixel_array, ds)
    if np.array_equal(modality, np.rint(modality)):  # integral (slope 1): keep LUT indexing exact
        modality = modality.astype(np.int64)
    arr = apply_voi_lut(modality, ds, index=0).astype(np.float64)
    top = float((1 << int(ds.BitsStored)) - 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = top - arr
    return arr / top


def dicom_bytes(ds: Dataset) -> bytes:
    """The Part 10 file bytes of a dataset."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def exam_bytes(exam: ExamInput) -> list[bytes]:
    return [dicom_bytes(ds) for _, ds in exam.images]


def dciodvfy(tool: str, path: Path) -> tuple[int, int, str]:
    """(errors, warnings, output) of dciodvfy on one file."""
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    return text.count("Error - "), text.count("Warning - "), text


@pytest.fixture
def exam() -> ExamInput:
    return build_exam()


@pytest.fixture
def exam_factory() -> Callable[..., ExamInput]:
    return build_exam


@pytest.fixture
def dataset_factory() -> Callable[..., Dataset]:
    return make_dataset


@pytest.fixture
def present() -> Callable[[Dataset], np.ndarray]:
    return presentation


@pytest.fixture
def to_bytes() -> Callable[[ExamInput], list[bytes]]:
    return exam_bytes


@pytest.fixture
def validate() -> Callable[[str, Path], tuple[int, int, str]]:
    return dciodvfy
