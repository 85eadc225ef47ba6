"""One exam as a model will see it: the manifest's image entries with their (possibly perturbed)
DICOM datasets. Loaders build it, perturbations transform it, vendor adapters consume it."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

from harness.cases.manifest import ImageRef


@dataclass(frozen=True)
class ExamInput:
    """One exam as the model will see it: each image's manifest entry and its (possibly perturbed) dataset."""

    exam_id: str
    images: tuple[tuple[ImageRef, Dataset], ...]
