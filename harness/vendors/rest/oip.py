"""The ``oip-v2`` profile: a model behind the Open Inference Protocol (KServe V2: NVIDIA Triton,
KServe, Seldon MLServer), docs/contracts.md §3.2 "oip-v2".

Before the run (:class:`OipProfile` constructor):

* ``GET /v2/health/ready`` and ``GET /v2/models/{m}[/versions/{v}]/ready``, judged by status
  class only (servers disagree on the body: empty, ``{"ready": true}``, text); the body is kept in
  the evidence. A server that does not answer 2xx sets ``down_reason``: every exam is an error
  with it, and the run goes on.
* ``GET /v2/models/{m}[/versions/{v}]``: the model metadata must declare the binding of
  ``rest.oip``: the image input (FP32, ``[N, channels, height, width]`` of the unit, ``-1`` for
  a variable dimension), the BYTES ``study_uid_input``, and each output named in
  ``rest.oip.output`` with a compatible datatype. A mismatch is a
  :class:`~harness.errors.VendorPackageError` naming the tensor and the fix (exit 2). Its SHA-256
  (canonical JSON) joins the model digests as ``oip-metadata``; ``N = -1`` makes batches dynamic.
* ``encoding: auto`` sends one all-zero request in the binary tensor extension (servers do not
  advertise it reliably: KServe supports it but lists only ``model_repository_extension``) and
  uses binary if the answer decodes, else JSON tensors. The choice and the probe's outcome are in
  ``<evidence>/oip.json`` and the adapter's execution provider.

Per exam: the tensors are built by :class:`~harness.vendors.onnx_adapter.TensorModel`, exactly as
for an ONNX package (same presentation pixels, units, aggregation, findings from the heatmap,
score mapping without clipping). Each batch is one ``POST .../infer`` with the image tensor and
the exam's pseudonymised Study Instance UID (:func:`harness.vendors.remote.pseudonymise`) as a
BYTES ``[1]`` tensor; the response's ``study_uid`` output must echo it (a server's response ``id``
proves nothing: MLServer overwrites it). Faults (each a ``VendorFault``, recorded as data): a
wrong echo, a missing output, a datatype outside the binding, a shape whose element count does
not match its data, ``null`` or non-numbers in numeric data (orjson writes NaN as ``null``),
NaN/Infinity tokens (strict JSON), and in binary responses a header length beyond the body or
``binary_data_size`` values that do not add up to the bytes that follow.

JSON tensors carry each float32 pixel as the float64 number it equals, so a server that parses
JSON numbers as float64 and casts to FP32 gets bit-identical input.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from harness.errors import VendorFault, VendorPackageError
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.vendors import remote
from harness.vendors.onnx_adapter import Batch, PreparedExam, TensorModel
from harness.vendors.package import OipSpec, OnnxGraphFacts, OnnxInputSpec, VendorPackage
from harness.vendors.rest.transport import RestClient, strict_json

HEADER_LENGTH = "Inference-Header-Content-Length"
FLOAT_TYPES: Mapping[str, str] = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
PROBE_STUDY_UID = "2.25.0"  # the probe's study: no exam's (pseudonymised UIDs are 2.25.<random>)


@dataclass(frozen=True)
class TensorBinding:
    """``rest.oip`` seen as :class:`TensorModel` reads an ONNX spec (names of the outputs, the
    input, the aggregation) plus what the server's metadata says about the graph."""

    input: OnnxInputSpec
    aggregate: str
    score_output: str
    heatmap_output: str | None
    breast_scores_output: str | None
    graph: OnnxGraphFacts


@dataclass(frozen=True)
class OipExam(PreparedExam):
    """A prepared exam and what its requests carry: the study UID of this send, the deadline."""

    study_uid: str = ""
    deadline: float = math.inf


