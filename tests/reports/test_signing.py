"""Keys, statement, DSSE envelope, and the attestation files a bundle gets."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import stat
from pathlib import Path

import pytest
import reports_bundle_factory as synthetic
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SSLibVerificationError
from securesystemslib.signer import SSlibKey

from conformance.criteria import KIND_FACTS
from harness.errors import UsageError
from harness.jsonutil import canonical_json, sha256_file
from mammocert.cli import main
from reports.render import render_report
from reports.signing import (
    ATTESTATION_FILE,
    DEMO_PUBLIC_KEY,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    UNSIGNED_FILE,
    build_statement,
    pae,
    sign_statement,
    write_attestation,
)
from reports.verify import verify_bundle


def test_keys_generate_cli_gives_0600_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--out", str(tmp_path / "k")]) == 0
    priv, pub = tmp_path / "k" / "signing-key.pem", tmp_path / "k" / "signing-key.pub.pem"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    key = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    assert (
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == pub.read_bytes()
    )
    assert "0600" in capsys.readouterr().out


def test_keys_generate_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "signing-key.pem").read_bytes()
    assert main(["keys", "generate", "--out", str(tmp_path)]) == 2
    assert (tmp_path / "signing-key.pem").read_bytes() == before
    assert capsys.readouterr().err.count("\n") == 1


def test_pae_is_exact() -> None:
    # The DSSE spec's own test vector (protocol.md).
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    assert pae("é", b"\x00") == b"DSSEv1 2 \xc3\xa9 1 \x00"  # lengths in bytes, not characters


def test_statement_shape() -> None:
    results = synthetic.make_results().to_dict()
    subjects = [{"name": "model.onnx", "digest": {"sha256": synthetic.MODEL_DIGEST}}]
    st = build_statement(results, subjects, "a" * 64, "b" * 64)
    assert st["_type"] == STATEMENT_TYPE
    assert st["predicateType"] == PREDICATE_TYPE
    assert st["subject"] == subjects
    p = st["predicate"]
    assert p["report_sha256"] == "a" * 64 and p["predictions_sha256"] == "b" * 64
    assert p["result"] == "FAILED"  # the fixture has a failed mandatory criterion
    assert p["failedTests"] == ["DK-INV-01", "DK-DEC-NOISE", "DK-TFR-01"]
    assert p["passedTests"] == ["DK-AUC-01", "DK-SUB-01", "DK-LOC-01", "DK-ROB-01", "DK-LAT-01"]
    assert {c["name"].split(":")[0] for c in p["configuration"]} == {"standard", "reference_set"}
    for k, v in results.items():  # the predicate *is* results.json plus the added fields
        assert p[k] == v


def test_statement_passed_when_conformant() -> None:
    crit = [c for c in synthetic.criteria() if c.outcome == "passed"]
    st = build_statement(
        synthetic.make_results(crit=crit).to_dict(),
        [{"name": "m", "digest": {"sha256": "0" * 64}}],
        "a" * 64,
        "b" * 64,
    )
    assert st["predicate"]["result"] == "PASSED" and st["predicate"]["failedTests"] == []


def test_a_criterion_that_does_not_apply_is_neither_passed_nor_failed() -> None:
    crit = [c for c in synthetic.criteria() if c.outcome == "passed"]
    scoped = dataclasses.replace(crit[0], id="DK-REJ-01", outcome="not_applicable", value=None)
    st = build_statement(
        synthetic.make_results(crit=[*crit, scoped]).to_dict(),
        [{"name": "m", "digest": {"sha256": "0" * 64}}],
        "a" * 64,
        "b" * 64,
    )
    p = st["predicate"]
    assert p["result"] == "PASSED" and p["failedTests"] == []
    assert "DK-REJ-01" not in p["passedTests"] and len(p["passedTests"]) == len(crit)


def test_statement_requires_subject_digest() -> None:
    with pytest.raises(UsageError):
        build_statement(synthetic.make_results().to_dict(), [{"name": "m", "digest": {}}], "a", "b")


def test_envelope_verifies_with_securesystemslib(keypair: tuple[Path, Path]) -> None:
    """Interop: an independent DSSE implementation accepts our envelope, so our PAE is exact."""
    st = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "m", "digest": {"sha256": "0" * 64}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"x": 1},
    }
    env_dict = sign_statement(st, keypair[0])
    assert env_dict["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(env_dict["payload"]) == canonical_json(st)
    pub = SSlibKey.from_crypto(serialization.load_pem_public_key(keypair[1].read_bytes()))
    env = Envelope.from_dict(copy.deepcopy(env_dict))  # from_dict mutates its input
    assert pub.keyid in env.verify([pub], 1)
    tampered = copy.deepcopy(env_dict)
    tampered["payload"] = base64.b64encode(canonical_json({**st, "predicate": {"x": 2}})).decode()
    with pytest.raises(SSLibVerificationError):
        Envelope.from_dict(tampered).verify([pub], 1)


def test_attestation_with_key(signed_bundle: Path) -> None:
    env = json.loads((signed_bundle / ATTESTATION_FILE).read_bytes())
    st = json.loads(base64.b64decode(env["payload"]))
    # the model artifact, then every file of the bundle but the envelope itself
    files = sorted(
        f.relative_to(signed_bundle).as_posix()
        for f in signed_bundle.rglob("*")
        if f.is_file() and f.name != ATTESTATION_FILE
    )
    assert st["subject"] == [
        {"name": "model.onnx", "digest": {"sha256": synthetic.MODEL_DIGEST}}
    ] + [
        {"name": f"bundle/{rel}", "digest": {"sha256": sha256_file(signed_bundle / rel)}}
        for rel in files
    ]
    assert {"bundle/results.json", "bundle/report.html", "bundle/standard.yaml"} <= {
        s["name"] for s in st["subject"]
    }
    assert st["predicate"]["report_sha256"] == sha256_file(signed_bundle / "report.html")
    assert st["predicate"]["predictions_sha256"] == sha256_file(signed_bundle / "predictions.jsonl")
    assert st["predicate"]["results_sha256"] == sha256_file(signed_bundle / "results.json")
    assert not (signed_bundle / UNSIGNED_FILE).exists()


def test_unsigned_self_test_writes_statement_not_envelope(tmp_path: Path) -> None:
    synthetic.write_bundle(tmp_path, mode="self-test", signing="unsigned")
    render_report(tmp_path, KIND_FACTS)
    att = write_attestation(tmp_path)
    assert not att.signed and "UNSIGNED" in att.describe()
    assert not (tmp_path / ATTESTATION_FILE).exists()
    st = json.loads((tmp_path / UNSIGNED_FILE).read_text(encoding="utf-8"))
    assert st["_type"] == STATEMENT_TYPE and "signatures" not in st
    assert "Unsigned" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_demo_key_signs_and_says_so(tmp_path: Path) -> None:
    synthetic.write_bundle(tmp_path, mode="demo", signing="demo-key")
    render_report(tmp_path, KIND_FACTS)
    att = write_attestation(tmp_path, demo_key=True)
    assert att.signed and att.demo_key and "DEMO key" in att.describe()
    pub = tmp_path / DEMO_PUBLIC_KEY
    assert att.public_key == pub and pub.is_file()
    # the private half signed this bundle and was discarded: nothing in the bundle can re-sign it
    assert not any(b"PRIVATE KEY" in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())
    report = verify_bundle(tmp_path, pub)
    assert report.demo_key and "DEMO key" in report.summary()
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "DEMONSTRATION" in html and "demonstration key" in html


def test_signing_mode_must_match_results(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """A report that says 'unsigned' must not get a signature (and vice versa): it would misstate it."""
    synthetic.write_bundle(tmp_path, mode="self-test", signing="unsigned")
    render_report(tmp_path, KIND_FACTS)
    with pytest.raises(UsageError, match="signing"):
        write_attestation(tmp_path, key_path=keypair[0])


def test_attestation_needs_report(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(tmp_path)
    with pytest.raises(UsageError, match="report.html"):
        write_attestation(tmp_path, key_path=keypair[0])


def test_bad_private_key_is_one_line_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    with pytest.raises(UsageError) as exc:
        sign_statement({"a": 1}, bad)
    assert "\n" not in str(exc.value)
