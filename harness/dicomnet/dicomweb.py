"""DICOMweb on the wire (DICOM PS3.18): multipart/related bodies of Part-10 instances and the
DICOM JSON of STOW-RS responses and QIDO-RS results, shared by the ``dicomweb`` REST profile and
the reference DICOMweb node.

* :func:`encode_related` writes ``multipart/related; type="application/dicom"`` (RFC 2387,
  PS3.18 §8.6.1.2): one part per instance, CRLF line ends, a random boundary checked to occur in
  no part.
* :func:`decode_related` reads one (a WADO-RS response) strictly: the boundary from the
  Content-Type, every part's headers and bytes, the close delimiter required (a body cut off
  is an error, not fewer instances).
* :func:`part10` writes a dataset as a Part-10 file (preamble, file meta, the dataset in its
  transfer syntax) with pydicom.
* :func:`stow_outcome` reads a STOW-RS response (Store Instances Response Module: 00081199
  Referenced SOP Sequence, 00081198 Failed SOP Sequence with 00081197 Failure Reason).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

from pydicom.dataset import Dataset

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
RELATED_DICOM = 'multipart/related; type="application/dicom"'
# WADO-RS Accept for instances as stored: without transfer-syntax=* a server transcodes to
# Explicit VR Little Endian (PS3.18 8.7.3.5.2), which fails or is slow for some encodings.
RELATED_DICOM_AS_STORED = RELATED_DICOM + "; transfer-syntax=*"

# PS3.4 Table GG.4-1 / PS3.18 Table 10.5.3-1: the usual STOW-RS failure reasons.
FAILURE_REASONS: Mapping[int, str] = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0x0211: "unrecognized operation",
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class",
    0xB000: "coercion of data elements",
    0xB006: "elements discarded",
    0xB007: "data set does not match SOP class (warning)",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
}


class DicomwebError(ValueError):
    """A DICOMweb body that does not follow PS3.18; one-line reason."""


def part10(ds: Dataset) -> bytes:
    """``ds`` as a Part-10 file (128-byte preamble, DICM, file meta, dataset)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def encode_related(parts: Sequence[bytes], part_type: str = DICOM) -> tuple[bytes, str]:
    """A multipart/related body of ``parts`` (each of media type ``part_type``) and its
    Content-Type header value."""
    while True:
        boundary = "mammocert-" + uuid.uuid4().hex
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in p for p in parts):
            break
    out = bytearray()
    for p in parts:
        out += marker + b"\r\nContent-Type: " + part_type.encode("ascii") + b"\r\n\r\n"
        out += p + b"\r\n"
    out += marker + b"--\r\n"
    return bytes(out), f'multipart/related; type="{part_type}"; boundary={boundary}'


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """A Content-Type value's media type (lower case) and its parameters."""
    msg = Message()
    msg["content-type"] = content_type
    params = {str(k).lower(): str(v) for k, v in (msg.get_params() or [])[1:]}
    return msg.get_content_type(), params


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: its headers (names in lower case) and bytes."""

    headers: Mapping[str, str]
    content: bytes


def decode_related(body: bytes, content_type: str) -> list[Part]:
    """The parts of a multipart/related body; :class:`DicomwebError` for anything malformed."""
    mtype, params = media_type(content_type)
    if mtype != "multipart/related":
        raise DicomwebError(f"Content-Type {content_type!r} is not multipart/related")
    boundary = params.get("boundary")
    if not boundary:
        raise DicomwebError("multipart/related Content-Type without a boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    if len(segments) < 2:
        raise DicomwebError("multipart body has no part (the boundary never occurs)")
    parts: list[Part] = []
    for seg in segments[1:]:
        if seg.startswith(b"--"):
            return parts  # close delimiter; anything after it is the epilogue
        line_end = seg.find(b"\r\n")
        if line_end < 0 or seg[:line_end].strip(b" \t"):
            raise DicomwebError("multipart boundary line followed by something else")
        head_end = seg.find(b"\r\n\r\n", line_end)
        if head_end == line_end:  # a part without headers
            headers: dict[str, str] = {}
            content = seg[line_end + 4 :]
        elif head_end < 0:
            raise DicomwebError("multipart part headers are not terminated")
        else:
            headers = {}
            for raw in seg[line_end + 2 : head_end].split(b"\r\n"):
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep:
                    raise DicomwebError(f"malformed multipart part header {raw[:60]!r}")
                headers[name.strip().lower()] = value.strip()
            content = seg[head_end + 4 :]
        parts.append(Part(headers, content))
    raise DicomwebError("multipart body ends without its close delimiter (cut off?)")


# ------------------------------------------------------------------------------ DICOM JSON


def values(item: Mapping[str, Any], tag: str) -> list[Any]:
    """The ``Value`` list of attribute ``tag`` ("0020000D") in a DICOM JSON object, [] if
    absent or empty; :class:`DicomwebError` if it is not shaped as PS3.18 F.2 says."""
    attr = item.get(tag)
    if attr is None:
        return []
    if not isinstance(attr, Mapping):
        raise DicomwebError(f"DICOM JSON attribute {tag} is not an object")
    vals = attr.get("Value", [])
    if not isinstance(vals, list):
        raise DicomwebError(f"DICOM JSON attribute {tag} Value is not an array")
    return vals


def first_string(item: Mapping[str, Any], tag: str) -> str | None:
    vals = values(item, tag)
    return vals[0] if vals and isinstance(vals[0], str) else None


def objects(doc: Any, what: str) -> list[Mapping[str, Any]]:
    """A DICOM JSON array of objects (a QIDO-RS result)."""
    if not isinstance(doc, list) or not all(isinstance(x, Mapping) for x in doc):
        raise DicomwebError(f"{what} is not a DICOM JSON array of objects")
    return doc


@dataclass(frozen=True)
class StowOutcome:
    """What a STOW-RS response says: instances stored, and failed ones with their reason."""

    stored: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (SOP Instance UID, reason)


def _reason(code: Any) -> str:
    if not isinstance(code, int):
        return f"failure reason {code!r}"
    name = FAILURE_REASONS.get(code)
    if name is None and 0xA700 <= code <= 0xA7FF:
        name = "out of resources"
    if name is None and 0xC000 <= code <= 0xCFFF:
        name = "cannot understand"
    return f"{code:04X}H {name}" if name else f"{code:04X}H"


def stow_outcome(doc: Any) -> StowOutcome:
    """The Store Instances Response Module of a STOW-RS response (a DICOM JSON object, or an
    array holding one)."""
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if not isinstance(doc, Mapping):
        raise DicomwebError("STOW-RS response is not a DICOM JSON object")
    stored: list[str] = []
    for item in values(doc, "00081199"):
        uid = first_string(item, "00081155") if isinstance(item, Mapping) else None
        if uid is None:
            raise DicomwebError("Referenced SOP Sequence item without a SOP Instance UID")
        stored.append(uid)
    failed: list[tuple[str, str]] = []
    for item in values(doc, "00081198"):
        if not isinstance(item, Mapping):
            raise DicomwebError("Failed SOP Sequence item is not an object")
        uid = first_string(item, "00081155") or "(no SOP Instance UID)"
        codes = values(item, "00081197")
        failed.append((uid, _reason(codes[0]) if codes else "no failure reason"))
    return StowOutcome(tuple(stored), tuple(failed))


def stow_response(stored: Iterable[str], failed: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """A Store Instances Response Module as DICOM JSON (for servers and fakes of our own)."""
    doc: dict[str, Any] = {}
    ok = [{"00081155": {"vr": "UI", "Value": [u]}} for u in stored]
    bad = [
        {"00081155": {"vr": "UI", "Value": [u]}, "00081197": {"vr": "US", "Value": [code]}}
        for u, code in failed
    ]
    if ok:
        doc["00081199"] = {"vr": "SQ", "Value": ok}
    if bad:
        doc["00081198"] = {"vr": "SQ", "Value": bad}
    return doc


# ------------------------------------------------------------------------------ UPS-RS


def ups_workitem(
    images: Sequence[Dataset], retrieve_url: str, storage_url: str, label: str, now: str
) -> Dataset:
    """A UPS workitem for IHE AIW-I Create UPS Workitem [RAD-80] (PS3.4 CC.2.5 N-CREATE
    attributes): SCHEDULED and READY, the study's instances as Input Information Sequence with a
    WADO-RS Retrieve URL, results wanted by STOW-RS at ``storage_url``; patient attributes as
    the (pseudonymised) images carry them. ``now`` is the start DateTime (DT)."""
    from pydicom.sequence import Sequence as DicomSequence

    first = images[0]
    ups = Dataset()
    ups.PatientName = first.get("PatientName", "")
    ups.PatientID = first.get("PatientID", "")
    ups.PatientBirthDate = ""
    ups.PatientSex = first.get("PatientSex", "")
    ups.StudyInstanceUID = first.StudyInstanceUID
    ups.ProcedureStepState = "SCHEDULED"
    ups.ScheduledProcedureStepPriority = "MEDIUM"
    ups.ProcedureStepLabel = label
    ups.WorklistLabel = "mammocert"
    ups.ScheduledProcedureStepStartDateTime = now
    ups.InputReadinessState = "READY"
    ups.ScheduledWorkitemCodeSequence = DicomSequence([])
    ups.ScheduledProcessingParametersSequence = DicomSequence([])
    ups.ScheduledStationNameCodeSequence = DicomSequence([])
    inputs = []
    for series in sorted({str(ds.SeriesInstanceUID) for ds in images}):
        item = Dataset()
        item.StudyInstanceUID = first.StudyInstanceUID
        item.SeriesInstanceUID = series
        refs = []
        for ds in images:
            if str(ds.SeriesInstanceUID) == series:
                ref = Dataset()
                ref.ReferencedSOPClassUID = ds.SOPClassUID
                ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
                refs.append(ref)
        item.ReferencedSOPSequence = DicomSequence(refs)
        item.TypeOfInstances = "DICOM"
        where = Dataset()
        where.RetrieveURL = retrieve_url
        item.WADORSRetrievalSequence = DicomSequence([where])
        inputs.append(item)
    ups.InputInformationSequence = DicomSequence(inputs)
    store = Dataset()
    store.StorageURL = storage_url
    dest = Dataset()
    dest.STOWRSStorageSequence = DicomSequence([store])
    ups.OutputDestinationSequence = DicomSequence([dest])
    return ups
