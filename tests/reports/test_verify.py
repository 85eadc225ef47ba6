"""verify_bundle: a valid bundle passes; every kind of tampering fails with exit 1."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
import reports_bundle_factory as synthetic

from conformance.criteria import KIND_FACTS
from harness.errors import HarnessFault, UsageError, VerificationError
from mammocert.cli import main
from reports.render import render_report
from reports.signing import ATTESTATION_FILE, UNSIGNED_FILE, write_attestation
from reports.verify import Recomputation, verify_bundle


def flip(path: Path, position: float) -> int:
    """Flip the lowest bit of the byte at a relative position (0..1) of the file; return its index."""
    data = bytearray(path.read_bytes())
    i = min(int(len(data) * position), len(data) - 1)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
    return i


def test_valid_bundle_verifies(signed_bundle: Path, keypair: tuple[Path, Path]) -> None:
    report = verify_bundle(signed_bundle, keypair[1])
    assert report.criteria == len(synthetic.criteria())
    assert report.verdict == "NOT CONFORMANT"
    assert report.standard == "DK-MAMMO-AI 0.1.0"
    assert report.recomputed is None
    # the envelope file itself is accepted as PATH too
    assert verify_bundle(signed_bundle / ATTESTATION_FILE, keypair[1]).keyid == report.keyid


def test_cli_success_prints_one_line_and_exits_0(
    signed_bundle: Path, keypair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(signed_bundle), "--key", str(keypair[1])]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("verified: ")


# Positions spread over each file: start, inside, middle, late, last byte.
POSITIONS = [0.0, 0.013, 0.29, 0.5, 0.77, 0.999, 1.0]


@pytest.mark.parametrize(
    "name", [ATTESTATION_FILE, "report.html", "predictions.jsonl", "results.json"]
)
@pytest.mark.parametrize("position", POSITIONS)
def test_one_flipped_byte_fails(
    signed_bundle: Path,
    keypair: tuple[Path, Path],
    name: str,
    position: float,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flip(signed_bundle / name, position)
    with pytest.raises(VerificationError):
        verify_bundle(signed_bundle, keypair[1])
    assert main(["verify", str(signed_bundle), "--key", str(keypair[1])]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "verified" not in err


def test_every_byte_of_the_envelope_matters(
    signed_bundle: Path, keypair: tuple[Path, Path]
) -> None:
    """Exhaustive over the envelope: no byte is outside the signature's protection."""
    path = signed_bundle / ATTESTATION_FILE
    original = path.read_bytes()
    step = max(1, len(original) // 400)  # about 400 positions, incl. keyid, signature, JSON syntax
    for i in list(range(0, len(original), step)) + [len(original) - 1]:
        data = bytearray(original)
        data[i] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(VerificationError):
            verify_bundle(signed_bundle, keypair[1])
    path.write_bytes(original)
    verify_bundle(signed_bundle, keypair[1])


def test_whitespace_only_change_in_results_fails(
    signed_bundle: Path, keypair: tuple[Path, Path]
) -> None:
    path = signed_bundle / "results.json"
    path.write_text(path.read_text(encoding="utf-8").replace("\n", "\r\n", 1), encoding="utf-8")
    with pytest.raises(VerificationError, match="results.json"):
        verify_bundle(signed_bundle, keypair[1])


def test_wrong_key_fails(signed_bundle: Path, other_keypair: tuple[Path, Path]) -> None:
    with pytest.raises(VerificationError, match="not signed by the key"):
        verify_bundle(signed_bundle, other_keypair[1])


def test_wrong_key_with_forged_keyid_fails(
    signed_bundle: Path, keypair: tuple[Path, Path], other_keypair: tuple[Path, Path]
) -> None:
    """keyid is only a hint: relabelling the signature with the verifier's keyid does not help."""
    from reports.signing import envelope_bytes, keyid_of, load_public_key

    path = signed_bundle / ATTESTATION_FILE
    env = json.loads(path.read_bytes())
    env["signatures"][0]["keyid"] = keyid_of(load_public_key(other_keypair[1]))
    path.write_bytes(envelope_bytes(env))
    with pytest.raises(VerificationError, match="does not verify"):
        verify_bundle(signed_bundle, other_keypair[1])


def test_tampered_and_resigned_by_another_key_fails(
    signed_bundle: Path, keypair: tuple[Path, Path], other_keypair: tuple[Path, Path]
) -> None:
    write_attestation(signed_bundle, key_path=other_keypair[0])
    with pytest.raises(VerificationError):
        verify_bundle(signed_bundle, keypair[1])


def _resign(bundle: Path, key: Path, **kw) -> None:
    render_report(bundle, KIND_FACTS)
    write_attestation(bundle, key_path=key)


def test_missing_criterion_fails_even_when_resigned(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    crit = synthetic.criteria()
    ids = [c.id for c in crit]
    synthetic.write_bundle(
        tmp_path, crit=crit[:-1], standard_ids=ids
    )  # the standard still lists all
    _resign(tmp_path, keypair[0])
    with pytest.raises(VerificationError, match=f"incomplete: criterion {ids[-1]}"):
        verify_bundle(tmp_path, keypair[1])


def test_duplicated_criterion_fails(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    crit = synthetic.criteria()
    synthetic.write_bundle(tmp_path, crit=crit + [crit[0]], standard_ids=[c.id for c in crit])
    _resign(tmp_path, keypair[0])
    with pytest.raises(VerificationError, match="appears 2 times"):
        verify_bundle(tmp_path, keypair[1])


def test_swapped_standard_file_fails(signed_bundle: Path, keypair: tuple[Path, Path]) -> None:
    std = signed_bundle / "standard.yaml"
    std.write_text(
        std.read_text(encoding="utf-8").replace("version: 0.1.0", "version: 0.1.1"),
        encoding="utf-8",
    )
    with pytest.raises(VerificationError, match="standard.yaml: sha256 differs"):
        verify_bundle(signed_bundle, keypair[1])


def test_standard_expired_before_the_run_fails(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(
        tmp_path, effective="2020-01-01", expires="2026-06-30"
    )  # run finished 2026-11-27
    _resign(tmp_path, keypair[0])
    with pytest.raises(VerificationError, match="not in force"):
        verify_bundle(tmp_path, keypair[1])


def test_standard_not_yet_effective_fails(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(tmp_path, effective="2027-01-01", expires="2029-01-01")
    _resign(tmp_path, keypair[0])
    with pytest.raises(VerificationError, match="not in force"):
        verify_bundle(tmp_path, keypair[1])


def test_certificate_expires_with_its_standard(
    signed_bundle: Path, keypair: tuple[Path, Path]
) -> None:
    verify_bundle(signed_bundle, keypair[1], today=dt.date(2098, 12, 31))
    with pytest.raises(VerificationError, match="expired on 2099-01-01"):
        verify_bundle(signed_bundle, keypair[1], today=dt.date(2099, 1, 1))


def test_self_test_without_notice_fails(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(tmp_path, mode="self-test")
    results_path = tmp_path / "results.json"
    d = json.loads(results_path.read_text(encoding="utf-8"))
    assert d["notice"]
    d["notice"] = ""
    results_path.write_text(json.dumps(d, indent=2), encoding="utf-8")
    _resign(tmp_path, keypair[0])
    with pytest.raises(VerificationError, match="SELF-TEST"):
        verify_bundle(tmp_path, keypair[1])


def test_self_test_with_notice_verifies(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(tmp_path, mode="self-test")
    _resign(tmp_path, keypair[0])
    assert verify_bundle(tmp_path, keypair[1]).mode == "self-test"


def test_forged_verdict_fails_even_when_signed(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(tmp_path)
    results_path = tmp_path / "results.json"
    d = json.loads(results_path.read_text(encoding="utf-8"))
    d["verdict"] = "CONFORMANT"
    results_path.write_text(json.dumps(d, indent=2), encoding="utf-8")
    _resign(tmp_path, keypair[0])
    with pytest.raises(VerificationError, match="contradicts"):
        verify_bundle(tmp_path, keypair[1])


def _recompute_from_results(bundle: Path, cases: Path, change: dict | None = None) -> list[dict]:
    crit = json.loads((bundle / "results.json").read_text(encoding="utf-8"))["criteria"]
    out = [{k: c[k] for k in ("id", "outcome", "value", "ci", "n")} for c in crit]
    if change:
        out[0].update(change)
    return out


def test_recomputation_that_agrees_passes(
    signed_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    report = verify_bundle(
        signed_bundle, keypair[1], cases_dir=tmp_path, recompute=_recompute_from_results
    )
    assert report.recomputed == len(synthetic.criteria())


def test_recomputation_accepts_criterion_results(
    signed_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    """The engine returns CriterionResult objects; tuples for ci must compare equal to JSON lists."""
    crit = synthetic.criteria()
    report = verify_bundle(
        signed_bundle, keypair[1], cases_dir=tmp_path, recompute=lambda b, c: crit
    )
    assert report.recomputed == len(crit)


@pytest.mark.parametrize(
    "change",
    [
        {"value": 0.9121},
        {"ci": [0.874, 0.951]},
        {"n": 399},
        {"outcome": "failed"},
        {"id": "DK-NOPE-99"},
    ],
)
def test_recomputation_mismatch_fails(
    signed_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path, change: dict
) -> None:
    with pytest.raises(VerificationError, match="recompute"):
        verify_bundle(
            signed_bundle,
            keypair[1],
            cases_dir=tmp_path,
            recompute=lambda b, c: _recompute_from_results(b, c, change),
        )


def test_recomputation_gets_the_bundle_and_cases(
    signed_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    seen = []
    verify_bundle(
        signed_bundle,
        keypair[1],
        cases_dir=tmp_path,
        recompute=lambda b, c: seen.append((b, c)) or _recompute_from_results(b, c),
    )
    assert seen == [(signed_bundle, tmp_path)]


def test_recomputation_must_account_for_every_criterion(
    signed_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    """A criterion silently left out of the re-judgement fails; one named as needing the model
    again is listed, with the reason, in the one-line summary."""
    with pytest.raises(VerificationError, match="DK-INV-01 were neither re-judged"):
        verify_bundle(
            signed_bundle,
            keypair[1],
            cases_dir=tmp_path,
            recompute=lambda b, c: [
                r for r in _recompute_from_results(b, c) if r["id"] != "DK-INV-01"
            ],
        )
    report = verify_bundle(
        signed_bundle,
        keypair[1],
        cases_dir=tmp_path,
        recompute=lambda b, c: Recomputation(
            [r for r in _recompute_from_results(b, c) if r["id"] != "DK-INV-01"],
            {"DK-INV-01": "needs the model again: a test reason"},
        ),
    )
    assert report.recomputed == len(synthetic.criteria()) - 1
    assert "not re-judged: DK-INV-01 (needs the model again: a test reason)" in report.summary()


def test_cases_without_the_engine_is_a_harness_fault(
    signed_bundle: Path, keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(HarnessFault, match="recompute_criteria"):
        verify_bundle(signed_bundle, keypair[1], cases_dir=tmp_path)


def test_the_cli_passes_the_engines_recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.verify as verify_module
    from conformance.engine import recompute_criteria
    from mammocert import cli

    seen = {}

    def fake_verify(path, key, cases, recompute=None):
        seen["recompute"] = recompute
        raise SystemExit(0)

    monkeypatch.setattr(verify_module, "verify_bundle", fake_verify)
    with pytest.raises(SystemExit):
        cli.main(["verify", "b", "--key", "k", "--cases", "c"])
    assert seen["recompute"] is recompute_criteria


def test_unsigned_bundle_is_not_verified(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    synthetic.write_bundle(tmp_path, mode="self-test", signing="unsigned")
    render_report(tmp_path, KIND_FACTS)
    att = write_attestation(tmp_path)
    assert att.path.name == UNSIGNED_FILE and not att.signed
    with pytest.raises(VerificationError, match="unsigned"):
        verify_bundle(tmp_path, keypair[1])


def test_missing_file_fails(signed_bundle: Path, keypair: tuple[Path, Path]) -> None:
    (signed_bundle / "predictions.jsonl").unlink()
    with pytest.raises(VerificationError, match="predictions.jsonl: missing"):
        verify_bundle(signed_bundle, keypair[1])


def test_nonexistent_path_is_usage_error(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    with pytest.raises(UsageError):
        verify_bundle(tmp_path / "nope", keypair[1])


def test_subject_must_match_model_digest(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """A statement whose subject names another model fails even though it is validly signed."""
    from harness.jsonutil import sha256_file
    from reports.signing import build_statement, envelope_bytes, sign_statement

    synthetic.write_bundle(tmp_path)
    render_report(tmp_path, KIND_FACTS)
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    st = build_statement(
        results,
        [{"name": "model.onnx", "digest": {"sha256": "0" * 64}}],
        sha256_file(tmp_path / "report.html"),
        sha256_file(tmp_path / "predictions.jsonl"),
        sha256_file(tmp_path / "results.json"),
    )
    (tmp_path / ATTESTATION_FILE).write_bytes(envelope_bytes(sign_statement(st, keypair[0])))
    with pytest.raises(VerificationError, match="subjects"):
        verify_bundle(tmp_path, keypair[1])


def test_results_model_round_trip_of_fixture() -> None:
    """The fixture is a faithful RunResults (guards the tests above against a malformed fixture)."""
    from harness.results import results_from_dict

    r = synthetic.make_results()
    assert results_from_dict(json.loads(json.dumps(r.to_dict()))) == dataclasses.replace(r)
