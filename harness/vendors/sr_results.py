"""Result reports to predictions, shared by every interface that receives a vendor's DICOM SR
(``dicom`` by C-STORE or from a PACS, ``rest`` ``dicomweb`` by WADO-RS).

:class:`SrResults` picks the report of the configured format among received objects and maps it
to an :class:`~harness.predictions.ExamOutput` (docs/contracts.md §3.2): scores are the NUMs
coded ``score_code``, mapped linearly onto [0, 1] from ``scale`` (never clipped);

* exam score: the report's exam-level NUM, else the maximum breast score;
* breast score: the maximum Composite Feature / breast-level score of that side, else the
  maximum finding score of that side; a breast that was imaged and has no finding in a complete
  report scores the bottom of the range;
* findings: every mark of a scored finding, mapped to the manifest file through the sent SOP
  Instance UID (:meth:`harness.vendors.remote.OutgoingExam.reidentify`); (x, y) are the SCOORD
  column/row (an outline's mean vertex).

:class:`EvidenceIndex` keeps every received object under ``exams/<exam_id>/`` (or
``unmatched/``) of the evidence directory and lists it in ``evidence.jsonl``.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from harness.dicomnet.scp import ReceivedObject
from harness.dicomnet.sr import SR_SOP_CLASSES, ParsedReport, SrError, parse_report
from harness.errors import VendorFault
from harness.predictions import ExamOutput, Finding
from harness.vendors.remote import OutgoingExam

TEMPLATE_OF_FORMAT = {"mammography-cad-sr": "4000", "tid1500-sr": "1500"}
REPORT_NAME = {"4000": "Mammography CAD SR (TID 4000)", "1500": "TID 1500 measurement report"}


@dataclass(frozen=True)
class SrResults:
    """Which report decides (``template`` "4000" | "1500", the score NUM's code) and its scale."""

    template: str
    score_code: tuple[str, str]
    scale: tuple[float, float]

    @classmethod
    def of(cls, fmt: str, score_code: tuple[str, str], scale: tuple[float, float]) -> SrResults:
        return cls(TEMPLATE_OF_FORMAT[fmt], score_code, scale)

    @property
    def report_name(self) -> str:
        return REPORT_NAME[self.template]

    def reports(self, objects: Sequence[ReceivedObject]) -> list[ParsedReport]:
        """Every report of the configured template among ``objects``, in order; objects that
        are not SRs (secondary captures, presentation states, PDFs) are evidence only.

        A malformed, foreign or unreadable SR is a ``VendorFault``."""
        found: list[ParsedReport] = []
        for obj in objects:
            if obj.sop_class_uid not in SR_SOP_CLASSES:
                continue
            try:
                report = parse_report(dcmread(obj.path), self.score_code)
            except SrError as exc:
                raise VendorFault(
                    f"malformed or foreign result report {obj.path.name}: {exc}"
                ) from None
            except Exception as exc:  # unreadable DICOM
                raise VendorFault(
                    f"unreadable result object {obj.path.name}: {type(exc).__name__}: {exc}"
                ) from None
            if report.template == self.template:
                found.append(report)
        return found

    def no_result_reason(self, timeout_s: float, others: int) -> str:
        extra = f" ({others} other object(s) received)" if others else ""
        return f"no {self.report_name} within the timeout of {timeout_s:g}s{extra}"

    def _map(self, raw: float) -> float:
        lo, hi = self.scale
        return (float(raw) - lo) / (hi - lo)

    def output(self, sent: OutgoingExam, report: ParsedReport) -> ExamOutput:
        """The predictions of one report about the exam ``sent`` (see the module docstring)."""
        if not report.complete:
            raise VendorFault(f"node reports not all algorithms succeeded ({report.summary})")
        sent_lats = {im.laterality for im in sent.images.values()}
        findings: list[Finding] = []
        breast_level: dict[str, list[float]] = {}
        finding_level: dict[str, list[float]] = {}

        def side_of(idx: int) -> str | None:
            les = report.lesions[idx]
            for m in les.marks:
                image = sent.reidentify(m.sop_instance_uid)
                if image is not None:
                    return image.laterality
            if les.laterality:
                return les.laterality
            for m in les.marks:
                if report.image_laterality.get(m.sop_instance_uid):
                    return report.image_laterality[m.sop_instance_uid]
            for c in (i for i, child in enumerate(report.lesions) if child.parent == idx):
                s = side_of(c)
                if s:
                    return s
            return None

        for idx, les in enumerate(report.lesions):
            for m in les.marks:
                if sent.reidentify(m.sop_instance_uid) is None:
                    raise VendorFault(
                        f"result report marks image {m.sop_instance_uid}, which the harness did "
                        "not send in this study"
                    )
            score = les.score
            if score is None and les.parent is not None:
                score = report.lesions[les.parent].score
            if score is None:
                continue
            side = side_of(idx)
            # A lesion with marks is a finding; one without marks but with a side scores a breast.
            if les.marks:
                if side:
                    finding_level.setdefault(side, []).append(score)
                for m in les.marks:
                    file, lat, view = sent.images[m.sop_instance_uid]
                    findings.append(
                        Finding(lat, view, file, float(m.x), float(m.y), self._map(score))
                    )
            elif side:
                breast_level.setdefault(side, []).append(score)
        breasts: dict[str, float] = {}
        for side in sorted(set(breast_level) | set(finding_level) | sent_lats):
            if side in breast_level:
                breasts[side] = self._map(max(breast_level[side]))
            elif side in finding_level:
                breasts[side] = self._map(max(finding_level[side]))
            else:
                breasts[side] = self._map(self.scale[0])
        if report.exam_score is not None:
            exam = self._map(report.exam_score)
        elif breasts:
            exam = max(breasts.values())
        else:
            raise VendorFault("result report carries no score for the exam or any breast")
        findings.sort(key=lambda f: (f.file, -f.score, f.x, f.y))
        return ExamOutput(score=exam, breasts=breasts, findings=tuple(findings))


class EvidenceIndex:
    """The evidence directory of received objects and its ``evidence.jsonl`` (thread-safe)."""

    def __init__(self, evidence_dir: Path) -> None:
        self.dir = evidence_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(
        self, obj: ReceivedObject, exam_id: str | None, role: str, source: str | None = None
    ) -> Path:
        """Move a received object into ``exams/<exam_id>/`` (or ``unmatched/``) and list it;
        ``source`` is where it came from (default: the sender's AE title)."""
        sub = self.dir / ("exams/" + exam_id if exam_id else "unmatched")
        sub.mkdir(parents=True, exist_ok=True)
        dest = sub / obj.path.name
        if obj.path != dest:
            shutil.move(obj.path, dest)
        entry = {
            "exam_id": exam_id,
            "role": role,
            "file": dest.relative_to(self.dir).as_posix(),
            "sop_class_uid": obj.sop_class_uid,
            "sop_instance_uid": obj.sop_instance_uid,
            "study_uid": obj.study_uid,
            "modality": obj.modality,
            "from": obj.calling_ae if source is None else source,
        }
        with self._lock, open(self.dir / "evidence.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
        return dest

    def entries(self, exam_id: str) -> list[dict]:
        """The evidence.jsonl entries of one exam (result reports and every other object)."""
        path = self.dir / "evidence.jsonl"
        if not path.is_file():
            return []
        with self._lock:
            lines = path.read_text(encoding="utf-8").splitlines()
        return [e for e in map(json.loads, lines) if e.get("exam_id") == exam_id]
