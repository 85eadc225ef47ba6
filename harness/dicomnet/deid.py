"""Nothing identifiable leaves the machine: the de-identification check and UID
re-randomisation applied to every exam before it is sent to a network endpoint (the rules every
network interface applies with them are in :mod:`harness.vendors.remote`).

Two separate duties:

* :func:`identification_problems` says why a dataset is *not* de-identified (empty list = fine).
  The harness refuses to send such data unless the vendor package allows identifiable data for a
  local, in-hospital endpoint (``<interface>.allow_identifiable: true``).
* :func:`pseudonymise_exam` gives a copy of an exam's datasets with fresh Study/Series/SOP
  Instance UIDs (and every other non-DICOM-defined UID), fresh patient pseudonyms, and the
  mapping back, so results can be matched to the manifest's files without ever sending the
  original UIDs. It runs per send, so the same exam under two conditions is two unrelated studies
  for the node (a node must not recognise or cache a re-sent exam).
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from harness.codes import is_dicom_defined

# Attributes that must be empty in de-identified data (PS3.15 Basic Profile removes them).
MUST_BE_EMPTY = (
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "MilitaryRank",
    "PatientInsurancePlanCodeSequence",
    "CountryOfResidence",
    "RegionOfResidence",
    "PatientReligiousPreference",
)
# A name that starts with one of these tokens is a recognised placeholder, not a person.
DUMMY_NAME_TOKENS = (
    "ANON",
    "ANONYMOUS",
    "ANONYMIZED",
    "ANONYMISED",
    "SYNTHETIC",
    "PHANTOM",
    "DUMMY",
    "TEST",
    "MAMMOCERT",
    "PSEUDONYM",
    "REMOVED",
)
# Civil registration numbers: Danish CPR (DDMMYY-NNNN), Swedish/Norwegian personal numbers, US SSN.
_CIVIL_ID = re.compile(r"^\s*(\d{6}-?\d{4}|\d{8}-?\d{4}|\d{6}\s?\d{5}|\d{3}-\d{2}-\d{4})\s*$")


def _text(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword)
    if v is None:
        return ""
    if isinstance(v, MultiValue | list):
        return "\\".join(str(x) for x in v).strip("\\ ")
    return str(v).strip()


def _is_dummy_name(value: str) -> bool:
    first = re.split(r"[\^\s_\-]", value.upper(), maxsplit=1)[0]
    return any(first.startswith(t) for t in DUMMY_NAME_TOKENS)


def identification_problems(ds: Dataset) -> list[str]:
    """Why ``ds`` is not de-identified, one short phrase per problem (empty list: de-identified)."""
    problems: list[str] = []
    removed = _text(ds, "PatientIdentityRemoved").upper()
    if removed != "YES":
        problems.append(f"PatientIdentityRemoved is {removed or 'absent'!s}, not YES")
    name = _text(ds, "PatientName")
    if name and not _is_dummy_name(name):
        problems.append(f"PatientName holds a non-placeholder value ({len(name)} characters)")
    pid = _text(ds, "PatientID")
    if pid and _CIVIL_ID.match(pid):
        problems.append("PatientID looks like a civil registration number")
    for kw in MUST_BE_EMPTY:
        if kw in ds and (_text(ds, kw) if not kw.endswith("Sequence") else len(ds[kw].value)):
            problems.append(f"{kw} is present with a value")
    return problems


@dataclass(frozen=True)
class PseudonymisedExam:
    """An exam ready to send: new datasets plus the way back to the manifest's files."""

    study_uid: str
    datasets: tuple[Dataset, ...]
    sop_to_file: Mapping[str, str]  # sent SOP Instance UID -> manifest file
    original_uid: Mapping[str, str]  # sent UID -> original UID (every remapped UID)


def _remap_uids(ds: Dataset, mapping: dict[str, str]) -> None:
    """Replace every non-DICOM-defined UID in ``ds`` (recursively), consistently via ``mapping``."""
    for elem in ds.iterall():
        if elem.VR != "UI" or elem.value in (None, ""):
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        new = []
        for uid in values:
            uid = str(uid)
            if is_dicom_defined(uid):  # SOP classes, transfer syntaxes, coding schemes
                new.append(uid)
                continue
            if uid not in mapping:
                mapping[uid] = generate_uid(
                    prefix=None
                )  # 2.25.<random 128 bit>: unlinkable to the original
            new.append(mapping[uid])
        elem.value = new if elem.VM > 1 else new[0]


def pseudonymise_exam(exam_id: str, items: Iterable[tuple[str, Dataset]]) -> PseudonymisedExam:
    """Copy the exam's datasets (``(manifest file, dataset)`` pairs) with fresh UIDs and pseudonyms.

    The originals are not modified. Patient ID/Name and Accession Number get one fresh random
    token per send, so the receiving node can group the views of the study but learns nothing
    about the reference set's identities (not even the exam id).
    """
    mapping: dict[str, str] = {}
    token = "MC" + secrets.token_hex(6).upper()
    out: list[Dataset] = []
    sop_to_file: dict[str, str] = {}
    for file, src in items:
        ds = copy.deepcopy(src)
        _remap_uids(ds, mapping)
        if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = token
        ds.PatientName = f"MAMMOCERT^{token}"
        ds.AccessionNumber = token[:16]
        ds.PatientIdentityRemoved = "YES"
        sop_to_file[str(ds.SOPInstanceUID)] = file
        out.append(ds)
    study_uids = {str(d.StudyInstanceUID) for d in out}
    if len(study_uids) != 1:
        raise ValueError(
            f"exam {exam_id}: its images belong to {len(study_uids)} studies; one exam is one study"
        )
    return PseudonymisedExam(
        study_uids.pop(), tuple(out), sop_to_file, {v: k for k, v in mapping.items()}
    )
