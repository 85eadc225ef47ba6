"""The ``json-job`` REST profile: a vendor's own JSON API (docs/contracts.md §3.2, "json-job").

Upload (``rest.json_job.submit``): the exam, pseudonymised for this send
(:func:`harness.vendors.remote.pseudonymise`), goes to ``POST {url}{submit.path}`` as

* ``multipart``: ``multipart/form-data`` with a JSON part ``exam``
  (``{"study_instance_uid", "exam_key"}``) and one ``dicom`` part per instance
  (``application/dicom``, Part-10, file name ``<SOP Instance UID>.dcm``);
* ``json``: ``{"exam": {...}, "dicom": ["<base64 Part-10>", ...]}``.

``exam_key`` is the per-send patient pseudonym, never the manifest's exam id.

Answer: a 2xx with a JSON body is a result unless the ``state`` expression says it is pending;
a ``202`` must carry a ``Location`` (same origin as ``url``) to poll. Polling waits
``poll_interval_s``, or the ``Retry-After`` the endpoint gives, and never past the exam's
deadline; a poll answered ``202``, or ``200`` with a pending state (the Qure-style "still
processing" body), keeps polling; a ``303`` is followed to the result. A state in ``failed`` is
an error, one in ``rejected`` a rejection, any other state the finished result.

The final answer is kept in the evidence as ``results/<sha256>.json`` (``attempts.jsonl``
names its exam).

Mapping (``rest.json_job.result``, JMESPath): the exam score, breast scores (``L``/``R``),
findings (a list expression and per-finding expressions; a finding cites the SOP Instance UID
this send gave the image, mapped back with :meth:`~harness.vendors.remote.OutgoingExam.reidentify`)
and the echoed Study Instance UID, which must be the one sent. Scores are on the vendor's scale
(``score_range``), kept as they came in the prediction's ``native`` record and mapped linearly
onto [0, 1] (:meth:`~harness.vendors.package.VendorPackage.map_score`). A score that is not a
finite number or lies outside ``score_range``, a finding without a usable image, position or
score, a mark outside its image, a side that is not the cited image's side, and a foreign Study
Instance UID are faults naming the field.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import jmespath
from pydicom import dcmwrite

from harness.errors import VendorFault
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput, Finding, Native
from harness.vendors import remote
from harness.vendors.package import JsonJobResultSpec, JsonJobSpec, VendorPackage
from harness.vendors.rest.transport import RestClient, retry_after_s

SIDES = ("L", "R")


@dataclass(frozen=True)
class PreparedUpload:
    """One exam ready to send: the request body, and the way back to the manifest."""

    outgoing: remote.OutgoingExam
    exam_key: str
    parts: tuple[tuple[str, bytes], ...]  # (sent SOP Instance UID, Part-10 bytes)
    sizes: Mapping[str, tuple[int, int]]  # sent SOP Instance UID -> (rows, columns)

    def request_kwargs(self, body: str) -> dict[str, Any]:
        """httpx keyword arguments for the upload in the ``submit.body`` form."""
        exam = {"study_instance_uid": self.outgoing.study_uid, "exam_key": self.exam_key}
        if body == "json":
            blobs = [base64.b64encode(data).decode("ascii") for _, data in self.parts]
            return {"json": {"exam": exam, "dicom": blobs}}
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("exam", ("exam.json", json.dumps(exam).encode("utf-8"), "application/json"))
        ]
        files += [("dicom", (f"{uid}.dcm", data, "application/dicom")) for uid, data in self.parts]
        return {"files": files}


def _part10(ds: Any) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


class JsonJobProfile:
    """The ``json-job`` profile (see the module docstring)."""

    def __init__(self, pkg: VendorPackage, client: RestClient, evidence_dir: Path) -> None:
        assert pkg.rest is not None
        spec = pkg.rest.json_job
        if spec is None:  # the schema requires it for json-job; a direct caller may not
            raise VendorFault("rest.json_job is missing")
        self.pkg = pkg
        self.spec: JsonJobSpec = spec
        self.client = client
        self.evidence_dir = evidence_dir
        self.timeout_s = pkg.rest.timeout_s
        self.down_reason: str | None = None
        self.identity: Mapping[str, str] = {}
        r = spec.result
        self._expr = {
            key: jmespath.compile(value)
            for key, value in (
                ("state", r.state),
                ("exam_score", r.exam_score),
                ("study_uid", r.study_uid),
                ("findings", r.findings),
            )
            if value is not None
        }
        self._breast_expr = {side: jmespath.compile(e) for side, e in r.breast_scores.items()}
        f = r.finding
        self._finding_expr = (
            {
                key: jmespath.compile(value)
                for key, value in (
                    ("sop_instance_uid", f.sop_instance_uid),
                    ("x", f.x),
                    ("y", f.y),
                    ("score", f.score),
                    ("laterality", f.laterality),
                )
                if value is not None
            }
            if f is not None
            else {}
        )
        self._origin = _origin(client.base_url)

    # ------------------------------------------------------------------ sending

    def prepare(self, exam: ExamInput) -> PreparedUpload:
        outgoing = remote.pseudonymise(self.pkg, exam)
        parts = tuple((str(ds.SOPInstanceUID), _part10(ds)) for ds in outgoing.datasets)
        sizes = {
            str(ds.SOPInstanceUID): (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)))
            for ds in outgoing.datasets
        }
        # The per-send patient pseudonym: lets the vendor group what it receives, names nothing.
        key = str(outgoing.datasets[0].PatientID) if outgoing.datasets else outgoing.study_uid
        return PreparedUpload(outgoing, key, parts, sizes)

    def infer(self, prepared: PreparedUpload, deadline: float) -> ExamOutput:
        exam_id = prepared.outgoing.exam_id
        resp = self.client.request(
            "POST",
            self.spec.submit_path,
            deadline=deadline,
            exam_id=exam_id,
            ok=(303,),
            **prepared.request_kwargs(self.spec.body),
        )
        what = f"POST {self.spec.submit_path}"
        while True:
            location = resp.headers.get("location")
            if resp.status_code == 303:  # see other: the result lives at the Location
                url = self._location(resp, what)
                resp = self.client.request("GET", url, deadline=deadline, exam_id=exam_id)
                what = f"GET {urlsplit(url).path}"
                continue
            state: str | None = None
            if resp.status_code == 202 or (not resp.content.strip() and location):
                if not location:
                    raise VendorFault(f"{what}: HTTP 202 without a Location to poll")
            elif not resp.content.strip():
                raise VendorFault(f"{what}: HTTP {resp.status_code} without a result body")
            else:
                doc = self.client.json(resp, what)
                state = self._state(doc, what)
                if state is None or state not in self.spec.result.pending:
                    self._keep(resp.content)
                    return self._output(doc, state, prepared, what)
                if not location and resp.request.method == "POST":
                    raise VendorFault(f"{what}: the result is {state!r} and no Location to poll")
            # Pending: poll the Location, or (a "still processing" poll answer) the same URL.
            url = self._location(resp, what) if location else str(resp.request.url)
            wait = retry_after_s(resp.headers.get("retry-after"))
            pause = self.spec.poll_interval_s if wait is None else wait
            still = "" if state is None else f", still {state!r}"
            if time.monotonic() + pause >= deadline:
                asked = "" if wait is None else f"; the endpoint asked to wait {wait:g}s more"
                raise VendorFault(f"job did not finish within {self.timeout_s:g}s{still}{asked}")
            time.sleep(pause)
            try:
                resp = self.client.request(
                    "GET", url, deadline=deadline, exam_id=exam_id, ok=(303,)
                )
            except VendorFault as fault:
                if time.monotonic() < deadline:
                    raise
                # The deadline fell during the poll: the job is what did not finish in time.
                raise VendorFault(
                    f"job did not finish within {self.timeout_s:g}s{still}; last poll: "
                    f"{fault.reason}"
                ) from None
            what = f"GET {urlsplit(url).path}"

    def _keep(self, body: bytes) -> None:
        """The final answer in the evidence as ``results/<sha256>.json``; ``attempts.jsonl``
        names its exam (an exam id is not a safe file name)."""
        folder = self.evidence_dir / "results"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{hashlib.sha256(body).hexdigest()}.json").write_bytes(body)

    def _location(self, resp: Any, what: str) -> str:
        """The absolute URL of a ``Location``, which must stay on the endpoint's origin (the
        credentials go with every request)."""
        url = urljoin(str(resp.request.url), resp.headers["location"])
        if _origin(url) != self._origin:
            raise VendorFault(
                f"{what}: Location {url[:120]} leaves the endpoint {self.client.base_url}; "
                "not followed"
            )
        return url

    # ------------------------------------------------------------------ mapping

    def _state(self, doc: Any, what: str) -> str | None:
        expr = self._expr.get("state")
        if expr is None:
            return None
        value = expr.search(doc)
        if not isinstance(value, str):
            raise VendorFault(
                f"{what}: state {self.spec.result.state!r} gave {_shown(value)}, not a string"
            )
        return value

    def _output(
        self, doc: Any, state: str | None, prepared: PreparedUpload, what: str
    ) -> ExamOutput:
        r: JsonJobResultSpec = self.spec.result
        if state is not None and state in r.failed:
            raise VendorFault(f"{what}: the job ended in state {state!r}")
        if state is not None and state in r.rejected:
            raise VendorFault(
                f"{what}: the endpoint rejected the exam (state {state!r})", "rejected"
            )
        sent = prepared.outgoing
        if "study_uid" in self._expr:
            echoed = self._expr["study_uid"].search(doc)
            if echoed != sent.study_uid:
                raise VendorFault(
                    f"{what}: the result is for Study Instance UID {_shown(echoed)}, not the "
                    f"{sent.study_uid} sent"
                )
        native_score = self._score(self._expr["exam_score"].search(doc), "exam score", what)
        native_breasts = {
            side: self._score(expr.search(doc), f"breast score {side}", what)
            for side, expr in sorted(self._breast_expr.items())
        }
        findings, native_findings = self._findings(doc, prepared, what)
        m = self.pkg.map_score
        return ExamOutput(
            score=m(native_score),
            breasts={side: m(v) for side, v in native_breasts.items()},
            findings=tuple(findings),
            native=Native(native_score, native_breasts, tuple(native_findings)),
        )

    def _score(self, value: Any, name: str, what: str) -> float:
        """A native score: a finite JSON number inside ``score_range``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise VendorFault(f"{what}: {name} is {_shown(value)}, not a number")
        v = float(value)
        lo, hi = self.pkg.score_range
        if not math.isfinite(v) or not lo <= v <= hi:
            raise VendorFault(
                f"{what}: {name} {value!r} is outside the declared score_range [{lo:g}, {hi:g}]"
            )
        return v

    def _findings(
        self, doc: Any, prepared: PreparedUpload, what: str
    ) -> tuple[list[Finding], list[float]]:
        if "findings" not in self._expr:
            return [], []
        items = self._expr["findings"].search(doc)
        if not isinstance(items, list):
            raise VendorFault(
                f"{what}: findings {self.spec.result.findings!r} gave {_shown(items)}, not a "
                "list ([] for none)"
            )
        if items and not self._finding_expr:
            raise VendorFault(f"{what}: findings given but rest.json_job.result.finding is not")
        findings: list[Finding] = []
        natives: list[float] = []
        for k, item in enumerate(items):
            fw = f"{what}: finding {k}"
            got = {key: expr.search(item) for key, expr in self._finding_expr.items()}
            uid = got["sop_instance_uid"]
            image = prepared.outgoing.reidentify(uid) if isinstance(uid, str) else None
            if image is None:
                raise VendorFault(f"{fw} cites SOP Instance UID {_shown(uid)}, which was not sent")
            rows, cols = prepared.sizes[uid]
            xy = []
            for axis, limit in (("x", cols), ("y", rows)):
                v = got[axis]
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise VendorFault(f"{fw}: {axis} is {_shown(v)}, not a number")
                if not 0 <= v <= limit:
                    raise VendorFault(
                        f"{fw}: {axis} {v!r} is outside the image ({cols} x {rows} pixels)"
                    )
                xy.append(float(v))
            if "laterality" in got and got["laterality"] != image.laterality:
                raise VendorFault(
                    f"{fw}: laterality {_shown(got['laterality'])} but the image it cites is "
                    f"{image.laterality} {image.view}"
                )
            native = self._score(got["score"], f"finding {k} score", what)
            findings.append(
                Finding(
                    image.laterality,
                    image.view,
                    image.file,
                    xy[0],
                    xy[1],
                    self.pkg.map_score(native),
                )
            )
            natives.append(native)
        return findings, natives

    def close(self) -> None:
        pass


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default one filled in) of a URL."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number: an origin nothing equals
        port = -1
    return parts.scheme, (parts.hostname or "").lower(), port


def _shown(value: Any) -> str:
    """A vendor value in a reason: short, one line, JSON-ish."""
    if value is None:
        return "null"
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text[:60]
