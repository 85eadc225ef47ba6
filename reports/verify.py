"""Verify an evidence bundle against its DSSE/in-toto attestation (`docs/contracts.md` §3.7).

Order matters: the envelope is checked and its signature verified before the payload is
parsed, and every later check reads the *verified payload*, never the envelope file again.
The first problem raises :class:`VerificationError` with a one-line reason (exit 1); there is
no partial "looks OK".
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from harness import yamlio
from harness.errors import HarnessFault, UsageError, VerificationError
from harness.jsonutil import canonical_json, sha256_file
from harness.results import CONFORMANT, MODES, NOT_PASSED, SELF_TEST_BANNER, verdict_of
from reports.signing import (
    ATTESTATION_FILE,
    BUNDLE_SUBJECT_PREFIX,
    PAYLOAD_TYPE,
    PREDICATE_EXTRA_KEYS,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    UNSIGNED_FILE,
    bundle_files,
    envelope_bytes,
    keyid_of,
    load_public_key,
    pae,
)

COMPARED_FIELDS = ("id", "outcome", "value", "ci", "n")


@dataclass(frozen=True)
class Recomputation:
    """What ``--cases`` re-judged: each criterion result (anything with ``to_dict`` or the
    compared fields), and every criterion not re-judged with the reason (e.g. it needs the model)."""

    results: Sequence[Any]
    not_rejudged: Mapping[str, str] = field(default_factory=dict)


Recompute = Callable[[Path, Path], "Recomputation | Sequence[Any]"]


@dataclass(frozen=True)
class VerifyReport:
    """What a successful verification established."""

    bundle_dir: Path
    keyid: str
    standard: str  # "DK-MAMMO-AI 0.1.0"
    verdict: str
    mode: str
    criteria: int
    recomputed: int | None  # None when --cases was not given
    demo_key: bool
    not_rejudged: tuple[tuple[str, str], ...] = ()  # (criterion id, why) under --cases

    def summary(self) -> str:
        """The one line printed on success."""
        extra = ""
        if self.recomputed is not None:
            extra = f"; re-judged {self.recomputed} criteria from the bundle's records"
            if self.not_rejudged:
                extra += "; not re-judged: " + "; ".join(
                    f"{cid} ({why})" for cid, why in self.not_rejudged
                )
        demo = " (DEMO key: integrity only)" if self.demo_key else ""
        return (
            f"verified: {self.bundle_dir} signed by key {self.keyid[:16]}{demo}; {self.standard}; "
            f"{self.criteria} criteria complete; mode {self.mode}; verdict {self.verdict}{extra}"
        )


def _fail(msg: str) -> VerificationError:
    return VerificationError(msg)


def _strict_b64(text: Any, what: str) -> bytes:
    """Decode base64 (standard or URL-safe, as DSSE allows) only in its canonical form.

    Lenient decoders ignore stray characters and unused padding bits, so a changed byte could
    decode to the same payload; requiring the canonical encoding makes every byte count.
    """
    if not isinstance(text, str) or not text:
        raise _fail(f"envelope: {what} is missing or not a string")
    alphabet = "-_" if ("-" in text or "_" in text) else "+/"
    try:
        raw = base64.b64decode(text, altchars=alphabet.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise _fail(f"envelope: {what} is not valid base64") from None
    if base64.b64encode(raw, altchars=alphabet.encode()).decode("ascii") != text:
        raise _fail(f"envelope: {what} is not canonical base64 (the envelope was altered)")
    return raw


def _verified_payload(envelope_path: Path, public_key_path: Path) -> tuple[bytes, str]:
    """Check the envelope and its Ed25519 signature; return the verified payload bytes and keyid."""
    key = load_public_key(public_key_path)
    raw = envelope_path.read_bytes()
    try:
        env = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(
            f"{envelope_path}: not valid JSON ({exc.__class__.__name__} at byte {getattr(exc, 'pos', '?')})"
        ) from None
    if not isinstance(env, dict) or set(env) != {"payload", "payloadType", "signatures"}:
        raise _fail(
            f"{envelope_path}: not a DSSE envelope (want exactly payload, payloadType, signatures)"
        )
    if env["payloadType"] != PAYLOAD_TYPE:
        raise _fail(f"{envelope_path}: payloadType {env['payloadType']!r} is not {PAYLOAD_TYPE!r}")
    sigs = env["signatures"]
    if not isinstance(sigs, list) or not sigs:
        raise _fail(f"{envelope_path}: no signatures; the bundle is not signed")
    if raw != envelope_bytes(env):
        raise _fail(
            f"{envelope_path}: bytes differ from the canonical envelope form (the file was altered)"
        )
    body = _strict_b64(env["payload"], "payload")
    keyid = keyid_of(key)
    # Exactly one signature, by the trusted key. DSSE allows several, but the contract says any
    # changed byte fails: an appended signature is a changed envelope, and a verifier that skips
    # signatures it cannot check would let anything ride along. Another party's endorsement
    # belongs in its own envelope, outside the bundle.
    if len(sigs) != 1:
        raise _fail(
            f"{envelope_path}: {len(sigs)} signatures; a mammocert attestation carries exactly "
            "one, by the signing key (the envelope was altered)"
        )
    s = sigs[0]
    if not isinstance(s, dict) or set(s) != {"keyid", "sig"}:
        raise _fail(f"{envelope_path}: the signature is malformed (want exactly keyid and sig)")
    if s["keyid"] != keyid:
        raise _fail(
            f"{envelope_path}: not signed by the key in {public_key_path} (the signature names "
            f"keyid {str(s['keyid'])[:16]}, the key is {keyid[:16]})"
        )
    try:
        key.verify(_strict_b64(s["sig"], "signature"), pae(env["payloadType"], body))
    except InvalidSignature:
        raise _fail(
            f"{envelope_path}: the signature does not verify with {public_key_path} "
            f"(payload or signature altered)"
        ) from None
    return body, keyid


def _digest_matches(path: Path, expected: Any, what: str) -> None:
    if not path.is_file():
        raise _fail(f"{path}: missing from the bundle; the attestation covers it")
    if not isinstance(expected, str) or sha256_file(path) != expected:
        raise _fail(f"{path}: sha256 differs from the attested {what} (the file was changed)")


def _check_seal(bundle: Path, results: Mapping[str, Any], subjects: Any) -> None:
    """The subjects are the model artifact(s) of results.json plus every file of the bundle, and
    the bundle holds exactly those files, byte for byte (`reports.signing.bundle_files`)."""
    model = results.get("vendor", {}).get("model_digests", {})
    want = (
        Counter((str(n), str(d).removeprefix("sha256:")) for n, d in model.items())
        if isinstance(model, Mapping)
        else Counter()
    )
    if not isinstance(subjects, list) or not all(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) for s in subjects
    ):
        raise _fail("attestation subjects are not a list of {name, digest} objects")
    got = Counter((str(s.get("name")), str(s["digest"].get("sha256"))) for s in subjects)
    if not want or want - got:
        raise _fail("attestation subjects differ from results.vendor.model_digests")
    sealed: dict[str, str] = {}
    for name, digest in sorted((got - want).elements()):
        if not name.startswith(BUNDLE_SUBJECT_PREFIX) or name in sealed:
            raise _fail(
                f"attestation subject {name!r} is neither a model artifact of "
                "results.vendor.model_digests nor a file of the bundle"
            )
        sealed[name.removeprefix(BUNDLE_SUBJECT_PREFIX)] = digest
    if not sealed:
        raise _fail(
            f"{bundle}: the attestation seals no bundle file (written before bundles were sealed "
            "whole); re-run the suite to get a verifiable bundle"
        )
    present = bundle_files(bundle, VerificationError)
    for rel in sealed:
        if rel not in present:
            raise _fail(f"{bundle / rel}: missing from the bundle; the attestation seals it")
    for rel, path in present.items():
        if rel not in sealed:
            raise _fail(
                f"{path}: not sealed by the attestation (a file added to the bundle after signing)"
            )
        if sha256_file(path) != sealed[rel]:
            raise _fail(f"{path}: sha256 differs from the attested subject (the file was changed)")


def _as_date(v: Any, what: str) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v)[:10])
    except ValueError:
        raise _fail(f"{what}: {v!r} is not a date") from None


def _check_standard(bundle: Path, results: Mapping[str, Any], today: dt.date) -> str:
    """The bundled standard is the one pinned, in force when signed, and every criterion is present.

    It reads only the fields it checks (id, version, dates, criterion ids) rather than loading the
    standard through ``harness.standard``: a bundle stays verifiable after the schema moves on,
    and a standard that validated when it was signed is not re-judged by a later schema."""
    std_path = bundle / "standard.yaml"
    if not std_path.is_file():
        raise _fail(
            f"{std_path}: missing; the bundle must carry the standard it was tested against"
        )
    std_meta = results.get("standard", {})
    if "sha256:" + sha256_file(std_path) != std_meta.get("digest"):
        raise _fail(
            f"{std_path}: sha256 differs from results.standard.digest {std_meta.get('digest')!r}"
        )
    std = yamlio.safe_load(std_path.read_bytes(), str(std_path), VerificationError)
    if not isinstance(std, Mapping) or not isinstance(std.get("criteria"), list):
        raise _fail(f"{std_path}: no criteria list")
    for key in ("id", "version"):
        if str(std.get(key)) != str(std_meta.get(key)):
            raise _fail(
                f"{std_path}: {key} {std.get(key)!r} differs from results.standard.{key} {std_meta.get(key)!r}"
            )
    name = f"{std.get('id')} {std.get('version')}"
    effective = _as_date(std.get("effective"), f"{std_path}: effective")
    expires = _as_date(std.get("expires"), f"{std_path}: expires")
    finished = _as_date(results.get("finished"), "results.finished")
    if not effective <= finished < expires:
        raise _fail(
            f"standard {name} was not in force when the run finished ({finished}; "
            f"in force {effective} to {expires})"
        )
    if today >= expires:
        raise _fail(f"standard {name} expired on {expires}; certificates under it expired with it")
    wanted = [c.get("id") if isinstance(c, Mapping) else None for c in std["criteria"]]
    got = [c.get("id") for c in results.get("criteria", [])]
    for cid in wanted:
        if got.count(cid) != 1:
            how = "is missing" if cid not in got else f"appears {got.count(cid)} times"
            raise _fail(f"incomplete: criterion {cid} of standard {name} {how} in the results")
    extra = sorted(set(map(str, got)) - set(map(str, wanted)))
    if extra:
        raise _fail(f"results carry criteria not in standard {name}: {', '.join(extra)}")
    return name


def _check_consistency(results: Mapping[str, Any], predicate: Mapping[str, Any]) -> None:
    """The signed verdict, test-result fields and mode notice agree with the criteria."""
    from harness.results import results_from_dict

    try:
        typed = results_from_dict(results)
    except (UsageError, TypeError, KeyError) as exc:
        raise _fail(f"attested results do not match the results model ({exc})") from None
    if typed.mode not in MODES:
        raise _fail(f"results.mode {typed.mode!r} is not one of {', '.join(MODES)}")
    if typed.verdict != verdict_of(typed.criteria):
        raise _fail(f"results.verdict {typed.verdict!r} contradicts the criteria outcomes")
    want_result = "PASSED" if typed.verdict == CONFORMANT else "FAILED"
    passed = [c.id for c in typed.criteria if c.outcome == "passed"]
    failed = [c.id for c in typed.criteria if c.outcome in NOT_PASSED]
    if (
        predicate.get("result") != want_result
        or predicate.get("passedTests") != passed
        or predicate.get("failedTests") != failed
    ):
        raise _fail("attestation: result/passedTests/failedTests contradict the criteria outcomes")
    if typed.mode == "self-test" and typed.notice != SELF_TEST_BANNER:
        raise _fail(f"self-test results must carry the notice {SELF_TEST_BANNER!r}")


def _json_round_trip(v: Any) -> Any:
    return json.loads(json.dumps(v, allow_nan=True))


def _same(a: Any, b: Any) -> bool:
    # NaN never equals itself; treat two NaNs as the same recomputed value.
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_recomputed(
    results: Mapping[str, Any], bundle: Path, cases: Path, recompute: Recompute | None
) -> Recomputation:
    """Every attested criterion is re-judged with the same outcome, value, CI and n, or named as
    not re-judged with the reason; anything else fails."""
    if recompute is None:
        raise HarnessFault(
            "--cases needs the conformance engine's recompute_criteria; "
            "use `mammocert verify`, which passes it"
        )
    by_id = {c.get("id"): c for c in results.get("criteria", [])}
    got = recompute(bundle, cases)
    rec = got if isinstance(got, Recomputation) else Recomputation(tuple(got))
    accounted = set()
    for rc in rec.results:
        d = rc.to_dict() if hasattr(rc, "to_dict") else dict(rc)
        d = _json_round_trip({k: d.get(k) for k in COMPARED_FIELDS})
        accounted.add(d["id"])
        mine = by_id.get(d["id"])
        if mine is None:
            raise _fail(f"recomputed criterion {d['id']} is not in the attested results")
        for key in COMPARED_FIELDS[1:]:
            if not _same(d[key], _json_round_trip(mine.get(key))):
                raise _fail(
                    f"recomputation differs for {d['id']}: {key} attested {mine.get(key)!r}, "
                    f"recomputed {d[key]!r}"
                )
    missing = [cid for cid in by_id if cid not in accounted and cid not in rec.not_rejudged]
    if missing:
        raise _fail(
            f"--cases: criteria {', '.join(map(str, missing))} were neither re-judged nor "
            "named as needing the model"
        )
    return rec


def verify_bundle(
    path: Path,
    public_key_path: Path,
    cases_dir: Path | None = None,
    recompute: Recompute | None = None,
    today: dt.date | None = None,
) -> VerifyReport:
    """Verify the one signature, the seal over every file of the bundle, completeness and (with
    ``cases_dir``) every criterion re-judged from the bundle's records.

    ``path`` is the bundle directory or its ``attestation.intoto.json``. ``recompute`` (needed with
    ``cases_dir``) is ``conformance.engine.recompute_criteria``, passed in by ``mammocert verify``
    so that this library never imports the engine; ``today`` (for tests) defaults to the UTC date.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such bundle directory or attestation file")
    bundle = path if path.is_dir() else path.parent
    envelope_path = path / ATTESTATION_FILE if path.is_dir() else path
    if not envelope_path.is_file():
        if (bundle / UNSIGNED_FILE).is_file():
            raise _fail(
                f"{bundle}: unsigned bundle ({UNSIGNED_FILE}); there is no signature to verify"
            )
        raise _fail(f"{envelope_path}: no attestation found")
    body, keyid = _verified_payload(envelope_path, Path(public_key_path))
    try:
        statement = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(f"{envelope_path}: signed payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _fail(
            f"statement _type {statement.get('_type') if isinstance(statement, dict) else None!r} "
            f"is not {STATEMENT_TYPE!r}"
        )
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise _fail(f"predicateType {statement.get('predicateType')!r} is not {PREDICATE_TYPE!r}")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise _fail("statement has no predicate object")
    results = {k: v for k, v in predicate.items() if k not in PREDICATE_EXTRA_KEYS}

    _digest_matches(bundle / "report.html", predicate.get("report_sha256"), "report_sha256")
    _digest_matches(
        bundle / "predictions.jsonl", predicate.get("predictions_sha256"), "predictions_sha256"
    )
    results_path = bundle / "results.json"
    if "results_sha256" in predicate:
        _digest_matches(results_path, predicate["results_sha256"], "results_sha256")
    try:
        on_disk = json.loads(results_path.read_bytes())
    except FileNotFoundError:
        raise _fail(f"{results_path}: missing from the bundle") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _fail(f"{results_path}: not valid JSON (the file was changed)") from None
    if canonical_json(on_disk) != canonical_json(results):
        raise _fail(f"{results_path}: content differs from the attested results")

    _check_seal(bundle, results, statement.get("subject"))

    standard = _check_standard(bundle, results, today or dt.datetime.now(dt.UTC).date())
    _check_consistency(results, predicate)
    rec = (
        _check_recomputed(results, bundle, Path(cases_dir), recompute)
        if cases_dir is not None
        else None
    )
    return VerifyReport(
        bundle_dir=bundle,
        keyid=keyid,
        standard=standard,
        verdict=str(results.get("verdict")),
        mode=str(results.get("mode")),
        criteria=len(results.get("criteria", [])),
        recomputed=None if rec is None else len(rec.results),
        demo_key=results.get("signing") == "demo-key",
        not_rejudged=() if rec is None else tuple(sorted(rec.not_rejudged.items())),
    )
