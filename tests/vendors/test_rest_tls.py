"""The shared REST transport against a real uvicorn server (the reference REST node): TLS with
certificates made by trustme (verified, unknown CA, hostname mismatch), mutual TLS, bearer and
basic credentials from the environment, and a body trickled past the deadline."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import pytest
from dicom_testkit import deidentified_set
from vendors.jsonjob_kit import write_jsonjob_package

from harness.cases.manifest import load_manifest
from harness.errors import VendorFault
from harness.exam_input import load_exam
from harness.reference.rest_node import ReferenceRestNode
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")

TOKEN = "tok-3f9a1c0de2b7"


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("set") / "set", n=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, one for another name, a client certificate,
    and a second CA nobody trusts; all as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    files = {}

    def write(name: str, blob) -> Path:
        files[name] = d / f"{name}.pem"
        blob.write_to_path(str(files[name]))
        return files[name]

    write("ca", ca.cert_pem)
    write("stranger-ca", stranger.cert_pem)
    for name, cert in (
        ("server", ca.issue_cert("127.0.0.1")),
        ("other-name", ca.issue_cert("mammo.example.org")),
        ("client", ca.issue_cert("mammocert-client")),
    ):
        write(f"{name}-cert", cert.cert_chain_pems[0])
        write(f"{name}-key", cert.private_key_pem)
    return files


def _ssl(pki, server: str = "server", *, mutual: bool = False) -> dict:
    cfg = {"ssl_certfile": str(pki[f"{server}-cert"]), "ssl_keyfile": str(pki[f"{server}-key"])}
    if mutual:
        cfg |= {"ssl_ca_certs": str(pki["ca"]), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return cfg


def _run(tmp_path: Path, url: str, cases: Path, **rest):
    pkg = load_vendor_package(write_jsonjob_package(tmp_path / "pkg", url, timeout_s=10, **rest))
    evidence = tmp_path / "rest-evidence"
    adapter = open_adapter(pkg, evidence_dir=evidence, manifest=load_manifest(cases))
    try:
        (pred,) = run_predictions(adapter, load_manifest(cases), progress=False)
    finally:
        adapter.close()
    log = (evidence / "attempts.jsonl").read_text()
    return pred, [json.loads(line) for line in log.splitlines()], log


def test_tls_verified_against_the_package_ca_bundle(tmp_path, cases, scorer, pki):
    with ReferenceRestNode(scorer, ssl=_ssl(pki)) as node:
        assert node.url.startswith("https://127.0.0.1:")
        pred, attempts, _ = _run(tmp_path, node.url, cases, tls={"ca_bundle": str(pki["ca"])})
    assert pred.status == "ok", pred.error
    assert [a["outcome"] for a in attempts] == ["ok"]


@pytest.mark.parametrize(
    "server, bundle, words",
    [
        ("server", "stranger-ca", "certificate verify failed"),  # a CA the package does not trust
        ("other-name", "ca", "certificate verify failed"),  # the right CA, another host's name
        ("server", None, "certificate verify failed"),  # the system store knows no test CA
    ],
)
def test_a_certificate_the_package_does_not_trust_is_a_tls_fault(
    tmp_path, cases, scorer, pki, server, bundle, words
):
    tls = {"ca_bundle": str(pki[bundle])} if bundle else {}
    with ReferenceRestNode(scorer, ssl=_ssl(pki, server)) as node:
        pred, attempts, _ = _run(tmp_path, node.url, cases, tls=tls)
        assert node.seen == []  # no request reached the application
    assert pred.status == "error" and "TLS failure" in pred.error and words in pred.error
    assert [a["outcome"] for a in attempts] == ["tls-error"]  # a bad certificate is not retried
    if server == "other-name":
        assert "127.0.0.1" in pred.error or "mismatch" in pred.error, pred.error


def test_mutual_tls_needs_the_client_certificate(tmp_path, cases, scorer, pki):
    with ReferenceRestNode(scorer, ssl=_ssl(pki, mutual=True)) as node:
        without, attempts, _ = _run(
            tmp_path / "a", node.url, cases, tls={"ca_bundle": str(pki["ca"])}
        )
        tls = {
            "ca_bundle": str(pki["ca"]),
            "client_cert": str(pki["client-cert"]),
            "client_key": str(pki["client-key"]),
        }
        with_cert, _, _ = _run(tmp_path / "b", node.url, cases, tls=tls)
        assert all(s.path == "/exams" for s in node.seen) and len(node.seen) == 1
    # TLS 1.3 checks the client certificate after the handshake and the server just closes:
    # no TLS error reaches the client, so the reason says what such a silence can mean.
    assert without.status == "error", without.error
    assert "Server disconnected without sending a response" in without.error
    assert "client certificate (rest.tls.client_cert)" in without.error
    assert [a["outcome"] for a in attempts] == ["protocol-error"]
    assert with_cert.status == "ok", with_cert.error


def test_a_bearer_token_from_the_environment_reaches_the_server(
    tmp_path, cases, scorer, monkeypatch
):
    auth = {"scheme": "bearer", "token_env": "MAMMOCERT_TEST_TOKEN"}
    with ReferenceRestNode(scorer, token=TOKEN) as node:
        monkeypatch.setenv("MAMMOCERT_TEST_TOKEN", TOKEN)
        good, _, good_log = _run(tmp_path / "a", node.url, cases, auth=auth)
        monkeypatch.setenv("MAMMOCERT_TEST_TOKEN", "not-" + TOKEN)
        bad, attempts, bad_log = _run(tmp_path / "b", node.url, cases, auth=auth)
        assert [s.authorized for s in node.seen] == [True, False]
    assert good.status == "ok", good.error
    assert bad.status == "error" and "HTTP 401 (problem+json: missing or wrong credentials)" in (
        bad.error
    )
    assert [(a["outcome"], a["status"]) for a in attempts] == [("http-error", 401)]
    assert TOKEN not in good_log + bad_log and TOKEN not in bad.error  # the secret is not kept


def test_basic_credentials_from_the_environment(tmp_path, cases, scorer, monkeypatch):
    auth = {"scheme": "basic", "username_env": "MC_USER", "password_env": "MC_PASSWORD"}
    monkeypatch.setenv("MC_USER", "region")
    with ReferenceRestNode(scorer, basic=("region", "pa55")) as node:
        monkeypatch.setenv("MC_PASSWORD", "pa55")
        good, _, _ = _run(tmp_path / "a", node.url, cases, auth=auth)
        monkeypatch.setenv("MC_PASSWORD", "wrong")
        bad, _, _ = _run(tmp_path / "b", node.url, cases, auth=auth)
    assert good.status == "ok", good.error
    assert bad.status == "error" and "HTTP 401" in bad.error, bad.error


def test_a_trickled_body_ends_at_the_deadline_not_when_the_body_does(tmp_path, scorer, cases):
    """httpx buffers ``iter_bytes(chunk_size)`` up to the chunk size; the transport must see
    each piece as it arrives, or a server sending a byte every 0.2 s holds the exam for the
    whole body (here about 5 minutes)."""
    manifest = load_manifest(cases)
    with ReferenceRestNode(scorer, fault="slow-body") as node:
        pkg = load_vendor_package(write_jsonjob_package(tmp_path / "pkg", node.url))
        adapter = open_adapter(pkg, evidence_dir=tmp_path / "ev")
        upload = adapter.prepare(load_exam(manifest, manifest.exams[0]))
        t0 = time.monotonic()
        with pytest.raises(VendorFault) as exc:
            adapter.client.request(
                "POST", "/exams", deadline=t0 + 1.5, **upload.request_kwargs("multipart")
            )
        took = time.monotonic() - t0
        adapter.close()
    assert "response body still arriving at the deadline" in exc.value.reason
    assert took < 1.5 + 0.5, took
