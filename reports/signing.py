"""Ed25519 keys, the in-toto Statement v1 of a run, and its DSSE envelope (`docs/contracts.md` §3.7).

The envelope is built with ``cryptography`` directly over the exact DSSE pre-authentication
encoding (PAE), so there is one small, auditable code path; the signature's ``keyid`` is the
securesystemslib default keyid of the public key, so securesystemslib's ``Envelope.verify``
accepts our envelopes too (a test checks this).

Without a key a run is not signed: we write ``statement.unsigned.json`` (never an envelope with
an empty signature list, which a careless consumer might take for a signed one).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
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
from harness.results import CONFORMANT, read_results

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://mammocert.dk/conformance-report/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
ATTESTATION_FILE = "attestation.intoto.json"
UNSIGNED_FILE = "statement.unsigned.json"
DEMO_PUBLIC_KEY = "demo-key.pub.pem"
DEMO_KEY_DIR = ".demo-key"
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
            "failedTests": [c["id"] for c in criteria if c.get("outcome") != "passed"],
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
    digests = {}
    for name in ("report.html", "predictions.jsonl"):
        if not (bundle_dir / name).is_file():
            raise UsageError(f"{bundle_dir / name}: missing; the attestation must cover it")
        digests[name] = sha256_file(bundle_dir / name)
    statement = build_statement(
        results,
        subjects_of(results),
        digests["report.html"],
        digests["predictions.jsonl"],
        sha256_file(results_path),
    )
    for stale in (ATTESTATION_FILE, UNSIGNED_FILE):
        (bundle_dir / stale).unlink(missing_ok=True)
    if expected == "unsigned":
        out = bundle_dir / UNSIGNED_FILE
        text = json.dumps(statement, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        write_atomic(out, text.encode("utf-8"), UNSIGNED_FILE)
        return Attestation(out, signed=False, demo_key=False, public_key=None)
    public: Path | None = None
    if demo_key:
        key_dir = bundle_dir / DEMO_KEY_DIR
        key_dir.mkdir(mode=0o700, exist_ok=True)
        for old in (key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE):
            old.unlink(missing_ok=True)
        key_path, generated_pub = generate_keypair(key_dir)
        public = bundle_dir / DEMO_PUBLIC_KEY
        public.write_bytes(generated_pub.read_bytes())
        generated_pub.unlink()
    assert key_path is not None
    out = bundle_dir / ATTESTATION_FILE
    write_atomic(out, envelope_bytes(sign_statement(statement, key_path)), ATTESTATION_FILE)
    return Attestation(out, signed=True, demo_key=demo_key, public_key=public)


def keys_cli(args: argparse.Namespace) -> int:
    """``mammocert keys generate --out DIR``."""
    priv, pub = generate_keypair(Path(args.out))
    print(f"private key: {priv} (mode 0600; keep it secret)")
    print(f"public key:  {pub} (give this to verifiers: mammocert verify BUNDLE --key {pub})")
    return 0
