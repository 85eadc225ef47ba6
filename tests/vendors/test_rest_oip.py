"""The ``oip-v2`` REST profile: against real Open Inference Protocol peers (Seldon MLServer with
JSON tensors, KServe with the binary tensor extension) it gives exactly the ONNX package's
predictions; metadata that does not declare the binding is a usage error; a server that is down
or misbehaves is recorded exam by exam.

The malformed answers come from a small Starlette server here (``FakeOip``): real peers do not
misbehave on demand."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import uvicorn
from dicom_testkit import deidentified_set
from helpers import _missing, certify_standard
from oip_testkit import (
    MODEL,
    REFERENCE_VENDOR,
    PeerUnavailable,
    kserve,
    mlserver,
    peer_venv,
    write_oip_package,
)
from pydicom import dcmread
from rest_testkit import RecordingProxy, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.cases.manifest import load_manifest
from harness.errors import VendorPackageError
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter
from harness.vendors.rest.oip import HEADER_LENGTH


@pytest.fixture(scope="module")
def ref_set(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("oip") / "set", n=4)


@pytest.fixture(scope="module")
def onnx_predictions(ref_set):
    adapter = open_adapter(load_vendor_package(REFERENCE_VENDOR))
    try:
        return run_predictions(adapter, load_manifest(ref_set), progress=False)
    finally:
        adapter.close()


def _predict(pkg_dir: Path, ref_set: Path, evidence: Path):
    manifest = load_manifest(ref_set)
    adapter = open_adapter(load_vendor_package(pkg_dir), evidence_dir=evidence, manifest=manifest)
    try:
        return run_predictions(adapter, manifest, progress=False), adapter.info
    finally:
        adapter.close()


def _peer(factory, workdir: Path):
    """The peer's context manager; its venv made first, so a missing one skips (fails in CI)."""
    try:
        peer_venv(factory.__name__)
    except PeerUnavailable as exc:
        _missing(str(exc), "scripts/peers.sh (needs the package index)")
    return factory(workdir)


def _secrets(ref_set: Path) -> list[bytes]:
    """What must never be on the wire: identities, original UIDs, file names, exam ids, truth."""
    manifest = json.loads((ref_set / "manifest.json").read_text("utf-8"))
    out: set[bytes] = {b"screen_detected", b'"label"', b"lesion", b"truth", b"SYNTHETIC"}
    for exam in manifest["exams"]:
        out.add(exam["exam_id"].encode())
        for im in exam["images"]:
            out.add(im["file"].encode())
            ds = dcmread(ref_set / im["file"], stop_before_pixels=True)
            out.update(str(ds[k].value).encode() for k in ("PatientName", "PatientID"))
            for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                out.add(str(ds[k].value).encode())
    return sorted(out)


def _wire_has_no_secrets(sent: bytes, ref_set: Path, prepared_tensors: list[bytes]) -> None:
    # Raw float32 tensors (binary extension) are arbitrary bytes; take them out before searching.
    for raw in prepared_tensors:
        sent = sent.replace(raw, b"")
    leaks = [s for s in _secrets(ref_set) if s in sent]
    assert not leaks, leaks


def _tensors(ref_set: Path) -> list[bytes]:
    from harness.exam_input import load_exam

    manifest = load_manifest(ref_set)
    adapter = open_adapter(load_vendor_package(REFERENCE_VENDOR))
    try:
        return [
            adapter.prepare(load_exam(manifest, e)).batches[0].tensor.tobytes()
            for e in manifest.exams
        ]
    finally:
        adapter.close()


def _same_as_onnx(got, want) -> None:
    """Bit-for-bit: the same float32 tensors reach the same model, the same outputs come back."""
    assert [p.exam_id for p in got] == [p.exam_id for p in want]
    for g, w in zip(got, want, strict=True):
        assert g.status == "ok", g.error
        assert g.score == w.score
        assert dict(g.breasts) == dict(w.breasts)
        assert g.findings == w.findings


# ---------------------------------------------------------------------- real peers


