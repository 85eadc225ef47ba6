"""The de-identification gate and UID re-randomisation applied before anything is sent."""

from __future__ import annotations

from dicom_testkit import make_exam
from pydicom.filebase import DicomBytesIO

from harness.dicomnet.deid import identification_problems, pseudonymise_exam


def test_identifiable_data_is_named(tmp_path):
    exam = make_exam(tmp_path, "E1", identifiable=True)
    problems = identification_problems(exam.images[0][1])
    assert any("PatientIdentityRemoved" in p for p in problems)
    assert any("PatientName" in p for p in problems)
    assert any("civil registration" in p for p in problems)
    assert any("PatientBirthDate" in p for p in problems)
    assert all(
        "Jensen" not in p and "010203" not in p for p in problems
    )  # the refusal never echoes identity


def test_deidentified_data_passes_and_each_attribute_counts(tmp_path):
    ds = make_exam(tmp_path, "E1").images[0][1]
    assert identification_problems(ds) == []
    ds.PatientBirthDate = "19600101"
    assert identification_problems(ds) == ["PatientBirthDate is present with a value"]
    ds.PatientBirthDate = ""
    ds.PatientIdentityRemoved = "NO"
    assert identification_problems(ds) == ["PatientIdentityRemoved is NO, not YES"]


def _encoded(ds) -> bytes:
    buf = DicomBytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_uids_are_rerandomised_per_send_and_mapped_back(tmp_path):
    exam_id = "CANARY-31415927"  # long enough that random pixel bytes cannot contain it
    exam = make_exam(tmp_path, exam_id)
    items = [(ref.file, ds) for ref, ds in exam.images]
    for _, ds in items:  # a set that carries its exam id in the patient and accession fields
        ds.PatientID = ds.AccessionNumber = exam_id
    originals = {str(ds.SOPInstanceUID) for _, ds in items} | {
        str(items[0][1].StudyInstanceUID),
        str(items[0][1].SeriesInstanceUID),
    }
    a, b = pseudonymise_exam(exam_id, items), pseudonymise_exam(exam_id, items)
    assert a.study_uid != b.study_uid and a.study_uid not in originals
    assert {str(d.StudyInstanceUID) for d in a.datasets} == {a.study_uid}
    assert len({str(d.SeriesInstanceUID) for d in a.datasets}) == 1  # one series stays one series
    assert sorted(a.sop_to_file.values()) == sorted(f for f, _ in items)
    for sent_uid, file in a.sop_to_file.items():
        assert a.original_uid[sent_uid] == str(dict(items)[file].SOPInstanceUID)
    for ds in a.datasets:
        raw = _encoded(ds)
        assert not any(uid.encode() in raw for uid in originals)
        canary = exam_id.encode()
        assert canary not in raw.replace(canary + b"/", b"")  # the exam id does not travel either
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"  # DICOM-defined UIDs are kept
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert str(items[0][1].StudyInstanceUID) in originals  # the inputs were not modified
