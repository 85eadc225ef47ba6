"""The reference REST node: a vendor's own JSON API (the ``json-job`` profile's peer) on a real
ASGI server (Starlette served by uvicorn on 127.0.0.1), scoring exams with a vendor adapter (the
ONNX reference package in ``mammocert serve-reference rest``).

API (``rest_node.openapi.yaml``, served at ``/openapi.json``):

* ``POST /exams``: the exam as ``multipart/form-data`` (a JSON part ``exam`` with
  ``study_instance_uid`` and ``exam_key``, one ``dicom`` part per Part-10 instance) or as JSON
  (``{"exam": {...}, "dicom": ["<base64>", ...]}``). ``mode="sync"`` answers ``200`` with the
  job document; ``mode="async"`` answers ``202`` + ``Location: /jobs/{id}`` (+ ``Retry-After``).
* ``GET /jobs/{id}``: the job document, ``200`` in every state (the "still processing" body):
  ``{"job_id", "state": queued|running|succeeded|failed|rejected, "study_instance_uid",
  "exam_key", "scale": [lo, hi], "result": {"exam_score", "breast_scores": {"L", "R"},
  "findings": [{"sop_instance_uid", "laterality", "view", "x", "y", "score"}]}}``.
* ``GET /health``.

Scores are on the node's native ``scale`` (``0-1``, ``1-10`` or ``0-100``): the adapter's [0, 1]
score ``s`` is written as ``lo + (hi - lo) * s``. Optional bearer-token or basic auth (401 with
``WWW-Authenticate`` otherwise); TLS and mutual TLS through uvicorn's ``ssl_*`` settings.

``fault`` makes the node misbehave on purpose (:data:`FAULTS`), so every row of the REST fault
table can be provoked on a real server; it may be changed while the node runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import secrets
import socket
import struct
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from harness.cases.manifest import ImageRef
from harness.errors import UsageError, VendorFault
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.reference.serving import serve_until_stopped
from harness.vendors.adapter import VendorAdapter
from harness.vendors.onnx_adapter import image_view

OPENAPI_PATH = Path(__file__).with_name("rest_node.openapi.yaml")
SCALES: Mapping[str, tuple[float, float]] = {
    "0-1": (0.0, 1.0),
    "1-10": (1.0, 10.0),
    "0-100": (0.0, 100.0),
}
MODES = ("sync", "async")
_TRANSPORT = "mammocert.transport"  # per-connection state key: the asyncio transport

FAULTS: Mapping[str, str] = {
    # transport, on the answer to POST /exams
    "slow-first-byte": "wait fault_delay_s before the status line",
    "slow-body": "send the body one byte every 0.2 s",
    "reset": "reset the connection (TCP RST) instead of answering",
    "truncated": "declare the whole Content-Length, send half the body, close",
    # HTTP status and error bodies
    "error-oip": 'HTTP 500, {"error": ...}',
    "error-detail": 'HTTP 422, FastAPI-style {"detail": [...]}',
    "error-problem": "HTTP 400, application/problem+json",
    "error-html": "HTTP 502, an HTML page",
    "error-empty": "HTTP 500, empty body",
    "throttle": "HTTP 429 + Retry-After: 1 on every other submission",
    "unavailable": "HTTP 503 + Retry-After: 1 on every submission",
    "unavailable-long": "HTTP 503 + Retry-After: 3600",
    "redirect": "HTTP 307 to another address",
    # JSON syntax
    "invalid-json": "a body that is not JSON",
    "duplicate-key": "exam_score twice in one object",
    "nan": "exam_score written as the token NaN",
    "infinity": "exam_score written as the token Infinity",
    # values
    "null-score": "exam_score null",
    "string-score": 'exam_score as a string ("7.5")',
    "null-breast": "breast score R null",
    "out-of-range": "exam_score beyond the top of the scale",
    "wrong-scale": "scores in [0, 1] whatever the declared scale",
    "finding-missing-key": "the first finding without x",
    "finding-non-numeric": 'the first finding with x "12px"',
    "finding-outside": "the first finding beyond the image's columns",
    "finding-unknown-uid": "the first finding cites a SOP Instance UID that was not sent",
    "wrong-laterality": "every finding with the other side",
    "wrong-study": "another Study Instance UID echoed",
    # jobs
    "no-location": "HTTP 202 without Location",
    "foreign-location": "HTTP 202 with a Location on another host",
    "location-404": "HTTP 202 with a Location that does not exist",
    "never-finishes": "the job stays running",
    "job-failed": "the job ends in state failed",
    "job-rejected": "the job ends in state rejected",
}


@dataclass
class Job:
    job_id: str
    study_uid: str
    exam_key: str
    state: str = "queued"
    ready_at: float = 0.0  # monotonic time before which the job shows as running
    result: dict[str, Any] | None = None
    message: str | None = None


@dataclass
class Seen:
    """One request as the node saw it (tests check retries, waits and credentials with it)."""

    t: float
    method: str
    path: str
    authorized: bool


def exam_of(datasets: list[Dataset]) -> ExamInput:
    """The received instances as an exam for the adapter; each image is named by its SOP UID."""
    images = sorted(
        datasets, key=lambda d: (str(d.get("ImageLaterality", "")), image_view(d) or "")
    )
    refs = tuple(
        (
            ImageRef(
                str(ds.SOPInstanceUID),
                str(ds.get("ImageLaterality", "")),
                image_view(ds) or "",
                "0" * 64,
            ),
            ds,
        )
        for ds in images
    )
    return ExamInput("exam", refs)


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol, handing the app its connection (so a fault can reset it)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = {**self.app_state, _TRANSPORT: transport}


def _problem(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(
        json.dumps(body), status, headers=dict(headers or {}), media_type="application/problem+json"
    )


class _BadUpload(Exception):
    """The upload is not an exam: answered 400 (or 415) with problem+json."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class ReferenceRestNode:
    """The reference REST node; ``start()``/``stop()`` it (or use it as a context manager)."""

    def __init__(
        self,
        adapter: VendorAdapter,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        scale: str = "1-10",
        mode: str = "sync",
        fault: str | None = None,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        job_s: float = 0.3,
        retry_after: int | None = None,
        fault_delay_s: float = 5.0,
        ssl: Mapping[str, Any] | None = None,
        model: str = "reference",
    ) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale {scale!r}: use one of {', '.join(SCALES)}")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        self.adapter = adapter
        self.host, self.port = host, port
        self.scale = scale
        self.mode = mode
        self.fault = fault
        self.token, self.basic = token, basic
        self.job_s, self.retry_after, self.fault_delay_s = job_s, retry_after, fault_delay_s
        self.ssl = dict(ssl or {})
        self.model = model
        self.seen: list[Seen] = []
        self.jobs: dict[str, Job] = {}
        self._submissions = 0
        self._lock = threading.Lock()  # the request log and the submission count
        self._scoring = threading.Lock()  # one exam at a time through the adapter
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rest-node-job")
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/exams", self._submit, methods=["POST"]),
                Route("/jobs/{job_id}", self._job, methods=["GET"]),
                Route("/health", self._health, methods=["GET"]),
                Route("/openapi.json", self._openapi, methods=["GET"]),
            ]
        )

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value is not None and value not in FAULTS:
            raise ValueError(f"fault {value!r}: use one of {', '.join(FAULTS)}")
        self._fault = value

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # ------------------------------------------------------------------ requests

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        if self.token is not None:
            return secrets.compare_digest(given, f"Bearer {self.token}")
        if self.basic is not None:
            want = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return secrets.compare_digest(given, f"Basic {want}")
        return True

    def _gate(self, request: Request) -> Response | None:
        ok = self._authorized(request)
        with self._lock:
            self.seen.append(Seen(time.monotonic(), request.method, request.url.path, ok))
        if ok:
            return None
        scheme = (
            'Bearer error="invalid_token"' if self.token is not None else 'Basic realm="mammocert"'
        )
        return _problem(
            401, "Unauthorized", "missing or wrong credentials", {"WWW-Authenticate": scheme}
        )

    async def _health(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        return JSONResponse(
            {"status": "ok", "model": self.model, "scale": list(SCALES[self.scale])}
        )

    async def _openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def _job(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return _problem(404, "Not Found", "no such job")
        state = job.state
        if state == "succeeded" and time.monotonic() < job.ready_at:
            state = "running"  # scored already, but a job takes at least job_s
        if state == "succeeded":
            return self._result_response(self._document(job, state))
        pending = state in ("queued", "running") and self.retry_after is not None
        headers = {"Retry-After": str(self.retry_after)} if pending else {}
        return JSONResponse(self._document(job, state), headers=headers)

    async def _submit(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        try:
            exam, datasets = await self._read_upload(request)
        except _BadUpload as bad:
            return _problem(
                bad.status,
                "Bad Request" if bad.status == 400 else "Unsupported Media Type",
                bad.detail,
            )
        fault = self.fault
        with self._lock:
            self._submissions += 1
            n = self._submissions
        early = self._early_fault(fault, n, request)
        if early is not None:
            return early
        if fault == "reset":
            return self._reset(request)
        job = Job(secrets.token_hex(8), str(datasets[0].StudyInstanceUID), exam["exam_key"])
        self.jobs[job.job_id] = job
        if self.mode == "sync":
            await run_in_threadpool(self._run_job, job, datasets)
            return await self._answer(
                self._document(job, job.state), fault, job.state == "succeeded"
            )
        job.ready_at = time.monotonic() + self.job_s
        self._pool.submit(self._run_job, job, datasets)
        headers = {"Location": f"/jobs/{job.job_id}"}
        if fault == "no-location":
            headers = {}
        elif fault == "foreign-location":
            headers["Location"] = f"http://192.0.2.1:{self.port}/jobs/{job.job_id}"
        elif fault == "location-404":
            headers["Location"] = "/jobs/no-such-job"
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        body = {"job_id": job.job_id, "state": "queued"}
        return JSONResponse(body, 202, headers=headers)

    def _early_fault(self, fault: str | None, n: int, request: Request) -> Response | None:
        """The faults answered instead of any job."""
        if fault == "error-oip":
            return JSONResponse({"error": "model server exploded"}, 500)
        if fault == "error-detail":
            detail = [{"loc": ["body", "exam"], "msg": "field required", "type": "missing"}]
            return JSONResponse({"detail": detail}, 422)
        if fault == "error-problem":
            return _problem(400, "Bad Request", "the exam has no tomosynthesis")
        if fault == "error-html":
            return Response(
                "<html><body><h1>502 Bad Gateway</h1></body></html>", 502, media_type="text/html"
            )
        if fault == "error-empty":
            return Response(b"", 500)
        if fault == "throttle" and n % 2 == 1:
            return _problem(429, "Too Many Requests", "slow down", {"Retry-After": "1"})
        if fault == "unavailable":
            return _problem(503, "Service Unavailable", "warming up", {"Retry-After": "1"})
        if fault == "unavailable-long":
            return _problem(503, "Service Unavailable", "maintenance", {"Retry-After": "3600"})
        if fault == "redirect":
            return Response(b"", 307, headers={"Location": "http://127.0.0.1:9/exams"})
        return None

    def _reset(self, request: Request) -> Response:
        transport = request.scope["state"][_TRANSPORT]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return Response(b"", 500)  # never reaches the client: the connection is gone

    async def _read_upload(self, request: Request) -> tuple[dict[str, Any], list[Dataset]]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        blobs: list[bytes] = []
        if ctype == "multipart/form-data":
            try:
                form = await request.form(max_files=64, max_fields=8, max_part_size=1 << 16)
            except Exception as exc:  # the multipart parser's own errors: a bad upload
                raise _BadUpload(f"unreadable multipart body ({type(exc).__name__})") from None
            raw = form.get("exam")
            if isinstance(raw, UploadFile):
                raw = (await raw.read()).decode("utf-8", "replace")
            exam = _exam_part(raw)
            for item in form.getlist("dicom"):
                if not isinstance(item, UploadFile):
                    raise _BadUpload("every dicom part must be a file (application/dicom)")
                blobs.append(await item.read())
        elif ctype == "application/json":
            try:
                doc = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError):
                raise _BadUpload("the body is not JSON") from None
            if not isinstance(doc, dict):
                raise _BadUpload("the body must be an object with exam and dicom")
            exam = _exam_part(doc.get("exam"))
            items = doc.get("dicom")
            if not isinstance(items, list) or not all(isinstance(b, str) for b in items):
                raise _BadUpload("dicom must be a list of base64 strings")
            for b in items:
                try:
                    blobs.append(base64.b64decode(b, validate=True))
                except (binascii.Error, ValueError):
                    raise _BadUpload("a dicom item is not base64") from None
        else:
            raise _BadUpload("send multipart/form-data or application/json", 415)
        if not blobs:
            raise _BadUpload("no DICOM instances in the upload")
        datasets = []
        for k, data in enumerate(blobs):
            try:
                datasets.append(dcmread(io.BytesIO(data)))
            except (
                InvalidDicomError,
                ValueError,
                EOFError,
                OSError,
                KeyError,
                TypeError,
                struct.error,
            ):
                raise _BadUpload(f"dicom part {k} is not a DICOM Part-10 file") from None
        studies = {str(ds.get("StudyInstanceUID", "")) for ds in datasets}
        if len(studies) != 1 or studies != {exam["study_instance_uid"]}:
            raise _BadUpload("the instances are not all of the study named in exam")
        return exam, datasets

    # ------------------------------------------------------------------ scoring

    def _run_job(self, job: Job, datasets: list[Dataset]) -> None:
        job.state = "running"
        try:
            with self._scoring:
                out = self.adapter.infer(self.adapter.prepare(exam_of(datasets)))
        except VendorFault as exc:
            job.state, job.message = (
                ("rejected" if exc.status == "rejected" else "failed"),
                exc.reason,
            )
            return
        except Exception as exc:  # noqa: BLE001 - the node reports it as a failed job
            job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"
            return
        job.result = self._native(out)
        if self.fault == "never-finishes":
            job.state = "running"
        elif self.fault == "job-failed":
            job.state, job.message = "failed", "the model crashed"
        elif self.fault == "job-rejected":
            job.state, job.message = "rejected", "not a screening exam"
        else:
            job.state = "succeeded"

    def _native(self, out: ExamOutput) -> dict[str, Any]:
        lo, hi = (0.0, 1.0) if self.fault == "wrong-scale" else SCALES[self.scale]

        def scaled(s: float) -> float:
            return lo + (hi - lo) * s

        return {
            "exam_score": scaled(out.score),
            "breast_scores": {side: scaled(v) for side, v in sorted(out.breasts.items())},
            "findings": [
                {
                    "sop_instance_uid": f.file,
                    "laterality": f.laterality,
                    "view": f.view,
                    "x": f.x,
                    "y": f.y,
                    "score": scaled(f.score),
                }
                for f in out.findings
            ],
        }

    def _document(self, job: Job, state: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "job_id": job.job_id,
            "state": state,
            "study_instance_uid": job.study_uid,
            "exam_key": job.exam_key,
            "model": self.model,
            "scale": list(SCALES[self.scale]),
        }
        if state == "succeeded" and job.result is not None:
            doc["result"] = job.result
        if state in ("failed", "rejected") and job.message:
            doc["message"] = job.message
        return doc

    # ------------------------------------------------------------------ answers

    def _result_response(self, doc: dict[str, Any]) -> Response:
        """A finished job's document, spoiled as the fault asks."""
        fault = self.fault
        doc = json.loads(json.dumps(doc))  # a private copy to spoil
        res = doc.get("result") or {}
        findings = res.get("findings") or []
        hi = SCALES[self.scale][1]
        text: str | None = None
        if fault == "null-score":
            res["exam_score"] = None
        elif fault == "string-score":
            res["exam_score"] = str(res["exam_score"])
        elif fault == "null-breast":
            res["breast_scores"]["R"] = None
        elif fault == "out-of-range":
            res["exam_score"] = hi + abs(hi) + 1.0
        elif fault == "wrong-study":
            doc["study_instance_uid"] = generate_uid()
        elif fault == "wrong-laterality":
            for f in findings:
                f["laterality"] = {"L": "R", "R": "L"}.get(f["laterality"], "L")
        elif findings and fault == "finding-missing-key":
            del findings[0]["x"]
        elif findings and fault == "finding-non-numeric":
            findings[0]["x"] = "12px"
        elif findings and fault == "finding-outside":
            findings[0]["x"] = 1e6
        elif findings and fault == "finding-unknown-uid":
            findings[0]["sop_instance_uid"] = generate_uid()
        elif fault in ("nan", "infinity"):
            res["exam_score"] = math.nan if fault == "nan" else math.inf
            text = json.dumps(doc)  # Python's json writes the bare tokens NaN / Infinity
        elif fault == "duplicate-key":
            text = json.dumps(doc)
            text = text.replace('"exam_score": ', '"exam_score": 0, "exam_score": ', 1)
        elif fault == "invalid-json":
            text = json.dumps(doc)[:-7] + "}, ]"
        if text is None:
            text = json.dumps(doc)
        return Response(text.encode("utf-8"), 200, media_type="application/json")

    async def _answer(self, doc: dict[str, Any], fault: str | None, finished: bool) -> Response:
        """The answer to a synchronous submission, with the transport faults."""
        resp = self._result_response(doc) if finished else JSONResponse(doc)
        if fault == "slow-first-byte":
            await asyncio.sleep(self.fault_delay_s)
        if fault == "slow-body":
            body = bytes(resp.body)

            async def trickle():
                for k in range(len(body)):
                    yield body[k : k + 1]
                    await asyncio.sleep(0.2)

            return StreamingResponse(
                trickle(),
                200,
                headers={"Content-Length": str(len(body))},
                media_type="application/json",
            )
        if fault == "truncated":
            return _Truncated(bytes(resp.body))
        return resp

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ReferenceRestNode:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            http=_Protocol,
            lifespan="off",
            log_level="critical",
            access_log=False,
            timeout_graceful_shutdown=1,
            **self.ssl,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="rest-node", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the REST node could not listen on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._server = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReferenceRestNode:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _Truncated(Response):
    """Declares the whole body's length, sends half of it and ends the response: the server
    then closes the connection mid-body."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body, 200, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )


def _exam_part(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise _BadUpload("the exam part is not JSON") from None
    if not isinstance(raw, dict):
        raise _BadUpload("an exam part with study_instance_uid and exam_key is required")
    for key in ("study_instance_uid", "exam_key"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _BadUpload(f"exam.{key} must be a non-empty string")
    return raw


def openapi_document() -> dict[str, Any]:
    """The node's OpenAPI document (``rest_node.openapi.yaml``)."""
    from harness import yamlio
    from harness.errors import HarnessFault

    return yamlio.safe_load(OPENAPI_PATH.read_bytes(), str(OPENAPI_PATH), HarnessFault)


def serve_cli(args: Any) -> int:
    """``mammocert serve-reference rest --vendor PKG --port N [--scale S --mode M --fault F]``."""
    from harness.vendors import load_vendor_package, open_adapter

    if args.fault is not None and args.fault not in FAULTS:
        raise UsageError(f"--fault {args.fault!r}: use one of {', '.join(FAULTS)}")
    pkg = load_vendor_package(args.vendor)
    if pkg.interface != "onnx":
        raise UsageError(
            f"--vendor {args.vendor}: the reference node scores with an ONNX package, not interface {pkg.interface!r}"
        )
    adapter = open_adapter(pkg, "cpu")
    node = ReferenceRestNode(
        adapter,
        port=int(args.port),
        scale=args.scale,
        mode=args.mode,
        fault=args.fault,
        model=pkg.name,
    )
    try:
        node.start()
    except OSError as exc:
        adapter.close()
        raise UsageError(f"--port {args.port}: cannot listen ({exc}); choose a free port") from None
    print(
        f"reference REST node on {node.url} ({args.mode}, scale {args.scale}"
        f"{', fault ' + args.fault if args.fault else ''}), scoring with {pkg.name}; Ctrl-C stops it",
        flush=True,
    )
    return serve_until_stopped(node, adapter)


__all__ = ["FAULTS", "MODES", "SCALES", "ReferenceRestNode", "exam_of", "openapi_document"]
