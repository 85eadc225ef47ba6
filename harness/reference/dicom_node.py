"""The reference AI node: a DICOM Storage SCP that scores each received study and returns a
Mammography CAD SR (TID 4000, optionally also a TID 1500 report) by C-STORE.

A study is complete when its four screening views (L/R x CC/MLO) have arrived, or ``idle_s``
after its last image. It is then scored with a vendor adapter (the ONNX reference package in
``mammocert serve-reference dicom``) and the report is sent to ``return_to``:

* ``AE@host:port``  a fixed destination (a PACS, or the harness's results SCP);
* ``AE@:port``      the calling AE's own host, on that port (the usual "results port" setup).

Scores are written in percent (the unit of 111047 *Probability of cancer*), so a DICOM vendor
package for this node declares ``score_range: [0, 100]``. An adapter fault on a study gives a
report whose summary is 111245 *No algorithms succeeded*.

``fault`` makes the node misbehave on purpose, so the harness's fault handling can be tested
against a real network peer: ``silent`` (accepts, never answers), ``abort`` (aborts the
association after the first image), ``malformed`` (returns an SR without content tree),
``wrong-study`` (returns the report under another Study Instance UID), ``partial`` (summary
111244 *Not all algorithms succeeded*).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

from harness.cases.manifest import ImageRef
from harness.codes import VERIFICATION, VIEW_OF_CODE_VALUE
from harness.dicomnet import scu
from harness.dicomnet.sr import MarkOut, ReportContent, write_mammo_cad_sr, write_tid1500_sr
from harness.errors import UsageError, VendorFault
from harness.exam_input import ExamInput
from harness.reference.serving import serve_until_stopped
from harness.vendors.adapter import VendorAdapter

log = logging.getLogger(__name__)

SCREENING_VIEWS = frozenset({("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")})
FAULTS = ("silent", "abort", "malformed", "wrong-study", "partial")
DEFAULT_RESULTS_PORT = 11113
_RETURN = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]*):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class ReturnAddress:
    """Where reports go; an empty host means the calling AE's own host."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ReturnAddress:
        m = _RETURN.match(text.strip())
        if not m or not 0 < int(m["port"]) < 65536:
            raise UsageError(
                f"--return-to {text!r}: expected AE@host:port (or AE@:port for the caller's host)"
            )
        return cls(m["ae"], m["host"], int(m["port"]))


@dataclass
class _Study:
    images: dict[str, Dataset] = field(default_factory=dict)  # SOP UID -> dataset
    calling_ae: str = ""
    peer_host: str = ""
    last: float = field(default_factory=time.monotonic)


def _view(ds: Dataset) -> str:
    vp = str(ds.get("ViewPosition", "")).upper()
    if vp in ("CC", "MLO"):
        return vp
    for item in ds.get("ViewCodeSequence", []):
        view = VIEW_OF_CODE_VALUE.get(str(item.get("CodeValue", "")))
        if view:
            return view
    return ""


def score_study(
    adapter: VendorAdapter, images: list[Dataset], complete: bool = True
) -> ReportContent:
    """What the node concludes about one study's images, in percent (the unit of 111047)."""
    refs = [
        (
            ImageRef(
                str(ds.SOPInstanceUID), str(ds.get("ImageLaterality", "")), _view(ds), "0" * 64
            ),
            ds,
        )
        for ds in images
    ]
    try:
        out = adapter.infer(adapter.prepare(ExamInput("study", tuple(refs))))
    except VendorFault as exc:
        log.warning("reference node: model fault: %s", exc.reason)
        return ReportContent(exam_score=None, breasts={}, complete=False)
    marks: dict[str, list[MarkOut]] = {}
    for f in out.findings:
        marks.setdefault(f.laterality, []).append(MarkOut(f.file, f.x, f.y, 100.0 * f.score))
    breasts = {k: 100.0 * v for k, v in out.breasts.items()}
    return ReportContent(100.0 * out.score, breasts, marks, complete=complete)


def score_and_report(
    adapter: VendorAdapter, images: list[Dataset], tid1500: bool, fault: str | None
) -> list[Dataset]:
    """Score one study and write its report(s): the CAD SR, and a TID 1500 report if asked;
    ``fault`` (one of :data:`FAULTS` other than the transport ones) spoils them on purpose."""
    images = sorted(images, key=lambda d: (str(d.get("ImageLaterality", "")), _view(d)))
    content = score_study(adapter, images, complete=fault != "partial")
    reports = [write_mammo_cad_sr(images, content)]
    if tid1500 and content.exam_score is not None:
        reports.append(write_tid1500_sr(images, content))
    if fault == "malformed":
        for r in reports:
            del r.ContentSequence
    if fault == "wrong-study":
        other = generate_uid()
        for r in reports:
            r.StudyInstanceUID = other
            r.CurrentRequestedProcedureEvidenceSequence[0].StudyInstanceUID = other
    return reports


