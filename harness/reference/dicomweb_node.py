"""The reference DICOMweb AI node: a vendor node attached to a PACS (or archive) by DICOMweb.

It polls the service's QIDO-RS for mammography studies (``GET {root}/studies?
ModalitiesInStudy=MG``), fetches each new study's MG series with WADO-RS, scores it with a
vendor adapter (the ONNX reference package in ``mammocert serve-reference dicomweb``) exactly as
the reference DICOM node does (:func:`harness.reference.dicom_node.score_and_report`: a
Mammography CAD SR in percent, optionally a TID 1500 report), and STOW-RSes the report(s) back
into the same service, where a DICOMweb client (the harness's ``dicomweb`` profile) finds them.

A study is scored once its four screening views are stored, or ``idle_s`` after the node first
saw it; a study whose modalities already include SR is taken as reported.

``fault`` makes the node misbehave on purpose, as the DICOM node does: ``silent`` (never
reports), ``malformed``, ``wrong-study``, ``partial``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from io import BytesIO
from typing import Any

import httpx
from pydicom import dcmread
from pydicom.dataset import Dataset

from harness.dicomnet import dicomweb as wire
from harness.errors import UsageError
from harness.reference.dicom_node import SCREENING_VIEWS, _view, score_and_report
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

    # ---------------------------------------------------------------- one poll

    def _json(self, path: str, **params: str) -> list[dict]:
        resp = self._http.get(path, params=params, headers={"Accept": wire.DICOM_JSON})
        resp.raise_for_status()
        if resp.status_code == 204 or not resp.content.strip():
            return []
        return list(wire.objects(resp.json(), f"QIDO-RS {path}"))

    def _fetch(self, study: str) -> list[Dataset]:
        images: list[Dataset] = []
        for series in self._json(f"studies/{study}/series", Modality="MG"):
            uid = wire.first_string(series, "0020000E")
            resp = self._http.get(
                f"studies/{study}/series/{uid}", headers={"Accept": wire.RELATED_DICOM}
            )
            resp.raise_for_status()
            for part in wire.decode_related(resp.content, resp.headers["content-type"]):
                images.append(dcmread(BytesIO(part.content)))
        return images

    def poll_once(self) -> None:
        """One QIDO-RS round: score and report every study that is ready."""
        for study in self._json("studies", ModalitiesInStudy="MG"):
            uid = wire.first_string(study, "0020000D")
            if uid is None or uid in self._done:
                continue
            if "SR" in wire.values(study, "00080061"):
                self._done.add(uid)
                continue
            first = self._first_seen.setdefault(uid, time.monotonic())
            images = self._fetch(uid)
            views = {(str(d.get("ImageLaterality", "")), _view(d)) for d in images}
            if not (SCREENING_VIEWS <= views or time.monotonic() - first >= self.idle_s):
                continue
            self._done.add(uid)
            try:
                self._report(images)
            except Exception as exc:  # keep serving other studies; note the failure
                msg = f"study {uid}: {type(exc).__name__}: {exc}"
                log.warning("reference DICOMweb node: %s", msg)
                self.errors.append(msg)

    def _report(self, images: list[Dataset]) -> None:
        if self.fault == "silent":
            return
        reports = score_and_report(self.adapter, images, self.tid1500, self.fault)
        body, ctype = wire.encode_related([wire.part10(r) for r in reports])
        resp = self._http.post(
            "studies", content=body, headers={"Content-Type": ctype, "Accept": wire.DICOM_JSON}
        )
        resp.raise_for_status()
        outcome = wire.stow_outcome(resp.json())
        if outcome.failed:
            raise RuntimeError(f"STOW-RS of the report failed: {outcome.failed}")
        self.reports_sent += len(reports)

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
        self._worker = threading.Thread(target=self._loop, name="dicomweb-node", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
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
    node = ReferenceDicomwebNode(adapter, args.url, tid1500=bool(args.tid1500))
    node.start()
    print(
        f"reference DICOMweb node polling {node.root}, scoring with {pkg.name}; reports are "
        "stored back by STOW-RS; Ctrl-C stops it",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
        adapter.close()
    return 0
