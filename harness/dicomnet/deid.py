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


# --------------------------------------------------------------------------------------------
# PS3.15 Annex E Basic Application Level Confidentiality Profile, for sets a region imports
# (`mammocert cases import`). The profile's table is data from dicom-anonymizer (one module per
# edition of the standard); the actions are applied here so the result is deterministic.

PROFILE_EDITION = "dicomfields_2026c"
# What the suite needs kept (PS3.15 options Retain Patient Characteristics, 113108, and Retain
# Device Identity, 113109): sex, age as a band, and the device that made the image.
RETAINED = frozenset(
    {
        "PatientSex",
        "PatientAge",
        "Manufacturer",
        "ManufacturerModelName",
        "DetectorID",
        "DeviceSerialNumber",
        "StationName",
    }
)
AGE_BAND_YEARS = 5
ACTION_OF_CATEGORY = {  # the profile's column codes, read as the action this module applies
    "X_TAGS": "X",
    "Z_TAGS": "Z",
    "D_TAGS": "D",
    "U_TAGS": "U",
    "Z_D_TAGS": "Z",
    "X_Z_TAGS": "X",
    "X_D_TAGS": "X",
    "X_Z_D_TAGS": "X",
    "X_Z_U_STAR_TAGS": "X",
}


@dataclass(frozen=True)
class ProfileFinding:
    """An attribute the Basic Profile acts on that still carries a value."""

    tag: str  # "(gggg,eeee)"
    keyword: str
    action: str  # X remove, Z empty, D dummy value, U new UID, P private, retained: R


def _profile_table() -> tuple[dict[tuple[int, int], str], list[tuple[int, int, int, int, str]]]:
    import importlib

    db = importlib.import_module(f"dicomanonymizer.dicom_anonymization_databases.{PROFILE_EDITION}")
    exact: dict[tuple[int, int], str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in ACTION_OF_CATEGORY.items():
        for t in getattr(db, category):
            if len(t) == 2:
                exact[(t[0], t[1])] = action
            else:
                masked.append((t[0], t[1], t[2], t[3], action))
    return exact, masked


_TABLE: tuple[dict[tuple[int, int], str], list[tuple[int, int, int, int, str]]] | None = None


def profile_action(tag: int) -> str | None:
    """The Basic Profile's action for a tag (X, Z, D, U), None if it leaves it alone."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _profile_table()
    exact, masked = _TABLE
    g, e = tag >> 16, tag & 0xFFFF
    if (g, e) in exact:
        return exact[(g, e)]
    for mg, me, gmask, emask, action in masked:
        if g & gmask == mg & gmask and e & emask == me & emask:
            return action
    return None


def profile_findings(ds: Dataset) -> list[ProfileFinding]:
    """Every top-level attribute that the Basic Profile would change and that still has a value,
    and every private attribute (the profile removes them); retained ones are listed as ``R``."""
    out: list[ProfileFinding] = []
    # A file that declares the Basic Profile applied (113100) has had its UIDs replaced; a UID
    # cannot show whether it was, so only such a declaration lifts the U findings.
    declared = _text(ds, "PatientIdentityRemoved").upper() == "YES" and any(
        str(c.get("CodeValue", "")) == "113100"
        for c in ds.get("DeidentificationMethodCodeSequence", [])
    )
    for elem in ds:
        if elem.tag.is_private:
            if not elem.tag.is_private_creator:
                out.append(
                    ProfileFinding(f"({elem.tag.group:04X},{elem.tag.element:04X})", "", "P")
                )
            continue
        action = profile_action(int(elem.tag))
        if action is None or elem.value in (None, "", b"") or (elem.VR == "SQ" and not elem.value):
            continue
        if action == "U" and (declared or is_dicom_defined(str(elem.value))):
            continue
        if (
            action in ("Z", "D")
            and elem.VR in ("PN", "LO", "SH")
            and _is_dummy_name(str(elem.value))
        ):
            continue  # a recognised placeholder is the profile's dummy value
        kw = elem.keyword or ""
        out.append(
            ProfileFinding(
                f"({elem.tag.group:04X},{elem.tag.element:04X})",
                kw,
                "R" if kw in RETAINED else action,
            )
        )
    return out


def age_band(value: str) -> str | None:
    """A DICOM Age String (``057Y``) as the start of its band (``055Y``); None if not in years."""
    m = re.fullmatch(r"(\d{3})Y", value.strip())
    if not m:
        return None
    return f"{int(m.group(1)) // AGE_BAND_YEARS * AGE_BAND_YEARS:03d}Y"


def keyed_uid(key: bytes, uid: str) -> str:
    """A new UID for ``uid``, the same for the same key (``2.25.`` + 128 bits of an HMAC): an
    import repeated with the same key is byte-identical, and nobody without it can link back."""
    import hashlib
    import hmac

    return "2.25." + str(
        int.from_bytes(hmac.new(key, uid.encode(), hashlib.sha256).digest()[:16], "big")
    )


def apply_basic_profile(ds: Dataset, key: bytes, pseudonym: str) -> None:
    """De-identify ``ds`` in place: the Basic Profile with Retain Patient Characteristics (age as
    a band) and Retain Device Identity; private attributes removed; UIDs keyed (:func:`keyed_uid`);
    the patient becomes ``pseudonym``."""
    from pydicom.dataset import Dataset as _Dataset

    for elem in list(ds):
        if elem.tag.is_private:
            del ds[elem.tag]
            continue
        kw = elem.keyword or ""
        action = profile_action(int(elem.tag))
        if kw == "PatientAge":
            band = age_band(str(elem.value or ""))
            if band is None:
                del ds[elem.tag]
            else:
                elem.value = band
            continue
        if action is None or kw in RETAINED:
            continue
        if action == "X" and elem.VR == "SQ":
            elem.value = []  # emptied, not removed: an IOD may require the sequence (Type 2)
        elif action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = [] if elem.VR == "SQ" else ""
        elif action == "D":
            if elem.VR == "SQ":
                elem.value = []
            elif elem.VR in ("DA",):
                elem.value = "19000101"
            elif elem.VR in ("TM",):
                elem.value = "000000"
            elif elem.VR in ("DT",):
                elem.value = "19000101000000"
            elif elem.VR in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS"):
                elem.value = 0
            else:
                elem.value = "ANONYMISED"
    mapping: dict[str, str] = {}
    for elem in ds.iterall():
        if elem.VR != "UI" or elem.value in (None, ""):
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        new = [
            str(u)
            if is_dicom_defined(str(u))
            else mapping.setdefault(str(u), keyed_uid(key, str(u)))
            for u in values
        ]
        elem.value = new if elem.VM > 1 else new[0]
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = f"ANONYMISED^{pseudonym}"
    ds.PatientID = f"ANONYMISED-{pseudonym}"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [  # LO: 64 characters per value
        "PS3.15 Basic Application Confidentiality Profile",
        f"Retain Patient Characteristics (age as a {AGE_BAND_YEARS}-year band)",
        "Retain Device Identity",
        "mammocert cases import",
    ]
    codes = []
    for value, meaning in (
        ("113100", "Basic Application Confidentiality Profile"),
        ("113108", "Retain Patient Characteristics Option"),
        ("113109", "Retain Device Identity Option"),
    ):
        c = _Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "DCM", meaning
        codes.append(c)
    ds.DeidentificationMethodCodeSequence = codes
