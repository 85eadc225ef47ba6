"""One exam as a model will see it: the manifest's image entries with their (possibly perturbed)
DICOM datasets. Loaders build it, perturbations transform it, vendor adapters consume it."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from harness.cases.manifest import Exam, ImageRef, Manifest
from harness.errors import ManifestError, VendorFault


@dataclass(frozen=True)
class ExamInput:
    """One exam as the model will see it: each image's manifest entry and its (possibly perturbed) dataset."""

    exam_id: str
    images: tuple[tuple[ImageRef, Dataset], ...]


# What pydicom raises for a file it cannot read or an element it cannot convert.
DICOM_READ_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    NotImplementedError,  # an unknown VR
    OSError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    OverflowError,
    struct.error,
)


def read_dataset(path: Path) -> Dataset:
    """``pydicom.dcmread`` with every element converted now, so a header pydicom cannot parse
    fails here (as one of DICOM_READ_ERRORS) and not later inside whatever reads it first."""
    ds = pydicom.dcmread(path)
    for _ in ds.iterall():  # iterating converts raw elements, sequences included
        pass
    return ds


def load_exam(manifest: Manifest, exam: Exam) -> ExamInput:
    """Read the exam's DICOM files (full datasets, pixel data decoded lazily by the adapter)."""
    images = []
    for ref in exam.images:
        path = manifest.path(ref)
        if not path.is_file():
            raise ManifestError(
                f"{path}: missing (listed for exam {exam.exam_id}); restore it or run `mammocert cases verify`"
            )
        try:
            ds = read_dataset(path)
        except DICOM_READ_ERRORS as exc:
            raise VendorFault(
                f"{ref.file}: harness could not read the DICOM file ({type(exc).__name__}: {exc})",
                "error",
            ) from None
        images.append((ref, ds))
    return ExamInput(exam.exam_id, tuple(images))
