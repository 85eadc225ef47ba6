"""Ed25519 keys, the in-toto Statement v1 of a run, and its DSSE envelope (`docs/contracts.md` §3.7).

The envelope is built with ``cryptography`` directly over the exact DSSE pre-authentication
encoding (PAE), so there is one small, auditable code path; the signature's ``keyid`` is the
securesystemslib default keyid of the public key, so securesystemslib's ``Envelope.verify``
accepts our envelopes too (a test checks this).

Without a key a run is not signed: we write ``statement.unsigned.json`` (never an envelope with
an empty signature list, which a careless consumer might take for a signed one).

The statement seals the whole bundle: besides the model artifact(s), its ``subject`` lists every
file of the bundle directory (``bundle/<path>``, subdirectories included) with its sha256, the
envelope or unsigned statement itself excepted (it cannot contain its own digest), so ``verify``
fails on a file added, removed or changed anywhere in the bundle.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import SSlibKey

from harness.errors import UsageError
from harness.fsio import make_dir, write_atomic
from harness.jsonutil import canonical_json, sha256_file
from harness.results import CONFORMANT, NOT_PASSED, read_results

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://mammocert.dk/conformance-report/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ATTESTATION_FILE = "attestation.intoto.json"
UNSIGNED_FILE = "statement.unsigned.json"
DEMO_PUBLIC_KEY = "demo-key.pub.pem"
# The one file of a bundle its attestation cannot list (whichever of the two the run wrote).
OUTSIDE_SEAL = (ATTESTATION_FILE, UNSIGNED_FILE)
BUNDLE_SUBJECT_PREFIX = "bundle/"
PRIVATE_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub.pem"
# Keys the predicate adds next to the results.json content (everything else *is* results.json).
PREDICATE_EXTRA_KEYS = (
    "report_sha256",
    "predictions_sha256",
    "results_sha256",
    "result",
    "passedTests",
    "failedTests",
    "configuration",
)


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def keyid_of(public_key: Ed25519PublicKey) -> str:
    """securesystemslib's default keyid (sha256 of the canonical key dict): a hint, never trust."""
    return SSlibKey.from_crypto(public_key).keyid


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` as a new file and write ``data``: never through a symlink (a planted,
    even dangling, ``signing-key.pem`` link would otherwise receive the private key) and never
    over an existing file (``O_CREAT | O_EXCL | O_NOFOLLOW``). The mode is set from the start:
    a chmod after writing leaves a window where the key is readable."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise UsageError(
            f"{path}: already exists (a file or a link); choose another --out or remove it deliberately"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the key file ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)  # O_CREAT's mode is masked by the umask
        fh.write(data)


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: PKCS#8 PEM private key (mode 0600) and SPKI PEM public key."""
    out_dir = make_dir(Path(out_dir), "--out")
    priv_path, pub_path = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    for path in (priv_path, pub_path):
        if os.path.lexists(path):
            raise UsageError(
                f"{path}: already exists (a file or a link); choose another --out or remove it deliberately"
            )
    key = Ed25519PrivateKey.generate()
    _write_new(
        priv_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write_new(
        pub_path,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        0o644,
    )
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 private key, with one-line errors."""
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no such key file; create one with `mammocert keys generate --out DIR`"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(
            f"{path}: not an Ed25519 key; create one with `mammocert keys generate --out DIR`"
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load a PEM Ed25519 public key, with one-line errors."""
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such public key file") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path}: not an Ed25519 public key")
    return key


def bundle_files(bundle_dir: Path, error: type[Exception]) -> dict[str, Path]:
    """Every file the attestation seals: POSIX path relative to the bundle -> path, sorted.

    Everything under ``bundle_dir`` but the envelope (or unsigned statement) at its top: hidden
    files and subdirectories too (``dicom-evidence/``, a Hypothesis database), since a file left
    out is a file that can be planted or edited unnoticed. A link or any other non-regular entry,
    and a name that is not UTF-8, cannot be sealed and raise ``error`` (``UsageError`` when
    signing, ``VerificationError`` when verifying)."""
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(bundle_dir, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(root) / name
            rel = path.relative_to(bundle_dir).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise error(
                    f"{bundle_dir}: file name {rel!r} is not UTF-8; it cannot be sealed"
                ) from None
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise error(
                    f"{path}: not a regular file (a link, FIFO or device); an evidence bundle "
                    "holds only files and directories"
                )
            if rel not in OUTSIDE_SEAL:
                found[rel] = path
    return dict(sorted(found.items()))


def bundle_subjects(bundle_dir: Path) -> list[dict[str, Any]]:
    """in-toto subjects for every sealed file of the bundle (``bundle/<path>``)."""
    return [
        {"name": BUNDLE_SUBJECT_PREFIX + rel, "digest": {"sha256": sha256_file(path)}}
        for rel, path in bundle_files(bundle_dir, UsageError).items()
    ]


def subjects_of(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """in-toto subjects from ``vendor.model_digests`` ({name: sha256 hex, optionally 'sha256:'-prefixed})."""
    digests = results.get("vendor", {}).get("model_digests")
    if not isinstance(digests, Mapping) or not digests:
        raise UsageError(
            "results.json: vendor.model_digests is empty; the attestation needs the model digest(s)"
        )
    out = []
    for name, digest in sorted(digests.items()):
        hexd = str(digest).removeprefix("sha256:")
        if len(hexd) != 64 or any(ch not in "0123456789abcdef" for ch in hexd):
            raise UsageError(
                f"results.json: vendor.model_digests[{name!r}] = {digest!r} is not a sha256 hex digest"
            )
        out.append({"name": str(name), "digest": {"sha256": hexd}})
    return out


def _configuration(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """test-result ``configuration``: the standard and reference set as ResourceDescriptors."""
    conf = []
    for key in ("standard", "reference_set"):
        d = results.get(key, {})
        digest = str(d.get("digest", ""))
        rd: dict[str, Any] = {"name": f"{key}:{d.get('id', '')}@{d.get('version', '')}"}
        if digest.startswith("sha256:"):
            rd["digest"] = {"sha256": digest.removeprefix("sha256:")}
        conf.append(rd)
    return conf


def build_statement(
    results: Mapping[str, Any],
    subjects: Sequence[Mapping[str, Any]],
    report_sha256: str,
    predictions_sha256: str,
    results_sha256: str | None = None,
) -> dict[str, Any]:
    """The in-toto Statement v1 of a run: results.json plus the digests and test-result fields."""
    if not subjects or any(
        not isinstance(s.get("digest", {}).get("sha256"), str) for s in subjects
    ):
        raise UsageError("attestation: every subject needs a sha256 digest")
    names = [s.get("name") for s in subjects]
    twice = sorted({str(n) for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"attestation: subject name(s) {twice} appear twice; names must be unique")
    clash = [k for k in PREDICATE_EXTRA_KEYS if k in results]
    if clash:
        raise UsageError(
            f"results.json: top-level key(s) {clash} clash with the attestation's own fields"
        )
    criteria = results.get("criteria", [])
    predicate = dict(results)
    predicate.update(
        {
            "report_sha256": report_sha256,
            "predictions_sha256": predictions_sha256,
            "result": "PASSED" if results.get("verdict") == CONFORMANT else "FAILED",
            "passedTests": [c["id"] for c in criteria if c.get("outcome") == "passed"],
            "failedTests": [c["id"] for c in criteria if c.get("outcome") in NOT_PASSED],
            "configuration": _configuration(results),
        }
    )
    if results_sha256 is not None:
        # The exact file bytes too: canonical equality alone would let whitespace edits pass.
        predicate["results_sha256"] = results_sha256
    return {
        "_type": STATEMENT_TYPE,
        "subject": [dict(s) for s in subjects],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def sign_statement(statement: Mapping[str, Any], private_key_path: Path) -> dict[str, Any]:
    """A DSSE envelope (Ed25519) around the statement's canonical JSON bytes."""
    key = load_private_key(private_key_path)
    body = canonical_json(statement)
    sig = key.sign(pae(PAYLOAD_TYPE, body))
    return {
        "payload": base64.b64encode(body).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {"keyid": keyid_of(key.public_key()), "sig": base64.b64encode(sig).decode("ascii")}
        ],
    }


def envelope_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The one byte form of an envelope file; verify insists on it so no byte can change unnoticed."""
    return (json.dumps(envelope, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode(
        "ascii"
    )


@dataclass(frozen=True)
class Attestation:
    """What write_attestation produced."""

    path: Path  # attestation.intoto.json, or statement.unsigned.json when unsigned
    signed: bool
    demo_key: bool
    public_key: Path | None

    def describe(self) -> str:
        """One line for stdout."""
        if not self.signed:
            return f"attestation: UNSIGNED (no --key); statement written to {self.path}"
        if self.demo_key:
            return (
                f"attestation: {self.path} signed with a DEMO key generated for this run "
                f"(public key {self.public_key}); it proves integrity, not origin"
            )
        return f"attestation: {self.path} signed"


def write_attestation(
    bundle_dir: Path, key_path: Path | None = None, demo_key: bool = False
) -> Attestation:
    """Sign the bundle: ``attestation.intoto.json`` with a key or a demo key, else an unsigned statement."""
    bundle_dir = Path(bundle_dir)
    if key_path is not None and demo_key:
        raise UsageError("attestation: give either a key or demo_key, not both")
    results_path = bundle_dir / "results.json"
    read_results(results_path)  # validates the schema and gives a one-line error if absent
    results = json.loads(results_path.read_text(encoding="utf-8"))
    expected = "demo-key" if demo_key else "key" if key_path is not None else "unsigned"
    if results.get("signing") not in ("", None, expected):
        raise UsageError(
            f"{results_path}: says signing={results['signing']!r} but the attestation "
            f"is being written as {expected!r}; the report would misstate it"
        )
    for name in ("report.html", "predictions.jsonl"):
        if not (bundle_dir / name).is_file():
            raise UsageError(f"{bundle_dir / name}: missing; the attestation must cover it")
    # Every file present is sealed: an earlier run's envelope, statement or (unless this is a
    # demo) demo public key in this directory would be listed and mislead.
    for stale in OUTSIDE_SEAL + (() if demo_key else (DEMO_PUBLIC_KEY,)):
        (bundle_dir / stale).unlink(missing_ok=True)
    if expected == "unsigned":
        out = bundle_dir / UNSIGNED_FILE
        statement = _bundle_statement(bundle_dir, results)
        text = json.dumps(statement, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        write_atomic(out, text.encode("utf-8"), UNSIGNED_FILE)
        return Attestation(out, signed=False, demo_key=False, public_key=None)
    out = bundle_dir / ATTESTATION_FILE
    if not demo_key:
        assert key_path is not None
        statement = _bundle_statement(bundle_dir, results)
        write_atomic(out, envelope_bytes(sign_statement(statement, key_path)), ATTESTATION_FILE)
        return Attestation(out, signed=True, demo_key=False, public_key=None)
    # A demo key signs this one bundle and is then discarded: its private half never enters the
    # bundle (nobody can re-sign an edited demo bundle with it), its public half is sealed in it.
    public = bundle_dir / DEMO_PUBLIC_KEY
    with tempfile.TemporaryDirectory(prefix="mammocert-demo-key-") as tmp:
        demo_private, demo_public = generate_keypair(Path(tmp))
        write_atomic(public, demo_public.read_bytes(), DEMO_PUBLIC_KEY)
        statement = _bundle_statement(bundle_dir, results)
        write_atomic(out, envelope_bytes(sign_statement(statement, demo_private)), ATTESTATION_FILE)
    return Attestation(out, signed=True, demo_key=True, public_key=public)


def _bundle_statement(bundle_dir: Path, results: Mapping[str, Any]) -> dict[str, Any]:
    """The statement over the bundle as it is now: call it after the last file is written."""
    return build_statement(
        results,
        subjects_of(results) + bundle_subjects(bundle_dir),
        sha256_file(bundle_dir / "report.html"),
        sha256_file(bundle_dir / "predictions.jsonl"),
        sha256_file(bundle_dir / "results.json"),
    )


def keys_cli(args: argparse.Namespace) -> int:
    """``mammocert keys generate --out DIR``."""
    priv, pub = generate_keypair(Path(args.out))
    print(f"private key: {priv} (mode 0600; keep it secret)")
    print(f"public key:  {pub} (give this to verifiers: mammocert verify BUNDLE --key {pub})")
    return 0
