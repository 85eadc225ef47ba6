"""The rules every network interface shares: the per-send check and pseudonymisation, and the
way back from what the endpoint cites to the manifest's files."""

from __future__ import annotations

import copy

import pytest
from dicom_testkit import make_exam, write_dicom_package
from pydicom.uid import generate_uid

from harness.errors import UsageError, VendorFault
from harness.exam_input import ExamInput
from harness.vendors import load_vendor_package, remote


def _package(tmp_path, *, allow_identifiable: bool = False):
    return load_vendor_package(
        write_dicom_package(
            tmp_path / "pkg",
            node_port=11112,
            listen_port=11113,
            allow_identifiable=allow_identifiable,
        )
    )


def test_an_identifiable_exam_is_not_sent(tmp_path):
    exam = make_exam(tmp_path / "set", "E0001", identifiable=True)
    with pytest.raises(UsageError) as exc:
        remote.pseudonymise(_package(tmp_path), exam)
    message = str(exc.value)
    assert message.startswith(
        "exam E0001 file E0001/LCC.dcm: not de-identified (PatientIdentityRemoved is"
    )
    assert "it was not sent" in message and "dicom.allow_identifiable: true" in message
    assert "Jensen" not in message and "\n" not in message


def test_allow_identifiable_lets_an_exam_through_pseudonymised(tmp_path):
    exam = make_exam(tmp_path / "set", "E0001", identifiable=True)
    pkg = _package(tmp_path, allow_identifiable=True)
    assert remote.allows_identifiable(pkg)
    sent = remote.pseudonymise(pkg, exam)
    assert all(str(ds.PatientName).startswith("MAMMOCERT^") for ds in sent.datasets)
    assert all(ds.PatientIdentityRemoved == "YES" for ds in sent.datasets)


def test_what_is_sent_maps_back_to_the_manifest(tmp_path):
    exam = make_exam(tmp_path / "set", "E0001")
    originals = {str(ds.SOPInstanceUID): ref for ref, ds in exam.images}
    a = remote.pseudonymise(_package(tmp_path), exam)
    b = remote.pseudonymise(_package(tmp_path), exam)
    assert a.study_uid != b.study_uid  # a re-sent exam is a new study for the endpoint
    assert a.study_uid != str(exam.images[0][1].StudyInstanceUID)
    assert not set(a.images) & set(originals)
    for ds in a.datasets:
        back = a.reidentify(str(ds.SOPInstanceUID))
        ref = originals[a.original_uid[str(ds.SOPInstanceUID)]]
        assert back == (ref.file, ref.laterality, ref.view)
        assert back.file == ref.file
    assert a.reidentify(generate_uid()) is None  # an image the harness did not send
    assert exam.images[0][1].PatientName != a.datasets[0].PatientName  # originals untouched


def test_an_exam_spanning_two_studies_is_rejected(tmp_path):
    exam = make_exam(tmp_path / "set", "E0001")
    (ref0, ds0), *rest = exam.images
    other = copy.deepcopy(ds0)
    other.StudyInstanceUID = generate_uid()
    with pytest.raises(VendorFault) as exc:
        remote.pseudonymise(_package(tmp_path), ExamInput("E0001", ((ref0, other), *rest)))
    assert exc.value.status == "rejected" and "2 studies" in str(exc.value)