@dataclass(frozen=True)
class Tensor:
    """One response output: numbers (numeric datatypes) or byte strings (BYTES)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | tuple[bytes, ...]


class OipProfile(TensorModel):
    """The ``oip-v2`` :class:`~harness.vendors.rest.RestProfile`."""

    def __init__(self, pkg: VendorPackage, client: RestClient, evidence_dir: Path) -> None:
        assert pkg.rest is not None
        if pkg.rest.oip is None:
            raise VendorPackageError(
                f"{pkg.source}: rest.protocol oip-v2 needs a rest.oip section (model, input, output)"
            )
        self.pkg = pkg
        self.client = client
        self.oip: OipSpec = pkg.rest.oip
        self.down_reason: str | None = None
        self.identity: dict[str, str] = {}
        self.encoding = "json"
        self.transport_detail = ""
        model = f"/v2/models/{quote(self.oip.model, safe='')}"
        if self.oip.version is not None:
            model += f"/versions/{quote(self.oip.version, safe='')}"
        self.model_path = model
        out = self.oip.output
        self.spec = TensorBinding(  # type: ignore[assignment]
            self.oip.input,
            self.oip.aggregate,
            out.score,
            out.heatmap,
            out.breast_scores,
            OnnxGraphFacts(batch_dynamic=False, heatmap_channels=None),
        )
        record: dict[str, Any] = {"model": self.oip.model, "version": self.oip.version}
        try:
            record["health"] = self._ready("/v2/health/ready")
            record["model_ready"] = self._ready(model + "/ready")
            resp = self.client.request("GET", model, deadline=self._deadline())
            metadata = self.client.json(resp, f"GET {model}")
        except VendorFault as fault:
            self.down_reason = f"OIP server not ready: {fault.reason}"
            record["down_reason"] = self.down_reason
            _write_evidence(evidence_dir, record)
            return
        self.spec = self._check_metadata(metadata)
        canonical = json.dumps(metadata, sort_keys=True, separators=(",", ":"))
        self.identity = {"oip-metadata": hashlib.sha256(canonical.encode()).hexdigest()}
        record["metadata"] = metadata
        record["metadata_sha256"] = self.identity["oip-metadata"]
        if self.oip.encoding == "auto":
            self.encoding, record["binary_probe"] = self._probe()
        else:
            self.encoding = self.oip.encoding
        record["encoding"] = self.encoding
        self.transport_detail = f"{self.encoding} tensors"
        _write_evidence(evidence_dir, record)

    # ------------------------------------------------------------------ before the run

    def _deadline(self) -> float:
        return remote.exam_deadline(self.pkg.timeout_s)

    def _ready(self, path: str) -> dict[str, Any]:
        resp = self.client.request("GET", path, deadline=self._deadline())
        return {
            "status": resp.status_code,
            "body": resp.content[:300].decode("utf-8", "replace"),
        }

    def _check_metadata(self, meta: Any) -> TensorBinding:
        """The binding against the server's model metadata; VendorPackageError on a mismatch."""
        where = f"{self.pkg.source}: the OIP model {self.oip.model!r}"

        def refuse(problem: str, fix: str) -> VendorPackageError:
            return VendorPackageError(f"{where}: {problem}; {fix}")

        if not isinstance(meta, dict):
            raise refuse("metadata is not a JSON object", "serve OIP model metadata")
        tensors: dict[str, dict[str, dict[str, Any]]] = {}
        for side in ("inputs", "outputs"):
            listed = meta.get(side)
            if not isinstance(listed, list):
                raise refuse(f"metadata has no {side} list", "serve OIP model metadata")
            tensors[side] = {}
            for t in listed:
                if not (
                    isinstance(t, dict)
                    and isinstance(t.get("name"), str)
                    and isinstance(t.get("datatype"), str)
                    and isinstance(t.get("shape"), list)
                    and all(isinstance(d, int) and not isinstance(d, bool) for d in t["shape"])
                ):
                    raise refuse(
                        f"metadata {side} entry {str(t)[:80]} lacks name/datatype/shape",
                        "serve OIP model metadata",
                    )
                tensors[side][t["name"]] = t
        inputs, outputs = tensors["inputs"], tensors["outputs"]
        i = self.oip.input
        image = inputs.get(i.name)
        if image is None:
            raise refuse(
                f"has no input tensor {i.name!r} (it has {sorted(inputs)})",
                "set rest.oip.input.name to the model's image input",
            )
        want = [i.channels, i.height, i.width]
        shape = image["shape"]
        if (
            image["datatype"] != "FP32"
            or len(shape) != 4
            or shape[0] not in (-1, 1)
            or any(d not in (-1, w) for d, w in zip(shape[1:], want, strict=True))
        ):
            raise refuse(
                f"input {i.name!r} is {image['datatype']} {shape}, the binding sends FP32 "
                f"[N, {i.channels}, {i.height}, {i.width}] (unit {i.unit})",
                "make rest.oip.input (unit, height, width) match the model, or the model match it",
            )
        uid_in = inputs.get(self.oip.study_uid_input)
        if uid_in is None or uid_in["datatype"] != "BYTES":
            raise refuse(
                f"has no BYTES input {self.oip.study_uid_input!r} for the Study Instance UID",
                "declare it in the model (see docs/contracts.md §3.2) or set rest.oip.study_uid_input",
            )
        extra = sorted(set(inputs) - {i.name, self.oip.study_uid_input})
        if extra:
            raise refuse(
                f"also needs inputs {extra} that the binding does not send",
                "serve a model whose inputs are the image and the study UID only",
            )
        out = self.oip.output
        wanted = [("score", out.score), ("heatmap", out.heatmap)]
        wanted.append(("breast_scores", out.breast_scores))
        for key, name in wanted:
            if name is None:
                continue
            t = outputs.get(name)
            if t is None or t["datatype"] not in FLOAT_TYPES:
                got = "is missing" if t is None else f"is {t['datatype']}"
                raise refuse(
                    f"output {name!r} (rest.oip.output.{key}) {got}; expected FP16/FP32/FP64",
                    f"fix rest.oip.output.{key} or the model's outputs",
                )
        echo = outputs.get(out.study_uid)
        if echo is None or echo["datatype"] != "BYTES":
            raise refuse(
                f"has no BYTES output {out.study_uid!r} echoing the Study Instance UID",
                "add the echo output to the model (see docs/contracts.md §3.2) or fix "
                "rest.oip.output.study_uid",
            )
        channels = None
        if out.heatmap is not None:
            heat = outputs[out.heatmap]["shape"]
            if len(heat) != 4:
                raise refuse(
                    f"heatmap output {out.heatmap!r} has shape {heat}; expected [N, C, h, w]",
                    "fix rest.oip.output.heatmap or the model",
                )
            channels = heat[1] if heat[1] != -1 else None
        return replace(
            self.spec,  # type: ignore[arg-type]
            graph=OnnxGraphFacts(batch_dynamic=shape[0] == -1, heatmap_channels=channels),
        )

    def _probe(self) -> tuple[str, dict[str, Any]]:
        """One all-zero request in the binary extension: ``binary`` if its answer decodes."""
        i = self.oip.input
        batch = Batch(np.zeros((1, i.channels, i.height, i.width), np.float32), ((),), "probe")
        probe = OipExam("probe", (batch,), PROBE_STUDY_UID, self._deadline())
        try:
            self._infer_call(self._output_names(), batch, probe, "binary")
        except VendorFault as fault:
            return "json", {"accepted": False, "reason": fault.reason}
        return "binary", {"accepted": True}

    # ------------------------------------------------------------------ per exam

    def prepare(self, exam: ExamInput) -> OipExam:
        outgoing = remote.pseudonymise(self.pkg, exam)
        # Pixels are the same before and after pseudonymisation; the tensors carry no header.
        prepared = super().prepare(exam)
        return OipExam(prepared.exam_id, prepared.batches, outgoing.study_uid)

    def infer(self, prepared: OipExam, deadline: float) -> ExamOutput:  # type: ignore[override]
        return super().infer(replace(prepared, deadline=deadline))

    def _run(self, names: list[str], batch: Batch, exam: PreparedExam) -> list[np.ndarray]:
        assert isinstance(exam, OipExam)
        return self._infer_call(names, batch, exam, self.encoding)

    def _infer_call(
        self, names: list[str], batch: Batch, exam: OipExam, encoding: str
    ) -> list[np.ndarray]:
        """One ``POST .../infer``: the outputs ``names`` as float arrays, the echo checked."""
        echo = self.oip.output.study_uid
        uid = exam.study_uid.encode("ascii")
        # Unique per request and reproducible from what is sent; never compared on the way back.
        index = next(k for k, b in enumerate(exam.batches) if b is batch)
        request_id = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{exam.study_uid}/{index}"))
        inputs: list[dict[str, Any]] = [
            {"name": self.oip.input.name, "shape": list(batch.tensor.shape), "datatype": "FP32"},
            {"name": self.oip.study_uid_input, "shape": [1], "datatype": "BYTES"},
        ]
        outputs: list[dict[str, Any]] = [{"name": n} for n in [*names, echo]]
        head: dict[str, Any] = {"id": request_id, "inputs": inputs, "outputs": outputs}
        headers: dict[str, str]
        if encoding == "binary":
            pixels = np.ascontiguousarray(batch.tensor, dtype="<f4").tobytes()
            uid_bytes = struct.pack("<I", len(uid)) + uid
            inputs[0]["parameters"] = {"binary_data_size": len(pixels)}
            inputs[1]["parameters"] = {"binary_data_size": len(uid_bytes)}
            for o in outputs:
                o["parameters"] = {"binary_data": True}
            head["parameters"] = {"binary_data_output": True}
            header = json.dumps(head, separators=(",", ":")).encode()
            body = header + pixels + uid_bytes
            headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
        else:
            inputs[0]["data"] = batch.tensor.astype(np.float64).reshape(-1)
            inputs[1]["data"] = [exam.study_uid]
            body = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
            headers = {"Content-Type": "application/json"}
        path = self.model_path + "/infer"
        resp = self.client.request(
            "POST",
            path,
            deadline=exam.deadline,
            exam_id=None if exam.exam_id == "probe" else exam.exam_id,
            content=body,
            headers=headers,
        )
        got = decode_response(resp, f"POST {path}")
        answer = got.get(echo)
        if answer is None:
            raise VendorFault(f"OIP response lacks output {echo!r} (the study UID echo)")
        if answer.datatype != "BYTES" or len(answer.values) != 1:
            raise VendorFault(
                f"OIP output {echo!r} is {answer.datatype} {list(answer.shape)}; expected BYTES [1]"
            )
        if answer.values[0] != uid:
            raise VendorFault(
                "OIP server answered for another study: output "
                f"{echo!r} is {answer.values[0][:64]!r}, the request's study UID was {exam.study_uid}"
            )
        result: list[np.ndarray] = []
        for name in names:
            t = got.get(name)
            if t is None:
                raise VendorFault(f"OIP response lacks output {name!r}")
            if t.datatype not in FLOAT_TYPES:
                raise VendorFault(
                    f"OIP output {name!r} is {t.datatype}; the binding expects FP16/FP32/FP64"
                )
            assert isinstance(t.values, np.ndarray)
            result.append(t.values.reshape(t.shape))
        return result

    def close(self) -> None:
        """Nothing to release: the adapter closes the HTTP client."""


