"""``metadata``: new dummy identity, new UIDs, shifted dates, another site; pixels untouched.

Nothing a screening model should use changes, so the output must not change. A model (or a
service in front of it) that keys answers on UIDs, accession numbers or patient IDs (cached or
memorised answers), or that leans on the site or the date (shortcuts), fails this.

Per image (a deep copy):

* every instance UID (Study, Series, SOP Instance, Frame of Reference, Irradiation Event, the
  file meta's Media Storage SOP Instance, and references to them in sequences) is replaced by
  ``2.25.<n>`` derived from the seed and the old UID, so images that shared a study still share
  one, and the same seed always gives the same UIDs (no clock, no randomness);
* PatientID, PatientName and AccessionNumber become dummies derived from the seed and the old
  value (different patients stay different); InstitutionName names a dummy site; address,
  station and referring physician, where present, are replaced or blanked;
* every DA value, and the date part of every DT value, moves by ``date_shift_days`` (birth date
  included, so the age at the exam is kept).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import ClassVar

from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from harness.exam_input import ExamInput
from harness.perturb.image import map_images
from harness.perturb.relation import Relation
from harness.perturb.strategies import SEEDS

# Attributes holding *instance* UIDs (never SOP classes, syntaxes or coding schemes).
INSTANCE_UID_KEYWORDS = frozenset(
    {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "MediaStorageSOPInstanceUID",
        "ReferencedSOPInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedFrameOfReferenceUID",
        "SynchronizationFrameOfReferenceUID",
        "IrradiationEventUID",
        "ConcatenationUID",
        "DimensionOrganizationUID",
        "InstanceCreatorUID",
        "StorageMediaFileSetUID",
    }
)
MAX_SHIFT_DAYS = 36500


@dataclass(frozen=True)
class MetadataParams:
    """``seed`` drives every new identifier; ``date_shift_days`` moves every date."""

    seed: int = 0
    date_shift_days: int = 0
    relation: ClassVar[str] = "metadata"

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"metadata: seed must be >= 0, got {self.seed}")
        if abs(self.date_shift_days) > MAX_SHIFT_DAYS:
            raise ValueError(
                f"metadata: date_shift_days must be within +-{MAX_SHIFT_DAYS}, got {self.date_shift_days}"
            )


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def new_uid(seed: int, old: str) -> str:
    """The replacement for ``old``: deterministic in (seed, old), a valid ``2.25.`` UID.

    A name-based UUID (version 5 layout over SHA-256) written as ``2.25.<integer>`` (PS3.5 B.2).
    pydicom's ``generate_uid(prefix=None)`` would ignore the entropy and draw a random UUID.
    """
    digest = hashlib.sha256(f"mammocert-metadata\x1f{seed}\x1f{old}".encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=5).int}"


def _shift_date(text: str, days: int) -> str:
    if len(text) < 8 or not text[:8].isdigit():
        return text
    day = _dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) + _dt.timedelta(days=days)
    return day.strftime("%Y%m%d") + text[8:]


def _map_value(value: object, fn) -> object:
    if isinstance(value, MultiValue | list):
        return [fn(str(v)) if v else v for v in value]
    return fn(str(value)) if value else value


def _rewrite(ds: Dataset, params: MetadataParams) -> None:
    def visit(_ds: Dataset, elem: DataElement) -> None:
        if elem.VR == "UI" and elem.keyword in INSTANCE_UID_KEYWORDS and elem.value:
            elem.value = _map_value(elem.value, lambda old: new_uid(params.seed, old))
        elif elem.VR in ("DA", "DT") and elem.value and params.date_shift_days:
            elem.value = _map_value(elem.value, lambda t: _shift_date(t, params.date_shift_days))

    ds.walk(visit)
    if getattr(ds, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = new_uid(
            params.seed, ds.file_meta.MediaStorageSOPInstanceUID
        )

    s = params.seed
    ds.PatientID = "MC" + _digest(s, "id", ds.get("PatientID", "")).upper()[:14]
    ds.PatientName = "DUMMY^" + _digest(s, "name", ds.get("PatientName", "")).upper()[:10]
    ds.AccessionNumber = _digest(s, "acc", ds.get("AccessionNumber", ""))[:16].upper()
    ds.InstitutionName = f"MAMMOCERT DUMMY SITE {s % 1000:03d}"
    if "InstitutionAddress" in ds:
        ds.InstitutionAddress = "NOT A REAL ADDRESS"
    if "StationName" in ds:
        ds.StationName = f"MCSTATION{s % 1000:03d}"
    if "ReferringPhysicianName" in ds:
        ds.ReferringPhysicianName = ""


def apply_metadata(exam: ExamInput, params: MetadataParams) -> ExamInput:
    """Rewrite identity, UIDs, dates and site of every image (the input is not modified)."""

    def one(_i: int, ref, ds: Dataset):
        _rewrite(ds, params)
        return ref, ds

    return map_images(exam, one)


def metadata_params() -> st.SearchStrategy[MetadataParams]:
    """Any seed; dates shifted by up to 10 years either way (0 = dates kept)."""
    return st.builds(MetadataParams, seed=SEEDS, date_shift_days=st.integers(-3650, 3650))


RELATION = Relation(
    name=MetadataParams.relation,
    kind="invariant",
    expectation="new dummy patient identity, UIDs, accession number, site and shifted dates: output unchanged",
    params_type=MetadataParams,
    apply=apply_metadata,
    strategy=metadata_params(),
    position=20,
    grid=(MetadataParams(seed=1, date_shift_days=3650),),
)
