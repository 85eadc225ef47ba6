"""The DICOM adapter: a vendor's AI node tested over the network, directly or through a PACS.

Direct mode (``dicom.results.from: push``, the default): the harness is a Storage SCU that sends
each exam on one association to the node, and a Storage SCP (AE ``calling_ae_title``, port
``results.listen_port``) that receives the node's result objects. Results are matched to exams
by the Study Instance UID the harness gave the exam for this send.

PACS mode (``from: pacs``): the harness stores the exam in the region's PACS, the PACS's own
routing forwards it to the node, the node stores its results in the PACS, and the harness polls
the PACS (C-FIND of the study's series) and retrieves the new series (C-GET).

Before anything is sent: :func:`harness.vendors.open_adapter` runs the de-identification gate
over the set (:func:`harness.vendors.remote.refuse_identifiable`), and ``prepare`` pseudonymises
each exam as it will be sent (:func:`harness.vendors.remote.pseudonymise`: the same check on the
exam, then fresh UIDs and pseudonyms per send); ``dicom.allow_identifiable: true`` lifts the
check for a local, in-hospital endpoint.

Results: the first structured report of the configured format (``mammography-cad-sr`` = TID
4000, ``tid1500-sr``) for the exam's study decides; :class:`harness.vendors.sr_results.SrResults`
maps it to predictions (the same mapping as the ``dicomweb`` REST profile), with the score NUM
``results.score`` (default 111047 DCM *Probability of cancer*) on ``results.score.scale`` if
given, else the package's ``score_range``. Every received object is kept in the evidence
directory (``exams/<exam_id>/`` or ``unmatched/``) and listed in ``evidence.jsonl``
(:class:`~harness.vendors.sr_results.EvidenceIndex`).

Per-exam faults (:class:`VendorFault`, recorded by the runner): node down at C-ECHO before the
run (every exam ``error`` with that reason), association rejected/aborted/refused, no results
before the timeout, a malformed or foreign report, a report that references images the harness
did not send, and a report saying not every algorithm succeeded. Results for a study the harness
is not waiting for are logged and kept in ``unmatched/``; they never match an exam.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.dicomnet import pacs, scu
from harness.dicomnet.scp import ReceivedObject, StorageSCP
from harness.dicomnet.sr import ParsedReport
from harness.errors import UsageError, VendorFault, VendorPackageError
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.vendors import remote
from harness.vendors.adapter import AdapterInfo
from harness.vendors.package import VendorPackage
from harness.vendors.sr_results import EvidenceIndex, SrResults

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.25
ECHO_TIMEOUT_S = 10.0


PreparedSend = remote.OutgoingExam  # an exam ready to go and the way back to the manifest


@dataclass
class _Waiter:
    """Results of one in-flight exam, filled by the SCP thread."""

    exam_id: str
    objects: list[ReceivedObject] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)


class DicomAdapter:
    """A vendor AI node behind DICOM (see module docstring); ``close()`` stops the results SCP."""

    def __init__(
        self, pkg: VendorPackage, *, device: str = "cpu", evidence_dir: Path | str | None = None
    ) -> None:
        if pkg.dicom is None:
            raise VendorPackageError(
                f"{pkg.source}: interface dicom needs a 'dicom' section (see docs/contracts.md §3.2)"
            )
        self.pkg = pkg
        self.spec = pkg.dicom
        results = self.spec.results
        self.mode = results.source
        self.results = SrResults.of(
            results.format, results.score_code, results.score_scale or pkg.score_range
        )
        self.node = scu.Peer(self.spec.ae_title, self.spec.host, self.spec.port)
        self.calling_ae = self.spec.calling_ae_title
        self.timeout_s = float(self.spec.timeout_s)
        self.pacs = (
            scu.Peer(results.pacs.ae_title, results.pacs.host, results.pacs.port)
            if results.pacs is not None
            else None
        )
        if evidence_dir is None:
            evidence_dir = tempfile.mkdtemp(prefix="mammocert-dicom-evidence-")
        self.evidence_dir = Path(evidence_dir)
        self._index = EvidenceIndex(self.evidence_dir)
        self._waiters: dict[str, _Waiter] = {}
        self._finished: dict[
            str, str
        ] = {}  # study UID -> exam id, for objects that arrive after the decision
        self._lock = threading.Lock()
        self.info = AdapterInfo(
            interface="dicom",
            model_digests=dict(pkg.model_digests),
            execution_provider=f"dicom {self.node}"
            + (f" via PACS {self.pacs}" if self.pacs else ""),
        )
        self._scp: StorageSCP | None = None
        if self.mode == "push":
            if results.listen_port is None:
                raise VendorPackageError(
                    f"{pkg.source}: dicom.results.listen_port is required when results are pushed"
                )
            try:
                self._scp = StorageSCP(
                    self.calling_ae,
                    int(results.listen_port),
                    self.evidence_dir / "incoming",
                    self._on_object,
                ).start()
            except OSError as exc:
                raise UsageError(
                    f"{pkg.source}: dicom.results.listen_port {results.listen_port}: cannot listen "
                    f"({exc.strerror or exc}); choose a free port"
                ) from None
        # C-ECHO before the run: a node (or PACS) that is down makes every exam an error record.
        target = self.pacs if self.mode == "pacs" else self.node
        self.down_reason: str | None = None
        try:
            scu.echo(target, self.calling_ae, ECHO_TIMEOUT_S)
        except scu.AssociationFailure as exc:
            self.down_reason = f"{'PACS' if self.mode == 'pacs' else 'node'} not reachable before the run: {exc.reason}"
            log.warning("%s", self.down_reason)

    # ---------------------------------------------------------------- prepare

    def prepare(self, exam: ExamInput) -> PreparedSend:
        """Refuse identifiable data (exit 2), then pseudonymise (fresh UIDs for this send)."""
        return remote.pseudonymise(self.pkg, exam)

    # ---------------------------------------------------------------- results bookkeeping

    def _record(self, obj: ReceivedObject, exam_id: str | None, role: str) -> Path:
        """Move a received object into the evidence tree and list it in evidence.jsonl."""
        return self._index.record(obj, exam_id, role)

    def _on_object(self, obj: ReceivedObject) -> None:
        with self._lock:
            waiter = self._waiters.get(obj.study_uid)
        if waiter is None and obj.study_uid in self._finished:
            self._record(
                obj, self._finished[obj.study_uid], "late"
            )  # e.g. a TID 1500 after the CAD SR
            return
        if waiter is None:
            log.warning(
                "result object %s for unknown study %s from %s ignored (kept in unmatched/)",
                obj.sop_instance_uid,
                obj.study_uid,
                obj.calling_ae or obj.peer_host,
            )
            self._record(obj, None, "unmatched")
            return
        dest = self._record(obj, waiter.exam_id, "received")
        with waiter.cond:
            waiter.objects.append(replace(obj, path=dest))
            waiter.cond.notify_all()

    def evidence(self, exam_id: str) -> list[dict]:
        """The evidence.jsonl entries of one exam (result reports and every other object)."""
        return self._index.entries(exam_id)

    def _decide(self, objects: list[ReceivedObject], seen: int) -> ParsedReport | None:
        """Parse newly arrived SRs; the first report of the configured template decides."""
        reports = self.results.reports(objects[seen:])
        return reports[0] if reports else None

    # ---------------------------------------------------------------- infer

    def infer(self, prepared: PreparedSend) -> ExamOutput:
        """Send the exam and wait for its results; every failure is a VendorFault."""
        if self.down_reason is not None:
            raise VendorFault(self.down_reason)
        if self.mode == "pacs":
            return self._infer_pacs(prepared)
        return self._infer_push(prepared)

    def _infer_push(self, prepared: PreparedSend) -> ExamOutput:
        study = prepared.study_uid
        waiter = _Waiter(prepared.exam_id)
        with self._lock:
            self._waiters[study] = waiter
        deadline = remote.exam_deadline(self.timeout_s)
        try:
            try:
                scu.send_study(
                    self.node,
                    self.calling_ae,
                    list(prepared.datasets),
                    timeout_s=self.timeout_s,
                )
            except scu.AssociationFailure as exc:
                raise VendorFault(exc.reason) from None
            seen = 0
            while True:
                with waiter.cond:
                    remaining = deadline - time.monotonic()
                    if len(waiter.objects) == seen and remaining > 0:
                        waiter.cond.wait(timeout=remaining)
                    objects = list(waiter.objects)
                report = self._decide(objects, seen)
                seen = len(objects)
                if report is not None:
                    return self.results.output(prepared, report)
                if time.monotonic() >= deadline:
                    raise VendorFault(self._no_result_reason(objects))
        finally:
            with self._lock:
                self._waiters.pop(study, None)
                self._finished[study] = prepared.exam_id

    def _infer_pacs(self, prepared: PreparedSend) -> ExamOutput:
        assert self.pacs is not None
        study = prepared.study_uid
        deadline = remote.exam_deadline(self.timeout_s)
        try:
            scu.send_study(
                self.pacs, self.calling_ae, list(prepared.datasets), timeout_s=self.timeout_s
            )
        except scu.AssociationFailure as exc:
            raise VendorFault(f"storing the exam in the PACS failed: {exc.reason}") from None
        sent_series = {str(ds.SeriesInstanceUID) for ds in prepared.datasets}
        fetched: set[str] = set()
        objects: list[ReceivedObject] = []
        seen = 0
        staging = self.evidence_dir / "incoming"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VendorFault(self._no_result_reason(objects))
            try:
                series = pacs.find_series(
                    self.pacs, self.calling_ae, study, timeout_s=max(1.0, remaining)
                )
                new = [s.series_uid for s in series if s.series_uid not in sent_series | fetched]
                if new:
                    got = pacs.get_series(
                        self.pacs,
                        self.calling_ae,
                        study,
                        new,
                        staging,
                        timeout_s=max(1.0, remaining),
                    )
                    fetched.update(new)
                    for obj in got:
                        dest = self._record(obj, prepared.exam_id, "received")
                        objects.append(replace(obj, path=dest))
            except scu.AssociationFailure as exc:
                raise VendorFault(
                    f"retrieving results from the PACS failed: {exc.reason}"
                ) from None
            report = self._decide(objects, seen)
            seen = len(objects)
            if report is not None:
                return self.results.output(prepared, report)
            time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))

    def _no_result_reason(self, objects: list[ReceivedObject]) -> str:
        return self.results.no_result_reason(self.timeout_s, len(objects))

    def close(self) -> None:
        if self._scp is not None:
            self._scp.stop()
            self._scp = None
