"""The reference DICOMweb AI node: a vendor node attached to a PACS (or archive) by DICOMweb.

It polls the service's QIDO-RS for studies (``GET {root}/studies``), fetches each new study's
series with WADO-RS, scores it with a
vendor adapter (the ONNX reference package in ``mammocert serve-reference dicomweb``) exactly as
the reference DICOM node does (:func:`harness.reference.dicom_node.score_and_report`: a
Mammography CAD SR in percent, optionally a TID 1500 report), and STOW-RSes the report(s) back
into the same service, where a DICOMweb client (the harness's ``dicomweb`` profile) finds them.

A study is scored once its four screening views are stored, or ``idle_s`` after the node first
saw it; a study whose modalities already include SR is taken as reported. Like the DICOM node
it scores whatever study arrives (a chest radiograph too): the adapter's refusal becomes a
report saying no algorithm succeeded, so nothing waits for a report that never comes.

With ``ups_port`` the node is instead an IHE AIW-I Task Manager and Task Performer: it serves
UPS-RS on 127.0.0.1:``ups_port`` (``POST /workitems`` creates a workitem, 201 Created with its
Location; ``GET /workitems`` searches them, no matching keys but ``limit``; ``GET
/workitems/{uid}`` returns one), and performs each READY workitem: it retrieves
every input by its WADO-RS Retrieve URL, scores the study, stores the report(s) at the
workitem's STOW-RS Storage URL, and sets the workitem COMPLETED with the reports in its Output
Information Sequence (CANCELED, with the reason, if that fails). It then does not poll for new
studies: only workitems are performed.

``fault`` makes the node misbehave on purpose, as the DICOM node does: ``silent`` (never
reports), ``malformed``, ``wrong-study``, ``partial``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from io import BytesIO
from typing import Any

import httpx
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from harness.dicomnet import dicomweb as wire
from harness.errors import UsageError
from harness.reference.dicom_node import SCREENING_VIEWS, _view, score_and_report
from harness.reference.serving import serve_until_stopped
from harness.vendors.adapter import VendorAdapter

log = logging.getLogger(__name__)

FAULTS = ("silent", "malformed", "wrong-study", "partial")


class ReferenceDicomwebNode:
    """The node; ``start()``/``stop()`` it (or use it as a context manager)."""

    def __init__(
        self,
        adapter: VendorAdapter,
        root: str,
        *,
        tid1500: bool = False,
        poll_interval_s: float = 0.2,
        idle_s: float = 2.0,
        fault: str | None = None,
        ups_port: int | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault {fault!r}: use one of {', '.join(FAULTS)}")
        self.adapter = adapter
        self.root = root.rstrip("/")
        self.tid1500 = tid1500
        self.poll_interval_s = poll_interval_s
        self.idle_s = idle_s
        self.fault = fault
        self.reports_sent = 0
        self.errors: list[str] = []
        self._first_seen: dict[str, float] = {}
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._http = httpx.Client(base_url=self.root + "/", timeout=60.0)
        self.ups_port = ups_port
        self.workitems: dict[str, Dataset] = {}
        self._ready: list[str] = []
        self._ups_lock = threading.Lock()
        self._ups_server: Any = None
        self._ups_thread: threading.Thread | None = None

    @property
    def ups_url(self) -> str:
        """The UPS-RS root of this node's Task Manager."""
        return f"http://127.0.0.1:{self.ups_port}"

    # ---------------------------------------------------------------- one poll

    def _json(self, path: str, **params: str) -> list[dict]:
        resp = self._http.get(path, params=params, headers={"Accept": wire.DICOM_JSON})
        resp.raise_for_status()
        if resp.status_code == 204 or not resp.content.strip():
            return []
        return list(wire.objects(resp.json(), f"QIDO-RS {path}"))

    def _fetch(self, study: str) -> list[Dataset]:
        images: list[Dataset] = []
        for series in self._json(f"studies/{study}/series"):
            uid = wire.first_string(series, "0020000E")
            resp = self._http.get(
                f"studies/{study}/series/{uid}", headers={"Accept": wire.RELATED_DICOM_AS_STORED}
            )
            resp.raise_for_status()
            for part in wire.decode_related(resp.content, resp.headers["content-type"]):
                images.append(dcmread(BytesIO(part.content)))
        return images

    def poll_once(self) -> None:
        """One round: perform the READY workitems (UPS mode), else score and report every
        study QIDO-RS shows ready."""
        if self.ups_port is not None:
            with self._ups_lock:
                ready, self._ready = self._ready, []
            for uid in ready:
                self._perform(uid)
            return
        for study in self._json("studies", includefield="00080061"):
            uid = wire.first_string(study, "0020000D")
            if uid is None or uid in self._done:
                continue
            if "SR" in wire.values(study, "00080061"):
                self._done.add(uid)
                continue
            first = self._first_seen.setdefault(uid, time.monotonic())
            idle = time.monotonic() - first >= self.idle_s
            try:
                images = self._fetch(uid)
                views = {(str(d.get("ImageLaterality", "")), _view(d)) for d in images}
                if not (SCREENING_VIEWS <= views or idle):
                    continue
                self._done.add(uid)
                self._report(images)
            except Exception as exc:  # one bad study must not stall the others
                if not idle and uid not in self._done:
                    continue  # retried next round, until idle_s after it was first seen
                self._done.add(uid)
                msg = f"study {uid}: {type(exc).__name__}: {exc}"
                log.warning("reference DICOMweb node: %s", msg)
                self.errors.append(msg)

    def _report(self, images: list[Dataset], storage_url: str = "studies") -> list[Dataset]:
        if self.fault == "silent":
            return []
        reports = score_and_report(self.adapter, images, self.tid1500, self.fault)
        body, ctype = wire.encode_related([wire.part10(r) for r in reports])
        resp = self._http.post(
            storage_url, content=body, headers={"Content-Type": ctype, "Accept": wire.DICOM_JSON}
        )
        resp.raise_for_status()
        outcome = wire.stow_outcome(resp.json())
        if outcome.failed:
            raise RuntimeError(f"STOW-RS of the report failed: {outcome.failed}")
        self.reports_sent += len(reports)
        return reports

    # ---------------------------------------------------------------- UPS-RS (IHE AIW-I)

    def _perform(self, uid: str) -> None:
        """Claim, retrieve, score, store, complete one workitem."""
        with self._ups_lock:
            ups = self.workitems[uid]
            ups.ProcedureStepState = "IN PROGRESS"
        try:
            images: list[Dataset] = []
            for item in ups.InputInformationSequence:
                url = str(item.WADORSRetrievalSequence[0].RetrieveURL)
                resp = self._http.get(url, headers={"Accept": wire.RELATED_DICOM_AS_STORED})
                resp.raise_for_status()
                parts = wire.decode_related(resp.content, resp.headers["content-type"])
                wanted = {str(r.ReferencedSOPInstanceUID) for r in item.ReferencedSOPSequence}
                got = [dcmread(BytesIO(p.content)) for p in parts]
                images += [ds for ds in got if str(ds.SOPInstanceUID) in wanted]
            storage = str(ups.OutputDestinationSequence[0].STOWRSStorageSequence[0].StorageURL)
            reports = self._report(images, storage)
        except Exception as exc:  # the workitem fails; the node keeps serving
            msg = f"workitem {uid}: {type(exc).__name__}: {exc}"
            log.warning("reference DICOMweb node: %s", msg)
            self.errors.append(msg)
            with self._ups_lock:
                ups.ProcedureStepState = "CANCELED"
                ups.ReasonForCancellation = msg[:64]
            return
        performed = Dataset()
        outputs = []
        for r in reports:
            out = Dataset()
            out.StudyInstanceUID, out.SeriesInstanceUID = r.StudyInstanceUID, r.SeriesInstanceUID
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = (
                r.SOPClassUID,
                r.SOPInstanceUID,
            )
            out.ReferencedSOPSequence = [ref]
            out.TypeOfInstances = "DICOM"
            outputs.append(out)
        performed.OutputInformationSequence = outputs
        with self._ups_lock:
            ups.UnifiedProcedureStepPerformedProcedureSequence = [performed]
            ups.ProcedureStepState = "COMPLETED"

    def _ups_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def problem(status: int, text: str) -> Response:
            # PS3.18: an error response of UPS-RS carries its reason in a Warning header.
            return Response(b"", status_code=status, headers={"Warning": f'299 mammocert "{text}"'})

        async def create(request: Request) -> Response:
            from pydicom.dataset import Dataset as Ds

            try:
                doc = json.loads(await request.body())
                if isinstance(doc, list) and len(doc) == 1:
                    doc = doc[0]
                ups = Ds.from_json(doc)
            except (ValueError, TypeError, KeyError) as exc:
                return problem(400, f"not a DICOM JSON workitem: {exc}")
            uid = request.query_params.get("workitem") or str(generate_uid())
            if ups.get("ProcedureStepState") != "SCHEDULED":
                return problem(400, "Procedure Step State must be SCHEDULED")
            try:
                for item in ups.InputInformationSequence:
                    str(item.WADORSRetrievalSequence[0].RetrieveURL)
                str(ups.OutputDestinationSequence[0].STOWRSStorageSequence[0].StorageURL)
            except (AttributeError, IndexError):
                return problem(400, "inputs need a WADO-RS Retrieve URL, outputs a Storage URL")
            with self._ups_lock:
                if uid in self.workitems:
                    return problem(409, f"workitem {uid} exists")
                ups.SOPInstanceUID = uid
                self.workitems[uid] = ups
                if ups.get("InputReadinessState") == "READY":
                    self._ready.append(uid)
            return Response(
                b"", status_code=201, headers={"Location": f"{self.ups_url}/workitems/{uid}"}
            )

        async def search(request: Request) -> Response:
            # Search Workitems without matching keys: every workitem, up to ``limit``.
            limit = request.query_params.get("limit", "")
            with self._ups_lock:
                docs = [w.to_json_dict() for w in self.workitems.values()]
            if limit.isdigit():
                docs = docs[: int(limit)]
            if not docs:
                return Response(b"", status_code=204)
            return JSONResponse(docs, media_type=wire.DICOM_JSON)

        async def get(request: Request) -> Response:
            with self._ups_lock:
                ups = self.workitems.get(request.path_params["uid"])
                doc = ups.to_json_dict() if ups is not None else None
            if doc is None:
                return problem(404, "no such workitem")
            return JSONResponse([doc], media_type=wire.DICOM_JSON)

        return Starlette(
            routes=[
                Route("/workitems", create, methods=["POST"]),
                Route("/workitems", search, methods=["GET"]),
                Route("/workitems/{uid}", get, methods=["GET"]),
            ]
        )

    # ---------------------------------------------------------------- lifecycle

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except (httpx.HTTPError, wire.DicomwebError, ValueError) as exc:
                log.warning("reference DICOMweb node: poll failed: %s", exc)
            self._stop.wait(self.poll_interval_s)

    def start(self) -> ReferenceDicomwebNode:
        self._stop.clear()
        if self.ups_port is not None:
            import uvicorn

            self._ups_server = uvicorn.Server(
                uvicorn.Config(
                    self._ups_app(), host="127.0.0.1", port=self.ups_port, log_level="warning"
                )
            )
            self._ups_thread = threading.Thread(
                target=self._ups_server.run, name="dicomweb-node-ups", daemon=True
            )
            self._ups_thread.start()
            deadline = time.monotonic() + 10
            while not self._ups_server.started:
                if time.monotonic() > deadline or not self._ups_thread.is_alive():
                    raise OSError(f"UPS-RS server did not start on 127.0.0.1:{self.ups_port}")
                time.sleep(0.02)
        self._worker = threading.Thread(target=self._loop, name="dicomweb-node", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        if self._ups_server is not None and self._ups_thread is not None:
            self._ups_server.should_exit = True
            self._ups_thread.join(timeout=10)
            self._ups_server = self._ups_thread = None
        self._http.close()

    def __enter__(self) -> ReferenceDicomwebNode:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_cli(args: Any) -> int:
    """``mammocert serve-reference dicomweb --vendor PKG --url ROOT [--tid1500]``."""
    from harness.vendors import load_vendor_package, open_adapter

    pkg = load_vendor_package(args.vendor)
    if pkg.interface != "onnx":
        raise UsageError(
            f"--vendor {args.vendor}: the reference node scores with an ONNX package, not "
            f"interface {pkg.interface!r}"
        )
    if not str(args.url).startswith(("http://", "https://")):
        raise UsageError(f"--url {args.url}: expected the DICOMweb root, http(s)://host:port/path")
    adapter = open_adapter(pkg, "cpu")
    node = ReferenceDicomwebNode(
        adapter, args.url, tid1500=bool(args.tid1500), ups_port=args.ups_port
    )
    try:
        node.start()
    except OSError as exc:
        adapter.close()
        raise UsageError(f"--ups-port {args.ups_port}: cannot serve UPS-RS ({exc})") from None
    how = (
        f"performing UPS-RS workitems created at {node.ups_url}/workitems"
        if args.ups_port
        else f"polling {node.root}"
    )
    print(
        f"reference DICOMweb node {how}, scoring with {pkg.name}; reports are stored back by "
        "STOW-RS; Ctrl-C stops it",
        flush=True,
    )
    return serve_until_stopped(node, adapter)
