"""Site acceptance against a certificate: ``mammocert accept --certificate BUNDLE --local BUNDLE
--key PUB [--local-key PUB] --out DIR [--sign KEY] [--site NAME]``.

A vendor certified nationally is installed in a region behind its PACS (DICOM), DICOMweb or REST
endpoint. The region runs the same reference set through its installation, and this command
says whether the installation reproduces the certificate:

1. the certificate's attestation is verified (``--key``), and so is the local bundle's
   (``--local-key``, default ``--key``); both must be runs on the same reference set (digest);
2. the local run is compared with the certified predictions exam by exam (the original
   condition): exams missing or not scored locally, recall decisions that flip at the
   certificate's operating point, score differences, and the local latency;
3. the limits come from the certificate's own standard (its ``site_acceptance`` block, §3.5):
   ACCEPTED when every limit holds, else REJECTED with the flipped and failed exams listed.

The result is ``acceptance.json`` and a short ``acceptance.html`` in ``--out``; with ``--sign
KEY`` an in-toto statement over both (and naming the certificate's and the local bundle's
attestations by digest) is signed as ``acceptance.intoto.json``: "installation at SITE
reproduces certificate C". :func:`verify_acceptance` checks such a directory (``mammocert
verify DIR`` does it when it finds one). The certificate's own verdict is shown, not re-judged:
an installation can faithfully reproduce a NOT CONFORMANT certificate.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError, VerificationError
from harness.fsio import make_dir, write_atomic
from harness.jsonutil import sha256_file
from harness.predictions import ORIGINAL, Prediction, read_predictions
from harness.results import read_results
from harness.yamlio import safe_load
from reports.render import _environment, fmt_number
from reports.signing import (
    ATTESTATION_FILE,
    STATEMENT_TYPE,
    envelope_bytes,
    sign_statement,
)
from reports.verify import _verified_payload, verify_bundle

ACCEPTANCE_PREDICATE = "https://mammocert.dk/site-acceptance/v1"
ACCEPTANCE_FILE = "acceptance.intoto.json"
ACCEPTED, REJECTED = "ACCEPTED", "REJECTED"


@dataclass(frozen=True)
class ExamDelta:
    """One exam of the certificate against the installation."""

    exam_id: str
    certified: float | None
    local: float | None
    local_status: str  # ok | rejected | error | missing
    flipped: bool


@dataclass(frozen=True)
class Check:
    """One limit of the standard's ``site_acceptance`` block and what was measured."""

    name: str
    measured: float
    limit: float
    passed: bool
    source: str


def _limits(bundle: Path) -> Mapping[str, Any]:
    std = safe_load(
        (bundle / "standard.yaml").read_bytes(), str(bundle / "standard.yaml"), UsageError
    )
    block = std.get("site_acceptance") if isinstance(std, Mapping) else None
    if not isinstance(block, Mapping):
        raise UsageError(
            f"{bundle / 'standard.yaml'}: the certificate's standard {std.get('id')} "
            f"{std.get('version')} has no site_acceptance block; the limits of an acceptance "
            "come from the standard (docs/contracts.md §3.5)"
        )
    return block


def threshold(vendor: Mapping[str, Any]) -> float:
    """The recall threshold a run applied to its recorded [0, 1] scores: ``vendor.operating_point``
    in ``results.json`` (the native value, when there is one, is ``operating_point_native``)."""
    op = vendor.get("operating_point")
    if not isinstance(op, int | float):
        raise UsageError("the bundle's results.json records no operating point")
    return float(op)


def deltas(
    certified: Sequence[Prediction], local: Sequence[Prediction], op: float, local_op: float
) -> list[ExamDelta]:
    """Every exam the certificate scored (original condition), against the local record; each
    decision at its own run's threshold (an installation configured with another operating
    point decides differently, and that is what a region must see)."""
    here = {p.exam_id: p for p in local if p.condition == ORIGINAL}
    out = []
    for c in sorted((p for p in certified if p.condition == ORIGINAL), key=lambda p: p.exam_id):
        if c.status != "ok" or c.score is None:
            continue  # the certificate did not score it: nothing to reproduce
        mine = here.get(c.exam_id)
        if mine is None or mine.status != "ok" or mine.score is None:
            status = "missing" if mine is None else mine.status
            out.append(ExamDelta(c.exam_id, c.score, None, status, False))
            continue
        out.append(
            ExamDelta(
                c.exam_id, c.score, mine.score, "ok", (c.score >= op) != (mine.score >= local_op)
            )
        )
    return out