class ReferenceDicomNode:
    """The reference node; ``start()``/``stop()`` it (or use it as a context manager)."""

    def __init__(
        self,
        adapter: VendorAdapter,
        port: int,
        ae_title: str = "MAMMOCERT_REF",
        return_to: ReturnAddress | str | None = None,
        tid1500: bool = False,
        *,
        host: str = "127.0.0.1",
        idle_s: float = 2.0,
        fault: str | None = None,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault {fault!r}: use one of {', '.join(FAULTS)}")
        self.adapter = adapter
        self.port = port
        self.host = host
        self.ae_title = ae_title
        if isinstance(return_to, str):
            return_to = ReturnAddress.parse(return_to)
        self.return_to = return_to
        self.tid1500 = tid1500
        self.idle_s = idle_s
        self.fault = fault
        self.reports_sent = 0
        self.errors: list[str] = []
        self._studies: dict[str, _Study] = {}
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._stopping = False
        self._server = None
        self._worker: threading.Thread | None = None
        ae = AE(ae_title=ae_title)
        ae.maximum_pdu_size = 0
        ae.network_timeout = 120
        ae.dimse_timeout = 120
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(VERIFICATION)
        self._ae = ae

    # ---------------------------------------------------------------- receiving

    def _on_store(self, event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        study_uid = str(ds.get("StudyInstanceUID", ""))
        if not study_uid:
            return 0xC000
        with self._work:
            st = self._studies.setdefault(study_uid, _Study())
            st.images[str(ds.SOPInstanceUID)] = ds
            st.calling_ae = str(event.assoc.requestor.ae_title).strip()
            st.peer_host = str(event.assoc.requestor.address)
            st.last = time.monotonic()
            self._work.notify_all()
            n = len(st.images)
        if self.fault == "abort" and n == 1:
            event.assoc.abort()  # mid-association, before answering the first C-STORE
        return 0x0000

    def _take_ready(self) -> tuple[str, _Study] | None:
        now = time.monotonic()
        for uid, st in self._studies.items():
            views = {(str(d.get("ImageLaterality", "")), _view(d)) for d in st.images.values()}
            if SCREENING_VIEWS <= views or now - st.last >= self.idle_s:
                return uid, self._studies.pop(uid)
        return None

    def _loop(self) -> None:
        while True:
            with self._work:
                ready = self._take_ready()
                while ready is None and not self._stopping:
                    self._work.wait(timeout=min(0.2, self.idle_s))
                    ready = self._take_ready()
                if ready is None:
                    return
            try:
                self._process(*ready)
            except Exception as exc:  # keep serving other studies; note the failure
                msg = f"study {ready[0]}: {type(exc).__name__}: {exc}"
                log.warning("reference node: %s", msg)
                self.errors.append(msg)

    # ---------------------------------------------------------------- scoring and reporting

    def _process(self, study_uid: str, st: _Study) -> None:
        if self.fault == "silent":
            return
        reports = score_and_report(self.adapter, list(st.images.values()), self.tid1500, self.fault)
        dest = self._destination(st)
        scu.send_study(dest, self.ae_title, reports, timeout_s=60.0)
        self.reports_sent += len(reports)

    def _destination(self, st: _Study) -> scu.Peer:
        if self.return_to is None:
            return scu.Peer(st.calling_ae, st.peer_host, DEFAULT_RESULTS_PORT)
        return scu.Peer(
            self.return_to.ae_title, self.return_to.host or st.peer_host, self.return_to.port
        )

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ReferenceDicomNode:
        self._stopping = False
        self._server = self._ae.start_server(
            (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )
        self.port = int(self._server.server_address[1])
        self._worker = threading.Thread(target=self._loop, name="reference-node", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        with self._work:
            self._stopping = True
            self._work.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None
        self._ae.shutdown()

    def __enter__(self) -> ReferenceDicomNode:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_cli(args: Any) -> int:
    """``mammocert serve-reference dicom --vendor PKG --port N [--ae-title T --return-to AE@host:port --tid1500]``."""
    from harness.vendors import load_vendor_package, open_adapter

    pkg = load_vendor_package(args.vendor)
    if pkg.interface != "onnx":
        raise UsageError(
            f"--vendor {args.vendor}: the reference node scores with an ONNX package, not interface {pkg.interface!r}"
        )
    return_to = ReturnAddress.parse(args.return_to) if args.return_to else None
    adapter = open_adapter(pkg, "cpu")
    node = ReferenceDicomNode(adapter, int(args.port), args.ae_title, return_to, bool(args.tid1500))
    try:
        node.start()
    except OSError as exc:
        adapter.close()
        raise UsageError(
            f"--port {args.port}: cannot listen ({exc.strerror or exc}); choose a free port"
        ) from None
    dest = (
        str(return_to.ae_title + "@" + (return_to.host or "<caller>") + f":{return_to.port}")
        if return_to
        else f"<caller AE>@<caller host>:{DEFAULT_RESULTS_PORT}"
    )
    print(
        f"reference DICOM node {args.ae_title} on 127.0.0.1:{node.port}, scoring with {pkg.name}; "
        f"reports go to {dest}; Ctrl-C stops it",
        flush=True,
    )
    return serve_until_stopped(node, adapter)
