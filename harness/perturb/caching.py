"""Resubmission probes for the ``caching`` criterion.

A model (or an endpoint in front of it) that caches answers keyed on UIDs gives itself away in two
ways: a fresh set of UIDs changes nothing (it should not), and *another exam's pixels* sent under
the original UIDs get the original exam's cached score instead of the other exam's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from pydicom.uid import generate_uid

from harness.cases.manifest import Manifest
from harness.exam_input import ExamInput

Transform = Callable[[ExamInput], ExamInput]
UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
IDENTITY_KEYS = UID_KEYS + (
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


def fresh_uids(seed: int, exam_id: str) -> tuple[str, Transform]:
    """Condition id and transform giving every UID of the exam a new, deterministic value."""

    def transform(exam: ExamInput) -> ExamInput:
        images = []
        for ref, ds in exam.images:
            new = copy.deepcopy(ds)
            for key in UID_KEYS:
                if key in new:
                    new_uid = generate_uid(
                        entropy_srcs=[str(seed), exam_id, key, str(ds.get(key, ""))]
                    )
                    setattr(new, key, new_uid)
                    if key == "SOPInstanceUID" and "MediaStorageSOPInstanceUID" in new.file_meta:
                        new.file_meta.MediaStorageSOPInstanceUID = new_uid
            images.append((ref, new))
        return ExamInput(exam.exam_id, tuple(images))

    return f"caching:fresh_uids,seed={seed}", transform


def pixels_of(manifest: Manifest, donor_id: str) -> tuple[str, Transform]:
    """Condition id and transform that put the donor exam's images (same laterality and view)
    under the receiving exam's UIDs and identity."""
    from harness.exam_input import load_exam

    def transform(exam: ExamInput) -> ExamInput:
        donor = load_exam(manifest, manifest.exam(donor_id))
        by_view = {(ref.laterality, ref.view): ds for ref, ds in donor.images}
        images = []
        for ref, ds in exam.images:
            src = by_view.get((ref.laterality, ref.view))
            if src is None:
                images.append((ref, ds))
                continue
            new = copy.deepcopy(src)
            for key in IDENTITY_KEYS:
                if key in ds:
                    setattr(new, key, ds.get(key))
            if "MediaStorageSOPInstanceUID" in new.file_meta:
                new.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            images.append((ref, new))
        return ExamInput(exam.exam_id, tuple(images))

    return f"caching:pixels_of={donor_id}", transform