# ---------------------------------------------------------------------- response decoding


def decode_response(resp: httpx.Response, what: str) -> dict[str, Tensor]:
    """An inference response (JSON, or the binary extension's header plus raw tensors) as
    tensors by name; VendorFault for anything malformed."""
    body = resp.content
    length = resp.headers.get(HEADER_LENGTH)
    if length is not None:
        if not length.strip().isdigit():
            raise VendorFault(f"{what}: {HEADER_LENGTH} {length[:40]!r} is not a byte count")
        n = int(length)
        if n > len(body):
            raise VendorFault(f"{what}: {HEADER_LENGTH} {n} is beyond the {len(body)}-byte body")
        head, raw = strict_json(body[:n], what), body[n:]
    elif resp.headers.get("content-type", "").startswith("application/octet-stream"):
        raise VendorFault(f"{what}: binary response without an {HEADER_LENGTH} header")
    else:
        head, raw = strict_json(body, what), b""
    if not isinstance(head, dict) or not isinstance(head.get("outputs"), list):
        raise VendorFault(f"{what}: response has no outputs list")
    tensors: dict[str, Tensor] = {}
    offset = 0
    for entry in head["outputs"]:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("datatype"), str)
            and isinstance(entry.get("shape"), list)
            and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"]
            )
        ):
            raise VendorFault(f"{what}: output {str(entry)[:80]} lacks name/datatype/shape")
        name, dtype, shape = entry["name"], entry["datatype"], tuple(entry["shape"])
        if name in tensors:
            raise VendorFault(f"{what}: output {name!r} appears twice")
        params = entry.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if length is None:
                raise VendorFault(
                    f"{what}: output {name!r} has binary_data_size but no {HEADER_LENGTH} header"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise VendorFault(
                    f"{what}: output {name!r} binary_data_size {size!r} is not a size"
                )
            if offset + size > len(raw):
                raise VendorFault(
                    f"{what}: output {name!r} binary_data_size {size} runs past the body "
                    f"({len(raw) - offset} bytes left)"
                )
            values = _from_bytes(raw[offset : offset + size], name, dtype, shape, what)
            offset += size
        else:
            if "data" not in entry:
                raise VendorFault(f"{what}: output {name!r} has no data")
            values = _from_json(entry["data"], name, dtype, shape, what)
        tensors[name] = Tensor(name, dtype, shape, values)
    if offset != len(raw):
        raise VendorFault(
            f"{what}: binary_data_size values add up to {offset} bytes but {len(raw)} follow the header"
        )
    return tensors


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _from_bytes(
    raw: bytes, name: str, dtype: str, shape: tuple[int, ...], what: str
) -> np.ndarray | tuple[bytes, ...]:
    if dtype == "BYTES":
        items: list[bytes] = []
        at = 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise VendorFault(f"{what}: output {name!r}: BYTES element length cut off")
            (n,) = struct.unpack_from("<I", raw, at)
            if at + 4 + n > len(raw):
                raise VendorFault(f"{what}: output {name!r}: BYTES element runs past its data")
            items.append(raw[at + 4 : at + 4 + n])
            at += 4 + n
        if len(items) != _count(shape):
            raise VendorFault(
                f"{what}: output {name!r} has {len(items)} elements for shape {list(shape)}"
            )
        return tuple(items)
    if dtype not in FLOAT_TYPES:
        raise VendorFault(
            f"{what}: output {name!r} has datatype {dtype!r}; expected FP16/FP32/FP64 or BYTES"
        )
    item = np.dtype(FLOAT_TYPES[dtype]).itemsize
    if len(raw) != _count(shape) * item:
        raise VendorFault(
            f"{what}: output {name!r} has {len(raw)} bytes; {dtype} {list(shape)} needs "
            f"{_count(shape) * item}"
        )
    return np.frombuffer(raw, dtype=FLOAT_TYPES[dtype]).astype(np.float64)


def _flatten(data: Any, out: list[Any]) -> None:
    if isinstance(data, list):
        for d in data:
            _flatten(d, out)
    else:
        out.append(data)


def _from_json(
    data: Any, name: str, dtype: str, shape: tuple[int, ...], what: str
) -> np.ndarray | tuple[bytes, ...]:
    flat: list[Any] = []
    _flatten(data, flat)  # row-major, nested or flat (both are OIP)
    if len(flat) != _count(shape):
        raise VendorFault(f"{what}: output {name!r} has {len(flat)} values for shape {list(shape)}")
    if dtype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise VendorFault(f"{what}: output {name!r} is BYTES but holds non-strings")
        return tuple(v.encode("utf-8") for v in flat)
    if dtype not in FLOAT_TYPES:
        raise VendorFault(
            f"{what}: output {name!r} has datatype {dtype!r}; expected FP16/FP32/FP64 or BYTES"
        )
    for v in flat:
        if v is None:
            raise VendorFault(
                f"{what}: output {name!r} holds null (a NaN or infinity the server could not write)"
            )
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise VendorFault(f"{what}: output {name!r} holds {str(v)[:40]!r}, not a number")
    # A server sends FP32 values as decimals; rounding to the declared type restores them.
    return np.asarray(flat, dtype=FLOAT_TYPES[dtype]).astype(np.float64)


def _write_evidence(evidence_dir: Path, record: dict[str, Any]) -> None:
    evidence_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, sort_keys=True)
    (evidence_dir / "oip.json").write_text(text + "\n", encoding="utf-8")
