"""The attestation seals the whole bundle: every file (journal, JUnit report, evidence in
subdirectories, anything added) is a subject, and the envelope carries exactly one signature."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path

import pytest
import reports_bundle_factory as synthetic

from conformance.criteria import KIND_FACTS
from harness.errors import VerificationError
from harness.journal import Journal, model_digest
from harness.jsonutil import sha256_file
from harness.predictions import ExamOutput, Prediction
from reports.render import render_report
from reports.signing import (
    ATTESTATION_FILE,
    UNSIGNED_FILE,
    build_statement,
    envelope_bytes,
    keyid_of,
    load_private_key,
    pae,
    sign_statement,
    write_attestation,
)
from reports.verify import verify_bundle

JUNIT = (
    '<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="mammocert" tests="8" '
    'failures="3" errors="1" skipped="0" time="1.000"/></testsuites>\n'
)
EVIDENCE = "dicom-evidence/E0001/sr-1.dcm"


def _bundle(bundle: Path, signing: str = "key") -> Path:
    """A synthetic bundle with what a run adds: junit.xml, the journal, DICOM evidence."""
    synthetic.write_bundle(
        bundle, mode="self-test" if signing == "unsigned" else "certify", signing=signing
    )
    (bundle / "junit.xml").write_text(JUNIT, encoding="utf-8")
    with Journal(
        bundle / "journal.sqlite", model_digest({"model.onnx": synthetic.MODEL_DIGEST})
    ) as j:
        out = ExamOutput(0.25, {"L": 0.25, "R": 0.1})
        j.put("case-E0001", Prediction.ok("E0001", "original", out, 0.1))
    (bundle / EVIDENCE).parent.mkdir(parents=True)
    (bundle / EVIDENCE).write_bytes(b"\0" * 128 + b"DICM" + b"evidence a node sent")
    render_report(bundle, KIND_FACTS)
    return bundle


@pytest.fixture(scope="module")
def sealed_master(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]) -> Path:
    bundle = _bundle(tmp_path_factory.mktemp("sealed") / "bundle")
    write_attestation(bundle, key_path=keypair[0])
    verify_bundle(bundle, keypair[1])
    return bundle


@pytest.fixture()
def sealed(tmp_path: Path, sealed_master: Path) -> Path:
    import shutil

    return Path(shutil.copytree(sealed_master, tmp_path / "bundle"))


def _subjects(bundle: Path) -> dict[str, str]:
    env = json.loads((bundle / ATTESTATION_FILE).read_bytes())
    st = json.loads(base64.b64decode(env["payload"]))
    return {s["name"]: s["digest"]["sha256"] for s in st["subject"]}


def test_every_file_is_a_subject_but_the_envelope(sealed: Path) -> None:
    subjects = _subjects(sealed)
    for rel in ("journal.sqlite", "junit.xml", EVIDENCE, "results.json", "report.html"):
        assert subjects[f"bundle/{rel}"] == sha256_file(sealed / rel)
    assert f"bundle/{ATTESTATION_FILE}" not in subjects
    assert subjects["model.onnx"] == synthetic.MODEL_DIGEST


def test_a_score_edited_in_the_journal_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    db = sqlite3.connect(sealed / "journal.sqlite")
    db.execute("UPDATE results SET record = replace(record, '0.25', '0.95')")
    db.commit()
    db.close()
    with pytest.raises(VerificationError, match=r"journal.sqlite: sha256 differs"):
        verify_bundle(sealed, keypair[1])


def test_a_deleted_journal_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    (sealed / "journal.sqlite").unlink()
    with pytest.raises(VerificationError, match=r"journal.sqlite: missing"):
        verify_bundle(sealed, keypair[1])


def test_junit_failures_set_to_zero_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    path = sealed / "junit.xml"
    path.write_text(path.read_text(encoding="utf-8").replace('failures="3"', 'failures="0"'))
    with pytest.raises(VerificationError, match=r"junit.xml: sha256 differs"):
        verify_bundle(sealed, keypair[1])


@pytest.mark.parametrize(
    "added", ["extra.txt", ".hidden", "dicom-evidence/E0001/planted.dcm", "new-dir/a/b.json"]
)
def test_a_file_added_anywhere_fails(sealed: Path, keypair: tuple[Path, Path], added: str) -> None:
    (sealed / added).parent.mkdir(parents=True, exist_ok=True)
    (sealed / added).write_bytes(b"added after signing\n")
    with pytest.raises(VerificationError, match="not sealed by the attestation"):
        verify_bundle(sealed, keypair[1])


def test_sqlite_side_files_fail_too(sealed: Path, keypair: tuple[Path, Path]) -> None:
    """Empty -wal/-shm files are bundle files like any other: a run must not leave them."""
    (sealed / "journal.sqlite-wal").write_bytes(b"")
    with pytest.raises(VerificationError, match="journal.sqlite-wal: not sealed"):
        verify_bundle(sealed, keypair[1])


def test_changed_or_removed_evidence_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    path = sealed / EVIDENCE
    path.write_bytes(path.read_bytes() + b"!")
    with pytest.raises(VerificationError, match="sr-1.dcm: sha256 differs"):
        verify_bundle(sealed, keypair[1])
    path.unlink()
    with pytest.raises(VerificationError, match="sr-1.dcm: missing"):
        verify_bundle(sealed, keypair[1])


def test_a_link_in_the_bundle_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    os.symlink(sealed / "results.json", sealed / "alias.json")
    with pytest.raises(VerificationError, match="not a regular file"):
        verify_bundle(sealed, keypair[1])


def _append_signature(bundle: Path, private_key: Path, keyid: str | None = None) -> None:
    path = bundle / ATTESTATION_FILE
    env = json.loads(path.read_bytes())
    key = load_private_key(private_key)
    sig = key.sign(pae(env["payloadType"], base64.b64decode(env["payload"])))
    env["signatures"].append(
        {
            "keyid": keyid or keyid_of(key.public_key()),
            "sig": base64.b64encode(sig).decode("ascii"),
        }
    )
    path.write_bytes(envelope_bytes(env))


def test_a_foreign_second_signature_fails(
    sealed: Path, keypair: tuple[Path, Path], other_keypair: tuple[Path, Path]
) -> None:
    """Rule: exactly one signature, by the trusted key. A valid signature of another key over the
    same payload is still a changed envelope."""
    _append_signature(sealed, other_keypair[0])
    with pytest.raises(
        VerificationError, match="2 signatures; a mammocert attestation carries exactly one"
    ):
        verify_bundle(sealed, keypair[1])


def test_a_second_copy_of_the_own_signature_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    _append_signature(sealed, keypair[0])
    with pytest.raises(VerificationError, match="2 signatures"):
        verify_bundle(sealed, keypair[1])


def test_a_signature_without_keyid_fails(sealed: Path, keypair: tuple[Path, Path]) -> None:
    path = sealed / ATTESTATION_FILE
    env = json.loads(path.read_bytes())
    del env["signatures"][0]["keyid"]
    path.write_bytes(envelope_bytes(env))
    with pytest.raises(VerificationError, match="malformed"):
        verify_bundle(sealed, keypair[1])


def test_an_attestation_that_seals_only_the_model_fails(
    sealed: Path, keypair: tuple[Path, Path]
) -> None:
    """What the harness signed before bundles were sealed whole no longer verifies."""
    results = json.loads((sealed / "results.json").read_text(encoding="utf-8"))
    st = build_statement(
        results,
        [{"name": "model.onnx", "digest": {"sha256": synthetic.MODEL_DIGEST}}],
        sha256_file(sealed / "report.html"),
        sha256_file(sealed / "predictions.jsonl"),
        sha256_file(sealed / "results.json"),
    )
    (sealed / ATTESTATION_FILE).write_bytes(envelope_bytes(sign_statement(st, keypair[0])))
    with pytest.raises(VerificationError, match="seals no bundle file"):
        verify_bundle(sealed, keypair[1])


def test_resigning_after_a_change_seals_the_new_bytes(
    sealed: Path, keypair: tuple[Path, Path]
) -> None:
    """Whoever holds the key can re-seal; the seal is over the bundle as it is when signed."""
    (sealed / "notes.txt").write_text("added before re-signing\n")
    write_attestation(sealed, key_path=keypair[0])
    verify_bundle(sealed, keypair[1])
    assert "bundle/notes.txt" in _subjects(sealed)


def test_the_unsigned_statement_lists_every_file_too(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle", signing="unsigned")
    write_attestation(bundle)
    st = json.loads((bundle / UNSIGNED_FILE).read_text(encoding="utf-8"))
    names = {s["name"] for s in st["subject"]}
    assert {f"bundle/{EVIDENCE}", "bundle/journal.sqlite", "bundle/junit.xml"} <= names
    assert f"bundle/{UNSIGNED_FILE}" not in names


def test_an_earlier_demo_key_is_not_sealed_into_a_key_signed_bundle(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    bundle = _bundle(tmp_path / "bundle")
    (bundle / "demo-key.pub.pem").write_text("an earlier demo run's public key\n")
    write_attestation(bundle, key_path=keypair[0])
    assert not (bundle / "demo-key.pub.pem").exists()
    assert "bundle/demo-key.pub.pem" not in _subjects(bundle)
    verify_bundle(bundle, keypair[1])
