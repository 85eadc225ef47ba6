"""The ``dicomweb`` REST profile (docs/contracts.md §3.2): a vendor AI node attached to a
DICOMweb service (a PACS or the vendor's own archive), as IHE AIW-I's storage and retrieval
transactions (RAD-108 STOW-RS, RAD-107 WADO-RS) use it.

* Before the run: a harmless QIDO-RS search (``GET {root}/studies?limit=1``), and with
  ``workitem`` a UPS-RS search (``GET {task manager}/workitems?limit=1``); a service that does
  not answer sets ``down_reason`` and every exam is an error with it.
* ``prepare``: the exam is pseudonymised (fresh UIDs for this send,
  :func:`harness.vendors.remote.pseudonymise`) and written as one STOW-RS body, one Part-10
  instance per part.
* ``infer``: ``POST {root}/studies``. 200 with every sent instance in the Referenced SOP
  Sequence is success; 202 (some stored) and 409 (none) are faults naming each failed instance
  and its Failure Reason, as is a 200 that leaves an instance out. Then QIDO-RS
  ``GET {root}/studies/{study}/series?Modality=SR`` every ``poll_interval_s`` until the exam's
  deadline, for series the harness did not send; each new series is fetched with WADO-RS
  (multipart/related of Part-10 instances), kept in the evidence directory and listed in
  ``evidence.jsonl``. The report of the configured format decides
  (:class:`harness.vendors.sr_results.SrResults`, the same mapping as the ``dicom``
  interface). Two such reports in one QIDO-RS answer are a fault (which one counts is not
  ours to guess); a report stored after the one that decided is not looked for.
* ``workitem: true`` (IHE AIW-I): after the STOW, a UPS workitem naming the stored study as
  input (Input Information Sequence, WADO-RS Retrieve URL) and this service as the STOW-RS
  output destination is created at ``{task_manager_url or root}/workitems`` ([RAD-80],
  201 Created expected); the result is then found by QIDO-RS as above.
"""

from __future__ import annotations

import datetime
import json
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom.uid import generate_uid

from harness.dicomnet import dicomweb as wire
from harness.dicomnet.scp import ReceivedObject, read_received
from harness.errors import VendorFault, VendorPackageError
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.vendors import remote
from harness.vendors.package import VendorPackage
from harness.vendors.rest.transport import RestClient
from harness.vendors.sr_results import EvidenceIndex, SrResults

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class PreparedStow:
    """One exam ready to STOW: the pseudonymised exam and the multipart body."""

    sent: remote.OutgoingExam
    body: bytes
    content_type: str