@pytest.mark.external
@pytest.mark.slow
@pytest.mark.parametrize("peer", ["mlserver", "kserve"])
def test_real_peer_gives_the_onnx_predictions_and_sends_no_secrets(
    peer, ref_set, onnx_predictions, tmp_path
):
    factory, encoding = {"mlserver": (mlserver, "json"), "kserve": (kserve, "binary")}[peer]
    with _peer(factory, tmp_path / peer) as port, RecordingProxy(port) as proxy:
        got, info = _predict(
            write_oip_package(tmp_path / "pkg", proxy.port), ref_set, tmp_path / "ev"
        )
        sent = proxy.sent
    _same_as_onnx(got, onnx_predictions)
    # encoding auto: the probe found what each server really does (MLServer answers a binary
    # body 422; KServe decodes it although it does not advertise the extension).
    record = json.loads((tmp_path / "ev" / "oip.json").read_text("utf-8"))
    assert record["encoding"] == encoding
    assert info.execution_provider.endswith(f"({encoding} tensors)")
    assert record["binary_probe"]["accepted"] is (encoding == "binary")
    assert len(info.model_digests["oip-metadata"]) == 64
    assert sent.count(b"POST /v2/models/mammo/infer") == 1 + len(got)  # the probe + one per exam
    _wire_has_no_secrets(sent, ref_set, _tensors(ref_set) if encoding == "binary" else [])


