"""One exam as a model will see it: the manifest's image entries with their (possibly perturbed)
DICOM datasets. Loaders build it, perturbations transform it, vendor adapters consume it."""

from __future__ import annotations

from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from harness.cases.manifest import Exam, ImageRef, Manifest
from harness.errors import ManifestError, VendorFault


@dataclass(frozen=True)
class ExamInput:
    """One exam as the model will see it: each image's manifest entry and its (possibly perturbed) dataset."""

    exam_id: str
    images: tuple[tuple[ImageRef, Dataset], ...]


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
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise VendorFault(
                f"{ref.file}: harness could not read the DICOM file ({type(exc).__name__}: {exc})",
                "error",
            ) from None
        images.append((ref, ds))
    return ExamInput(exam.exam_id, tuple(images))
