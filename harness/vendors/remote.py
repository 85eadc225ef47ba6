"""Rules every network interface shares (``dicom`` and ``rest``): nothing identifiable
leaves the machine, and what does leave cannot be linked back to the reference set.

* :func:`refuse_identifiable` is the de-identification gate over a whole set, run by
  :func:`harness.vendors.open_adapter` before a remote adapter is opened: every file of the set
  must pass :func:`harness.dicomnet.deid.identification_problems`, unless the package's own
  interface section says ``allow_identifiable: true`` (``dicom.allow_identifiable``,
  ``rest.allow_identifiable``) for a local, in-hospital endpoint. Otherwise a one-line
  :class:`~harness.errors.UsageError` (exit 2) names the first such file and nothing is sent.
* :func:`exam_deadline` is when an adapter gives up on one exam: a little before the runner's
  own per-exam timeout, so the recorded reason is the adapter's (what it was waiting for).
* :func:`pseudonymise` prepares one exam for sending: the same check on the exam as it will be
  sent (a perturbed copy included), then fresh Study/Series/SOP Instance UIDs and patient
  pseudonyms per send (:func:`harness.dicomnet.deid.pseudonymise_exam`). The returned
  :class:`OutgoingExam` re-identifies on the way back: a SOP Instance UID the endpoint cites
  maps to the manifest's file, laterality and view (:meth:`OutgoingExam.reidentify`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from harness.dicomnet import deid
from harness.errors import UsageError, VendorFault

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from harness.cases.manifest import Manifest
    from harness.exam_input import ExamInput
    from harness.vendors.package import VendorPackage


def exam_deadline(timeout_s: float) -> float:
    """The ``time.monotonic()`` by which an exam sent now must have its result."""
    return time.monotonic() + max(0.5, timeout_s - min(1.0, 0.05 * timeout_s))


def allows_identifiable(package: VendorPackage) -> bool:
    """Whether the active interface's section sets ``allow_identifiable: true``."""
    return bool(getattr(package.section, "allow_identifiable", False))


def _refusal(package: VendorPackage, where: str, problem: str, held: str) -> UsageError:
    return UsageError(
        f"{where}: not de-identified ({problem}); {held}. De-identify the set, or set "
        f"{package.interface}.allow_identifiable: true for a local, in-hospital endpoint"
    )


def refuse_identifiable(package: VendorPackage, manifest: Manifest) -> None:
    """The gate before anything leaves the machine: every file of the set must be de-identified,
    unless the package allows identifiable data for a local, in-hospital endpoint."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if allows_identifiable(package):
        return
    for exam in manifest.exams:
        for ref in exam.images:
            path = manifest.path(ref)
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError):
                continue  # unreadable: the runner records it as a fault and sends nothing
            problems = deid.identification_problems(ds)
            if problems:
                raise _refusal(package, str(path), problems[0], "nothing was sent")


class SentImage(NamedTuple):
    """Where a sent image came from: the manifest's file, its laterality and view."""

    file: str
    laterality: str
    view: str


@dataclass(frozen=True)
class OutgoingExam:
    """One exam as it is sent (pseudonymised datasets) and the way back to the manifest."""

    exam_id: str
    study_uid: str  # the study UID this send gave the exam
    datasets: tuple[Dataset, ...]
    images: Mapping[str, SentImage]  # sent SOP Instance UID -> where it came from
    original_uid: Mapping[str, str]  # sent UID -> original UID (every remapped UID)

    def reidentify(self, sop_instance_uid: str) -> SentImage | None:
        """The manifest image behind a SOP Instance UID the endpoint cites; None if not sent."""
        return self.images.get(str(sop_instance_uid))


def pseudonymise(package: VendorPackage, exam: ExamInput) -> OutgoingExam:
    """Check the exam as it will be sent, then give it fresh UIDs and pseudonyms for this send.

    Raises :class:`UsageError` for identifiable data (unless allowed) and
    ``VendorFault(..., 'rejected')`` for an exam whose images span several studies.
    """
    if not allows_identifiable(package):
        for ref, ds in exam.images:
            problems = deid.identification_problems(ds)
            if problems:
                raise _refusal(
                    package, f"exam {exam.exam_id} file {ref.file}", problems[0], "it was not sent"
                )
    items: list[tuple[str, Dataset]] = [(ref.file, ds) for ref, ds in exam.images]
    try:
        pseudo = deid.pseudonymise_exam(exam.exam_id, items)
    except ValueError as exc:
        raise VendorFault(str(exc), "rejected") from None
    refs = {ref.file: ref for ref, _ in exam.images}
    images = {
        uid: SentImage(f, refs[f].laterality, refs[f].view) for uid, f in pseudo.sop_to_file.items()
    }
    return OutgoingExam(
        exam.exam_id, pseudo.study_uid, pseudo.datasets, images, pseudo.original_uid
    )