def _p95(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def checks(
    limits: Mapping[str, Any], rows: Sequence[ExamDelta], local: Sequence[Prediction]
) -> list[Check]:
    diffs = [
        abs(r.local - r.certified) for r in rows if r.local is not None and r.certified is not None
    ]
    measured = {
        "decision_flips": float(sum(r.flipped for r in rows)),
        "failed_exams": float(sum(r.local_status != "ok" for r in rows)),
        "score_difference": max(diffs) if diffs else 0.0,
    }
    key = {"decision_flips": "max", "failed_exams": "max", "score_difference": "max_abs"}
    out = []
    for name in ("decision_flips", "failed_exams", "score_difference"):
        spec = limits[name]
        out.append(
            Check(
                name,
                measured[name],
                float(spec[key[name]]),
                measured[name] <= spec[key[name]],
                str(spec.get("source", "")),
            )  # fmt: skip
        )
    if "latency_p95_s" in limits:
        lat = [p.latency_s for p in local if p.condition == ORIGINAL and p.latency_s is not None]
        p95 = _p95(lat)
        spec = limits["latency_p95_s"]
        out.append(
            Check(
                "latency_p95_s",
                p95,
                float(spec["max"]),
                p95 <= spec["max"],
                str(spec.get("source", "")),
            )
        )
    return out


def _verified(bundle: Path, key: Path, what: str) -> None:
    try:
        verify_bundle(bundle, key)
    except VerificationError as exc:
        raise VerificationError(f"{what} {bundle} does not verify: {exc}") from None


def accept(
    certificate: Path, local: Path, key: Path, local_key: Path | None = None, site: str = ""
) -> dict[str, Any]:
    """The acceptance document (see the module docstring)."""
    _verified(certificate, key, "--certificate")
    _verified(local, local_key or key, "--local")
    cert = read_results(certificate / "results.json")
    here = read_results(local / "results.json")
    if cert.reference_set.get("digest") != here.reference_set.get("digest"):
        raise UsageError(
            f"--local {local}: ran on set {here.reference_set.get('id')} "
            f"({str(here.reference_set.get('digest'))[:19]}), the certificate on "
            f"{cert.reference_set.get('id')} ({str(cert.reference_set.get('digest'))[:19]}); "
            "run the installation on the certificate's reference set"
        )
    limits = _limits(certificate)
    op = threshold(cert.vendor)
    local_preds = read_predictions(local / "predictions.jsonl")
    local_op = threshold(here.vendor)
    rows = deltas(read_predictions(certificate / "predictions.jsonl"), local_preds, op, local_op)
    results = checks(limits, rows, local_preds)
    return {
        "schema": "mammocert/site-acceptance/v1",
        "verdict": ACCEPTED if all(c.passed for c in results) else REJECTED,
        "site": site,
        "certificate": {
            "bundle": str(certificate),
            "attestation_sha256": sha256_file(certificate / ATTESTATION_FILE),
            "verdict": cert.verdict,
            "mode": cert.mode,
            "vendor": dict(cert.vendor),
            "standard": dict(cert.standard),
            "reference_set": dict(cert.reference_set),
            "threshold": op,
        },
        "local": {
            "bundle": str(local),
            "attestation_sha256": sha256_file(local / ATTESTATION_FILE),
            "vendor": dict(here.vendor),
            "finished": here.finished,
            "threshold": local_op,
        },
        "checks": [asdict(c) for c in results],
        "exams": len(rows),
        "flipped": [asdict(r) for r in rows if r.flipped],
        "failed": [asdict(r) for r in rows if r.local_status != "ok"],
        "largest_differences": [
            asdict(r)
            for r in sorted(
                (r for r in rows if r.local is not None),
                key=lambda r: (-abs(r.local - r.certified), r.exam_id),  # type: ignore[operator]
            )[:10]
        ],
    }


def render_acceptance_html(doc: Mapping[str, Any]) -> str:
    return _environment().get_template("acceptance.html.j2").render(d=doc, num=fmt_number)


def _statement(out: Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": sha256_file(out / name)}}
            for name in ("acceptance.json", "acceptance.html")
        ],
        "predicateType": ACCEPTANCE_PREDICATE,
        "predicate": {
            "verdict": doc["verdict"],
            "site": doc["site"],
            "certificate_attestation_sha256": doc["certificate"]["attestation_sha256"],
            "local_attestation_sha256": doc["local"]["attestation_sha256"],
            "standard": doc["certificate"]["standard"],
            "signed": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def verify_acceptance(directory: Path, public_key: Path) -> dict[str, Any]:
    """Check an acceptance directory's signature and that both files are the signed ones."""
    body, _ = _verified_payload(directory / ACCEPTANCE_FILE, public_key)
    statement = json.loads(body)
    if statement.get("predicateType") != ACCEPTANCE_PREDICATE:
        raise VerificationError(f"{directory / ACCEPTANCE_FILE}: not a site-acceptance statement")
    for s in statement.get("subject", []):
        path = directory / s["name"]
        if not path.is_file() or sha256_file(path) != s["digest"]["sha256"]:
            raise VerificationError(f"{path}: missing or changed after signing")
    doc = json.loads((directory / "acceptance.json").read_text(encoding="utf-8"))
    if doc.get("verdict") != statement["predicate"]["verdict"]:
        raise VerificationError(
            f"{directory}: acceptance.json's verdict differs from the signed one"
        )
    return statement


def _decision(score: float, threshold: float) -> str:
    return f"{score:.4f} {'>=' if score >= threshold else '<'} {threshold:.4f}"


def accept_cli(args: Any) -> int:
    """Exit 0 ACCEPTED, 1 REJECTED (or a bundle that does not verify), 2 unusable input."""
    doc = accept(
        Path(args.certificate),
        Path(args.local),
        Path(args.key),
        Path(args.local_key) if args.local_key else None,
        args.site or "",
    )
    out = make_dir(Path(args.out), "--out")
    write_atomic(
        out / "acceptance.json", (json.dumps(doc, indent=1) + "\n").encode(), "acceptance.json"
    )
    write_atomic(
        out / "acceptance.html", render_acceptance_html(doc).encode("utf-8"), "acceptance.html"
    )
    if args.sign:
        envelope = sign_statement(_statement(out, doc), Path(args.sign))
        write_atomic(out / ACCEPTANCE_FILE, envelope_bytes(envelope), ACCEPTANCE_FILE)
    cert = doc["certificate"]
    print(
        f"{doc['verdict']}: installation{' at ' + doc['site'] if doc['site'] else ''} against "
        f"certificate {cert['vendor'].get('product')} {cert['vendor'].get('version')} "
        f"({cert['verdict']}, {cert['mode']}) on {doc['exams']} exams"
    )
    for c in doc["checks"]:
        mark = "ok  " if c["passed"] else "FAIL"
        print(f"  {mark} {c['name']}: {fmt_number(c['measured'])} (limit {fmt_number(c['limit'])})")
    op, local_op = cert["threshold"], doc["local"]["threshold"]
    for r in doc["flipped"]:
        # each side at its own run's threshold: a flip with equal scores is a moved threshold
        print(
            f"  flipped {r['exam_id']}: certified {_decision(r['certified'], op)}, "
            f"local {_decision(r['local'], local_op)}"
        )
    for r in doc["failed"]:
        print(f"  failed {r['exam_id']}: {r['local_status']}")
    print(f"wrote {out / 'acceptance.html'}" + (f" and {ACCEPTANCE_FILE}" if args.sign else ""))
    return 0 if doc["verdict"] == ACCEPTED else 1