@pytest.mark.external
@pytest.mark.slow
def test_run_through_mlserver_matches_the_onnx_run(ref_set, tmp_path):
    """``mammocert run --mode certify`` through the profile: the same criteria outcomes and
    values as the ONNX package run directly on the same set. The demo standard cut to a
    selection (discrimination, degenerate output, technical failures, determinism and one
    invariance, which sends perturbed copies through the profile), pinned to the test set, so
    two certify runs fit in CI."""
    ids = {"DK-AUC-01", "DK-DEGEN-01", "DK-TFR-01", "DK-DET-01", "DK-INV-MIRROR"}
    standard = certify_standard(
        Path(__file__).resolve().parents[2] / "standards" / "demo.yaml",
        ref_set,
        lambda c: c["id"] in ids,
        tmp_path / "standard.yaml",
    )

    def run(vendor: Path, out: Path) -> dict:
        proc = subprocess.run(
            [sys.executable, "-m", "mammocert.cli", "run", "--vendor", str(vendor)]
            + ["--mode", "certify", "--standard", str(standard), "--cases", str(ref_set)]
            + ["--out", str(out)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        results = json.loads((out / "results.json").read_text("utf-8"))
        assert results["mode"] == "certify"
        return {c["id"]: (c["outcome"], c.get("value")) for c in results["criteria"]}

    with _peer(mlserver, tmp_path / "mlserver") as port:
        via_rest = run(write_oip_package(tmp_path / "pkg", port, timeout_s=120), tmp_path / "rest")
    assert (tmp_path / "rest" / "rest-evidence" / "oip.json").is_file()
    direct = run(REFERENCE_VENDOR, tmp_path / "onnx")
    assert via_rest == direct
    assert set(via_rest) == ids
    # the live criteria sent their perturbed and repeated exams through the profile and were judged
    assert all(via_rest[k][0] in ("passed", "failed") for k in ("DK-DET-01", "DK-INV-MIRROR"))


# ---------------------------------------------------------------------- a fake OIP server

STUDY = "study_uid"
H, W = 64, 48  # a small binding: the fake answers do not depend on the pixels
SMALL_INPUT = {"unit": "exam", "name": "image", "height": H, "width": W}
META = {
    "name": MODEL,
    "platform": "",
    "inputs": [
        {"name": "image", "datatype": "FP32", "shape": [-1, 4, H, W]},
        {"name": STUDY, "datatype": "BYTES", "shape": [1]},
    ],
    "outputs": [
        {"name": "score", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "heatmap", "datatype": "FP32", "shape": [-1, 4, H // 4, W // 4]},
        {"name": "breast_scores", "datatype": "FP32", "shape": [-1, 2]},
        {"name": STUDY, "datatype": "BYTES", "shape": [1]},
    ],
}


def fake_package(root: Path, port: int, **oip) -> Path:
    return write_oip_package(root, port, oip={"input": SMALL_INPUT, **oip})


def _decode_request(body: bytes, headers) -> tuple[dict, str]:
    """The request's JSON header and the study UID it carries (JSON or binary)."""
    if HEADER_LENGTH.lower() in headers:
        n = int(headers[HEADER_LENGTH.lower()])
        head, raw = orjson.loads(body[:n]), body[n:]
        offset = 0
        for i in head["inputs"]:
            size = i["parameters"]["binary_data_size"]
            if i["name"] == STUDY:
                (length,) = struct.unpack_from("<I", raw, offset)
                return head, raw[offset + 4 : offset + 4 + length].decode()
            offset += size
    head = orjson.loads(body)
    return head, next(i["data"][0] for i in head["inputs"] if i["name"] == STUDY)


class FakeOip:
    """An OIP server on 127.0.0.1 whose answers ``mode`` spoils (metadata: ``meta``)."""

    def __init__(self, mode: str = "ok", meta: dict | None = None, binary: bool = False) -> None:
        self.mode, self.meta, self.binary = mode, meta or META, binary
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/v2/health/ready", lambda r: Response(b"")),
                Route(f"/v2/models/{MODEL}/ready", lambda r: Response(b"")),
                Route(f"/v2/models/{MODEL}", lambda r: JSONResponse(self.meta)),
                Route(f"/v2/models/{MODEL}/infer", self.infer, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeOip:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "fake OIP server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def infer(self, request: Request) -> Response:
        body = await request.body()
        head, uid = _decode_request(body, request.headers)
        binary_request = HEADER_LENGTH.lower() in request.headers
        if binary_request and not self.binary:
            return JSONResponse({"error": "binary bodies are not supported"}, status_code=400)
        n = head["inputs"][0]["shape"][0]
        mode = self.mode
        outs = {
            "score": ("FP32", [n, 1], [0.25] * n),
            "heatmap": ("FP32", [n, 4, H // 4, W // 4], [0.0] * (n * 4 * (H // 4) * (W // 4))),
            "breast_scores": ("FP32", [n, 2], [0.1, 0.2] * n),
            STUDY: ("BYTES", [1], ["2.25.999" if mode == "wrong-echo" else uid]),
        }
        if mode == "null-score":
            outs["score"] = ("FP32", [n, 1], [None] * n)
        elif mode == "shape-mismatch":
            outs["score"] = ("FP32", [n, 3], [0.25] * n)
        elif mode == "two-scores":
            outs["score"] = ("FP32", [n, 2], [0.25, 0.5] * n)
        elif mode == "int-score":
            outs["score"] = ("INT64", [n, 1], [1] * n)
        elif mode == "missing-breast-scores":
            del outs["breast_scores"]
        elif mode == "out-of-range":
            outs["score"] = ("FP32", [n, 1], [1.5] * n)
        elif mode == "nan-binary":
            outs["score"] = ("FP32", [n, 1], [float("nan")] * n)
        if mode == "nan-token":
            text = json.dumps(
                {
                    "outputs": [
                        {
                            "name": "score",
                            "datatype": "FP32",
                            "shape": [1, 1],
                            "data": [float("nan")],
                        }
                    ]
                }
            )
            return Response(text.encode(), media_type="application/json")
        outputs = [{"name": k, "datatype": d, "shape": s} for k, (d, s, _) in outs.items()]
        if not binary_request:
            for o in outputs:
                o["data"] = outs[o["name"]][2]
            return JSONResponse({"id": "whatever", "model_name": MODEL, "outputs": outputs})
        raw = b""
        for o in outputs:
            d, _, values = outs[o["name"]]
            chunk = (
                b"".join(struct.pack("<I", len(v)) + v.encode() for v in values)
                if d == "BYTES"
                else np.asarray(values, dtype="<f4" if d == "FP32" else "<i8").tobytes()
            )
            o["parameters"] = {"binary_data_size": len(chunk)}
            raw += chunk
        header = json.dumps({"id": "whatever", "model_name": MODEL, "outputs": outputs}).encode()
        length = len(header)
        if mode == "header-beyond-body":
            length = len(header) + len(raw) + 10
        elif mode == "sizes-short":
            raw += b"\0\0\0\0"
        elif mode == "no-header":
            return Response(header + raw, media_type="application/octet-stream")
        return Response(
            header + raw,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(length)},
        )


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("oipfake") / "set", n=2)


def test_fake_server_well_formed_answers_are_accepted(small_set, tmp_path):
    """The control for the fault cases below: the same fake server, nothing spoiled."""
    for binary in (False, True):
        with FakeOip(binary=binary) as fake:
            preds, info = _predict(
                fake_package(tmp_path / f"pkg{binary}", fake.port),
                small_set,
                tmp_path / f"ev{binary}",
            )
        assert [p.status for p in preds] == ["ok", "ok"], [p.error for p in preds]
        assert [p.score for p in preds] == [0.25, 0.25]
        assert dict(preds[0].breasts) == pytest.approx({"L": 0.1, "R": 0.2})
        assert info.execution_provider.endswith("binary tensors)" if binary else "json tensors)")


@pytest.mark.parametrize(
    ("mode", "binary", "reason"),
    [
        ("wrong-echo", False, "answered for another study"),
        ("wrong-echo", True, "answered for another study"),
        ("null-score", False, "holds null"),
        ("shape-mismatch", False, "has 1 values for shape [1, 3]"),
        ("shape-mismatch", True, "has 4 bytes; FP32 [1, 3] needs 12"),
        ("two-scores", False, "score output has 2 values for 1 inputs"),
        ("int-score", False, "datatype 'INT64'"),
        ("missing-breast-scores", False, "lacks output 'breast_scores'"),
        ("missing-breast-scores", True, "lacks output 'breast_scores'"),
        ("nan-token", False, "NaN is not a JSON number"),
        ("nan-binary", True, "model returned NaN"),
        ("header-beyond-body", True, "is beyond the"),
        ("sizes-short", True, "add up to"),
        ("no-header", True, "binary response without an Inference-Header-Content-Length"),
    ],
)
def test_malformed_answers_are_recorded_per_exam(small_set, tmp_path, mode, binary, reason):
    with FakeOip(mode, binary=binary) as fake:
        t0 = time.monotonic()
        # The encoding is fixed: under ``auto`` a spoiled binary answer would make the probe
        # fall back to JSON.
        pkg = fake_package(tmp_path / "pkg", fake.port, encoding="binary" if binary else "json")
        preds, _ = _predict(pkg, small_set, tmp_path)
    assert time.monotonic() - t0 < 60
    assert [p.status for p in preds] == ["error", "error"]
    assert all(reason in p.error for p in preds), preds[0].error
    attempts = (tmp_path / "attempts.jsonl").read_text("utf-8").splitlines()
    assert sum('"POST"' in a for a in attempts) == 2  # one per exam, none retried


def test_out_of_range_score_is_mapped_not_clipped(small_set, tmp_path):
    with FakeOip("out-of-range") as fake:
        preds, _ = _predict(fake_package(tmp_path / "pkg", fake.port), small_set, tmp_path)
    assert [(p.status, p.score) for p in preds] == [("ok", 1.5), ("ok", 1.5)]


def test_server_down_makes_every_exam_an_error(small_set, tmp_path):
    port = free_port()  # nothing listens
    t0 = time.monotonic()
    preds, info = _predict(fake_package(tmp_path / "pkg", port), small_set, tmp_path / "ev")
    assert time.monotonic() - t0 < 30
    assert [p.status for p in preds] == ["error", "error"]
    assert all(
        p.error.startswith("OIP server not ready:") and "connection refused" in p.error
        for p in preds
    ), preds[0].error
    assert "oip-metadata" not in info.model_digests
    record = json.loads((tmp_path / "ev" / "oip.json").read_text("utf-8"))
    assert record["down_reason"] == preds[0].error


def _meta_with(side: str, name: str, **change) -> dict:
    meta = json.loads(json.dumps(META))
    tensors = meta[side]
    for t in list(tensors):
        if t["name"] == name:
            if change.get("drop"):
                tensors.remove(t)
            else:
                t.update(change)
    return meta


@pytest.mark.parametrize(
    ("meta", "needle"),
    [
        (_meta_with("inputs", "image", drop=True), "has no input tensor 'image'"),
        (_meta_with("inputs", "image", datatype="FP16"), "input 'image' is FP16"),
        (_meta_with("inputs", "image", shape=[-1, 1, H, W]), f"[-1, 1, {H}, {W}]"),
        (_meta_with("inputs", "image", shape=[-1, 4, 2 * H, W]), f"[-1, 4, {2 * H}, {W}]"),
        (_meta_with("inputs", "image", shape=[2, 4, H, W]), f"[2, 4, {H}, {W}]"),
        (_meta_with("inputs", STUDY, datatype="FP32"), "no BYTES input 'study_uid'"),
        (_meta_with("outputs", "score", drop=True), "output 'score' (rest.oip.output.score)"),
        (_meta_with("outputs", "heatmap", datatype="INT8"), "output 'heatmap'"),
        (_meta_with("outputs", STUDY, drop=True), "no BYTES output 'study_uid'"),
        (
            {**META, "inputs": [*META["inputs"], {"name": "x", "datatype": "FP32", "shape": [1]}]},
            "also needs inputs ['x']",
        ),
    ],
)
def test_metadata_that_does_not_declare_the_binding_is_refused(small_set, tmp_path, meta, needle):
    with FakeOip(meta=meta) as fake:
        pkg = load_vendor_package(fake_package(tmp_path / "pkg", fake.port))
        with pytest.raises(VendorPackageError) as err:
            open_adapter(pkg, evidence_dir=tmp_path, manifest=load_manifest(small_set))
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert "rest.oip" in message or "model" in message


def test_metadata_mismatch_exits_2_with_one_line(small_set, tmp_path):
    meta = _meta_with("inputs", "image", shape=[-1, 1, H, W])
    with FakeOip(meta=meta) as fake:
        proc = subprocess.run(
            [sys.executable, "-m", "mammocert.cli", "predict"]
            + ["--vendor", str(fake_package(tmp_path / "pkg", fake.port))]
            + ["--cases", str(small_set), "--out", str(tmp_path / "p.jsonl")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"input 'image' is FP32 [-1, 1, {H}, {W}]" in lines[0], lines
    assert "Traceback" not in proc.stderr


def test_encoding_json_never_probes(small_set, tmp_path):
    with FakeOip(binary=True) as fake:
        preds, info = _predict(
            fake_package(tmp_path / "pkg", fake.port, encoding="json"),
            small_set,
            tmp_path,
        )
    assert [p.status for p in preds] == ["ok", "ok"]
    assert info.execution_provider.endswith("(json tensors)")
    attempts = (tmp_path / "attempts.jsonl").read_text("utf-8").splitlines()
    assert sum('"POST"' in a for a in attempts) == 2


@pytest.mark.parametrize(("first_dim", "posts"), [(-1, 2), (1, 8)])
def test_image_unit_batches_follow_the_metadata(small_set, tmp_path, first_dim, posts):
    """Unit image: a variable first dimension sends an exam's four views in one request, a
    fixed one sends one request per view."""
    meta = _meta_with("inputs", "image", shape=[first_dim, 1, H, W])
    with FakeOip(meta=meta) as fake:
        pkg = write_oip_package(
            tmp_path / "pkg",
            fake.port,
            oip={"input": {**SMALL_INPUT, "unit": "image"}, "encoding": "json"},
        )
        preds, _ = _predict(pkg, small_set, tmp_path)
    assert [(p.status, p.score) for p in preds] == [("ok", 0.25), ("ok", 0.25)]
    attempts = (tmp_path / "attempts.jsonl").read_text("utf-8").splitlines()
    assert sum('"POST"' in a for a in attempts) == posts