class DicomwebProfile:
    """STOW-RS the exam, QIDO-RS/WADO-RS the result report (see the module docstring)."""

    def __init__(self, pkg: VendorPackage, client: RestClient, evidence_dir: Path) -> None:
        assert pkg.rest is not None
        spec = pkg.rest.dicomweb
        if spec is None:
            raise VendorPackageError(
                f"{pkg.source}: rest.protocol dicomweb needs a 'rest.dicomweb' section with "
                "results.format (see docs/contracts.md §3.2)"
            )
        self.pkg = pkg
        self.client = client
        self.timeout_s = pkg.rest.timeout_s
        self.poll_interval_s = spec.poll_interval_s
        self.results = SrResults.of(
            spec.format, spec.score_code, spec.score_scale or pkg.score_range
        )
        self.evidence = EvidenceIndex(evidence_dir)
        self.workitem = spec.workitem
        self.task_manager = (spec.task_manager_url or pkg.rest.url).rstrip("/")
        self.identity: dict[str, str] = {}
        self.down_reason: str | None = None
        try:
            client.request(
                "GET",
                "studies",
                params={"limit": "1"},
                headers={"Accept": wire.DICOM_JSON},
                deadline=time.monotonic() + PROBE_TIMEOUT_S,
            )
        except VendorFault as exc:
            self.down_reason = f"DICOMweb service not reachable before the run: {exc.reason}"
        if self.workitem and self.down_reason is None:
            try:  # UPS-RS Search Workitems [RAD-81]: is there a Task Manager at all?
                client.request(
                    "GET",
                    f"{self.task_manager}/workitems",
                    params={"limit": "1"},
                    headers={"Accept": wire.DICOM_JSON},
                    deadline=time.monotonic() + PROBE_TIMEOUT_S,
                )
            except VendorFault as exc:
                self.down_reason = f"UPS-RS Task Manager not usable before the run: {exc.reason}"
        if self.down_reason is not None:
            log.warning("%s", self.down_reason)

    # ---------------------------------------------------------------- prepare

    def prepare(self, exam: ExamInput) -> PreparedStow:
        sent = remote.pseudonymise(self.pkg, exam)
        body, ctype = wire.encode_related([wire.part10(ds) for ds in sent.datasets])
        return PreparedStow(sent, body, ctype)

    # ---------------------------------------------------------------- infer

    def infer(self, prepared: PreparedStow, deadline: float) -> ExamOutput:
        sent = prepared.sent
        self._stow(prepared, deadline)
        if self.workitem:
            self._create_workitem(sent, deadline)
        sent_series = {str(ds.SeriesInstanceUID) for ds in sent.datasets}
        fetched: set[str] = set()
        others = 0
        while True:
            objects: list[ReceivedObject] = []
            try:
                found = self._result_series(sent, deadline)
                for series in sorted(set(found) - sent_series - fetched):
                    objects.extend(self._retrieve(sent, series, deadline))
                    fetched.add(series)
            except VendorFault as exc:
                if time.monotonic() < deadline:
                    raise
                # The search itself ran into the deadline: still, no report came in time.
                reason = self.results.no_result_reason(self.timeout_s, others + len(objects))
                raise VendorFault(f"{reason} (last request: {exc.reason})") from None
            reports = self.results.reports(objects)
            if len(reports) > 1:
                raise VendorFault(
                    f"{len(reports)} {self.results.report_name} reports for the exam's study "
                    f"({', '.join(r.sop_instance_uid for r in reports)}); expected one"
                )
            if reports:
                return self.results.output(sent, reports[0])
            others += len(objects)
            if time.monotonic() + self.poll_interval_s >= deadline:
                raise VendorFault(self.results.no_result_reason(self.timeout_s, others))
            time.sleep(self.poll_interval_s)

    def _stow(self, prepared: PreparedStow, deadline: float) -> None:
        sent = prepared.sent
        resp = self.client.request(
            "POST",
            "studies",
            content=prepared.body,
            headers={"Content-Type": prepared.content_type, "Accept": wire.DICOM_JSON},
            deadline=deadline,
            exam_id=sent.exam_id,
            ok=(409,),
        )
        what = f"STOW-RS of exam {sent.exam_id} (HTTP {resp.status_code})"
        try:
            outcome = wire.stow_outcome(self.client.json(resp, what))
        except wire.DicomwebError as exc:
            raise VendorFault(f"{what}: {exc}") from None
        wanted = {str(ds.SOPInstanceUID) for ds in sent.datasets}
        missing = sorted(wanted - set(outcome.stored) - {uid for uid, _ in outcome.failed})
        if outcome.failed or missing or resp.status_code != 200:
            lost = [f"{self._name(sent, uid)}: {why}" for uid, why in outcome.failed]
            lost += [f"{self._name(sent, uid)}: not in the response" for uid in missing]
            verdict = {202: "some instances not stored", 409: "no instance stored"}.get(
                resp.status_code, "not every instance stored"
            )
            raise VendorFault(
                f"{what}: {verdict} ({'; '.join(lost) or 'no failed instance named'})"
            )

    def _create_workitem(self, sent: remote.OutgoingExam, deadline: float) -> None:
        """IHE AIW-I Create UPS Workitem [RAD-80]: the stored study as input (WADO-RS Retrieve
        URL), results wanted back in the same service (STOW-RS Storage URL)."""
        uid = generate_uid()
        now = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S+0000")
        ups = wire.ups_workitem(
            sent.datasets,
            self.client.url(f"studies/{sent.study_uid}"),
            self.client.url("studies"),
            f"mammography AI {sent.study_uid}",
            now,
        )
        resp = self.client.request(
            "POST",
            f"{self.task_manager}/workitems",
            params={"workitem": uid},
            content=json.dumps([ups.to_json_dict()]).encode("utf-8"),
            headers={"Content-Type": wire.DICOM_JSON, "Accept": wire.DICOM_JSON},
            deadline=deadline,
            exam_id=sent.exam_id,
        )
        if resp.status_code != 201:
            raise VendorFault(
                f"UPS-RS create workitem of exam {sent.exam_id}: HTTP {resp.status_code}, "
                "expected 201 Created"
            )

    @staticmethod
    def _name(sent: remote.OutgoingExam, uid: str) -> str:
        image = sent.reidentify(uid)
        return f"{image.file} ({uid})" if image is not None else uid

    def _result_series(self, sent: remote.OutgoingExam, deadline: float) -> list[str]:
        """Series UIDs of the study's SR series, by QIDO-RS."""
        resp = self.client.request(
            "GET",
            f"studies/{sent.study_uid}/series",
            params={"Modality": "SR"},
            headers={"Accept": wire.DICOM_JSON},
            deadline=deadline,
            exam_id=sent.exam_id,
        )
        if resp.status_code == 204 or not resp.content.strip():
            return []
        what = f"QIDO-RS of exam {sent.exam_id}'s result series"
        try:
            found = wire.objects(self.client.json(resp, what), what)
            uids = [wire.first_string(s, "0020000E") for s in found]
        except wire.DicomwebError as exc:
            raise VendorFault(f"{what}: {exc}") from None
        if any(u is None for u in uids):
            raise VendorFault(f"{what}: a series without Series Instance UID (0020000E)")
        return [u for u in uids if u is not None]

    def _retrieve(
        self, sent: remote.OutgoingExam, series: str, deadline: float
    ) -> list[ReceivedObject]:
        """WADO-RS one result series; every instance kept in the evidence directory."""
        path = f"studies/{sent.study_uid}/series/{series}"
        resp = self.client.request(
            "GET",
            path,
            headers={"Accept": wire.RELATED_DICOM_AS_STORED},
            deadline=deadline,
            exam_id=sent.exam_id,
        )
        what = f"WADO-RS of result series {series}"
        try:
            parts = wire.decode_related(resp.content, resp.headers.get("content-type", ""))
        except wire.DicomwebError as exc:
            raise VendorFault(f"{what}: {exc}") from None
        got: list[ReceivedObject] = []
        source = self.client.url(path)
        staging = self.evidence.dir / "incoming"
        staging.mkdir(parents=True, exist_ok=True)
        for k, part in enumerate(parts, 1):
            with tempfile.NamedTemporaryFile(dir=staging, suffix=".dcm", delete=False) as fh:
                fh.write(part.content)
                tmp = Path(fh.name)
            ptype = part.headers.get("content-type", wire.DICOM)
            try:
                obj = read_received(tmp)
            except Exception:  # kept as evidence below, then a fault
                obj = ReceivedObject(tmp, "", "", "", series, "", "", "")
            if wire.media_type(ptype)[0] != wire.DICOM or not obj.sop_instance_uid:
                self.evidence.record(obj, sent.exam_id, "unreadable", source)
                raise VendorFault(f"{what}: part {k} ({ptype}) is not a DICOM instance")
            named = staging / f"{obj.sop_instance_uid}.dcm"
            if not named.exists():
                obj = replace(obj, path=tmp.rename(named))
            dest = self.evidence.record(obj, sent.exam_id, "received", source)
            got.append(replace(obj, path=dest))
        return got

    def close(self) -> None:
        pass
