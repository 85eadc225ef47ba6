"""The ONNX adapter: a vendor model in an ONNX package, run by onnxruntime (docs/contracts.md §3.2).

``prepare`` (thread-safe, runs in the runner's prefetch pool) checks each dataset the way a
mammography product would, decodes it (JPEG 2000 / RLE through pylibjpeg), and builds the input
tensors with :mod:`harness.pixels`. ``infer`` runs the session and turns its outputs into an
:class:`~harness.predictions.ExamOutput`.

Input faults, recorded per exam by the runner:

* not Digital Mammography (SOP Class For Presentation/For Processing) or Modality not MG,
  no Image Laterality, no view (View Position, else View Code Sequence), or the views the unit
  needs are missing -> ``rejected``;
* pixel data that cannot be decoded, or attributes that make presentation pixels impossible
  -> ``error``.

Scores: the raw output is mapped linearly from ``score_range`` onto [0, 1] and **not** clipped,
so a model that leaves its declared range is visible to the criteria that govern degenerate
output. NaN or infinite scores cannot be written to JSON; they become ``error`` records with the
reason "model returned NaN/inf". Units and aggregation: ``image`` scores each CC/MLO image,
breast = aggregate of its images, exam = aggregate of breasts; ``breast`` scores [CC, MLO] of a
side, exam = aggregate of breasts; ``exam`` scores [LCC, LMLO, RCC, RMLO] and reports no breast
scores. ``aggregate`` is ``max`` (default) or ``mean``.

Findings: for each image (heatmap channel), local maxima of the heatmap over a 5x5 window, at
most ``FINDINGS_PER_IMAGE`` per image, mapped score >= ``FINDING_FLOOR``, and inside the image
content (not the padding); each is mapped back through :func:`harness.pixels.model_to_image` to
stored-image columns/rows. A one-channel heatmap for a breast/exam unit cannot be attributed to
a view, so it gives no findings.

The session runs in a worker process (:class:`SessionProcess`), not in this one: a Python thread
stuck inside a native onnxruntime call cannot be stopped, keeps a core busy for the rest of the
run, and aborts the interpreter at exit ("terminate called without an active exception" when
onnxruntime's thread pools are destroyed under it). A process can be killed: when the runner gives
up on a call it calls :meth:`OnnxAdapter.abandon`, the worker is killed (the blocked call ends at
once with the pipe closed) and the next exam starts a fresh one. A model that crashes its process
becomes an ``error`` record for that exam instead of ending the run.

Batches (``onnx.batch_size``, docs/contracts.md §3.2): :meth:`OnnxAdapter.infer_batch` stacks
the tensors of several prepared exams along N, one session call per tensor position, and reads
each exam's rows of the outputs exactly as :meth:`TensorModel._read` reads a call of its own;
``infer`` is the batch of one. A call's input reaches the worker process through shared
memory (:class:`InputBlock`), and the call runs through onnxruntime's I/O binding
(:func:`run_bound`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from scipy.ndimage import maximum_filter

from harness import codes
from harness.errors import VendorFault, VendorPackageError
from harness.exam_input import ExamInput
from harness.pixels import Geometry, PixelError, decoded, model_to_image, to_model_plane
from harness.predictions import ExamOutput, Finding
from harness.vendors.adapter import AdapterInfo
from harness.vendors.package import OnnxSpec, VendorPackage

MAMMO_SOP_CLASSES = codes.MAMMO_SOP_CLASSES
VIEW_CODES = codes.VIEW_OF_CODE_VALUE
CUDA_PROVIDER = "CUDAExecutionProvider"
FINDINGS_PER_IMAGE = 3
FINDING_FLOOR = 0.05
PEAK_WINDOW = 5


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def run_bound(session: Any, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One call through I/O binding: the outputs ``names`` as host arrays.

    On CUDA each input is copied to the device once, as an ``OrtValue``, before the call (no
    implicit copy inside it) and the outputs are bound to host memory; on CPU the input array is
    bound in place. Bit for bit what ``session.run(names, feeds)`` returns.

    The host side of that copy is pageable memory (the :class:`InputBlock`), not pinned: numpy
    cannot allocate page-locked memory, and onnxruntime's Python API (1.32) offers it only
    through a plugin execution provider's device,
    ``OrtValue.ortvalue_from_shape_and_type(shape, np.float32, memory_info=ep_device.memory_info(
    OrtDeviceMemoryType.HOST_ACCESSIBLE))`` with ``ep_device`` from ``get_ep_devices()``, which
    exists only where the onnxruntime-gpu build registers CUDA as a plugin provider. That path
    needs a GPU to test, so it is not taken; ``bench/gpu_check.py`` reports whether the GPU
    host's build offers it.
    """
    import onnxruntime as ort

    binding = session.io_binding()
    on_cuda = session.get_providers()[0] == CUDA_PROVIDER
    for name, x in feeds.items():
        if on_cuda:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        else:
            binding.bind_cpu_input(name, x)
    for name in names:
        binding.bind_output(name, "cpu")
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()


def serve_session(conn: Connection, model: str, providers: list[str]) -> None:
    """The worker process: load the model, say which provider runs it, then answer each
    ``(output names, input name, input)`` request with ``("ok", outputs)`` or
    ``("error", reason)`` until ``None`` or the pipe closes. The input is ``("shared", (block
    name, shape))``, a float32 tensor in an :class:`InputBlock` read in place, or
    ``("inline", array)``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        conn.send(("load-error", _first_line(exc)))
        return
    conn.send(("ready", session.get_providers()[0]))
    mapped: shared_memory.SharedMemory | None = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        names, input_name, (kind, payload) = request
        try:
            if kind == "shared":
                block, shape = payload
                if mapped is None or mapped.name != block:
                    _unmap(mapped)
                    mapped = shared_memory.SharedMemory(name=block)
                x = np.ndarray(shape, np.float32, buffer=mapped.buf)
            else:
                x = payload
            reply = ("ok", run_bound(session, names, {input_name: x}))
        except Exception as exc:  # onnxruntime raises Fail/InvalidArgument/RuntimeException
            reply = ("error", _first_line(exc))
        x = None  # no view of the block outlives the call, so it can be unmapped
        conn.send(reply)


def _unmap(block: shared_memory.SharedMemory | None) -> None:
    if block is not None:
        try:
            block.close()
        except BufferError:
            pass  # a view is still alive; the mapping goes with it


class InputBlock:
    """Shared memory that carries each call's input tensor to the session process: the exams'
    tensors are stacked straight into it (the one copy of the input on this side) and the
    session process reads it in place, instead of a pickled copy through the pipe (four copies:
    ``bench/bench_session_feed.py``). One block per session process, grown when a call needs
    more. Its pages are reserved when it is made (``posix_fallocate``), so a full ``/dev/shm``
    (64 MB in a default Docker container) is found then, and the call sends its tensor through
    the pipe instead, never a SIGBUS while writing. Its name is removed as soon as the session
    process has mapped it (:meth:`mapped`): the memory then goes with the last process that
    maps it, even when the harness is killed (SIGKILL runs no cleanup; a named block would stay
    in ``/dev/shm`` until reboot)."""

    def __init__(self) -> None:
        self._block: shared_memory.SharedMemory | None = None
        self._drop: weakref.finalize | None = None
        self._named = False

    def stack(self, parts: Sequence[np.ndarray]) -> tuple[str, tuple[int, ...]] | None:
        """Write ``np.concatenate(parts)`` into the block: its name and the tensor's shape, or
        None where no block of that size can be had."""
        shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
        nbytes = math.prod(shape) * np.dtype(np.float32).itemsize
        if self._block is None or self._block.size < nbytes:
            self.release()
            self._block = _reserved_block(nbytes)
            if self._block is None:
                return None
            # removed with this object, or at exit where an adapter was never closed
            self._drop = weakref.finalize(self, _drop_block, self._block)
            self._named = True
        view = np.ndarray(shape, np.float32, buffer=self._block.buf)
        np.concatenate(parts, out=view)
        del view
        return self._block.name, shape

    def mapped(self) -> None:
        """The session process answered a call from the block, so it has it mapped (and keeps
        it): its name is no longer needed."""
        if self._block is not None and self._named:
            self._block.unlink()
            self._named = False

    def release(self) -> None:
        if self._drop is not None:
            self._drop()  # runs once
        self._block = self._drop = None


def _drop_block(block: shared_memory.SharedMemory) -> None:
    try:
        block.unlink()
    except FileNotFoundError:
        pass  # already removed
    _unmap(block)


def _reserved_block(nbytes: int) -> shared_memory.SharedMemory | None:
    try:
        block = shared_memory.SharedMemory(create=True, size=nbytes)
    except OSError:
        return None
    try:
        # the fd is private to SharedMemory; without it the pages cannot be reserved up front
        os.posix_fallocate(block._fd, 0, nbytes)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        _drop_block(block)
        return None
    return block


class SessionProcess:
    """One worker process holding an onnxruntime session; killable when a call hangs.

    Started from a fork server (a clean process that has imported this module once), so a restart
    after a hung call costs the model's load time, not a fresh interpreter, and never forks the
    harness's own threads."""

    def __init__(self, model: str, providers: list[str]) -> None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=serve_session,
            args=(child, model, providers),
            daemon=True,  # never outlives the harness
            name="mammocert-onnx",
        )
        self._proc.start()
        child.close()
        try:
            status, detail = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            status, detail = (
                "load-error",
                f"the model process died (exit code {self._proc.exitcode})",
            )
        if status != "ready":
            self.kill()
            raise _LoadError(detail)
        self.provider: str = detail
        self._input = InputBlock()

    def run(
        self, names: list[str], input_name: str, parts: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """One session call on ``parts`` stacked along N (float32); a failed call or a dead
        (killed, crashed) process is a VendorFault."""
        block = self._input.stack(parts)
        x = ("shared", block) if block is not None else ("inline", np.concatenate(parts))
        try:
            self._conn.send((names, input_name, x))
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            self._conn.close()
            code = self._proc.exitcode
            raise VendorFault(
                "the model process ended during the call"
                + (f" (exit code {code})" if code is not None else ""),
                "error",
            ) from None
        if status != "ok":
            raise VendorFault(f"onnxruntime failed: {payload}", "error")
        if block is not None:
            self._input.mapped()
        return payload

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def kill(self) -> None:
        """End the process now (a call blocked in :meth:`run` then raises)."""
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(5)
        if hasattr(self, "_input"):  # not made when the model did not load
            self._input.release()

    def close(self) -> None:
        try:
            self._conn.send(None)
        except OSError:
            pass  # already ended
        self._proc.join(5)
        self.kill()
        self._conn.close()


class _LoadError(Exception):
    """The worker process could not load the model (the message is onnxruntime's first line)."""


@dataclass(frozen=True)
class Plane:
    """One image placed into one channel of the model input."""

    laterality: str
    view: str
    file: str
    geometry: Geometry


@dataclass(frozen=True)
class Batch:
    """One session call: the tensor and, per batch item, its planes (channel order)."""

    tensor: np.ndarray
    items: tuple[tuple[Plane, ...], ...]
    key: str  # image unit: "image"; breast unit: "L"/"R"; exam unit: "exam"


@dataclass(frozen=True)
class PreparedExam:
    exam_id: str
    batches: tuple[Batch, ...]


def image_view(ds: Dataset) -> str | None:
    """CC/MLO from View Position, else from View Code Sequence (SCT or legacy SRT codes)."""
    vp = str(ds.get("ViewPosition", "") or "").strip().upper()
    if vp:
        return vp
    seq = ds.get("ViewCodeSequence")
    if seq:
        return VIEW_CODES.get(str(seq[0].get("CodeValue", "")), None)
    return None


def check_mammogram(ds: Dataset, file: str) -> tuple[str, str]:
    """Refuse what is not a mammogram with a reason; returns (laterality, view)."""
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop not in MAMMO_SOP_CLASSES or modality != "MG":
        raise VendorFault(
            f"{file}: not a mammogram (SOP Class {sop or 'missing'}, Modality {modality or 'missing'})",
            "rejected",
        )
    lat = str(ds.get("ImageLaterality", "") or "").strip().upper()
    if lat not in ("L", "R"):
        raise VendorFault(
            f"{file}: Image Laterality (0020,0062) missing or not L/R ({lat!r})", "rejected"
        )
    view = image_view(ds)
    if not view:
        raise VendorFault(
            f"{file}: no View Position (0018,5101) or View Code Sequence; cannot tell CC from MLO",
            "rejected",
        )
    return lat, view


class TensorModel:
    """Exams to one image tensor per call and the call's outputs to an
    :class:`~harness.predictions.ExamOutput`: what the ONNX adapter and the Open Inference
    Protocol profile (:mod:`harness.vendors.rest.oip`) share, so both build the same tensors and
    read outputs the same way. A subclass sets ``pkg`` and ``spec`` (``input``, ``aggregate``,
    ``score_output``, ``heatmap_output``, ``breast_scores_output``, ``graph``) and runs the model
    in :meth:`_run`, or overrides :meth:`infer` and reads outputs with :meth:`_read` (the ONNX
    adapter, which stacks exams)."""

    # The model sees only the tensors ``prepare`` builds; the intended-use check in ``prepare``
    # (:func:`check_mammogram`) is the harness's, so input rejection cannot be the vendor's.
    harness_checks_input = True

    pkg: VendorPackage
    spec: OnnxSpec

    def _run(self, names: list[str], batch: Batch, exam: PreparedExam) -> list[np.ndarray]:
        """The outputs ``names`` (in that order) for ``batch`` of ``exam``; VendorFault if not."""
        raise NotImplementedError

    # ------------------------------------------------------------------ prepare

    def _plane(self, ds: Dataset, file: str) -> tuple[np.ndarray, Geometry]:
        i = self.spec.input
        try:
            stored = decoded(ds)
        except Exception as exc:  # pydicom/pylibjpeg raise many types for broken data
            raise VendorFault(
                f"{file}: cannot decode pixel data ({type(exc).__name__}: {str(exc)[:160]})",
                "error",
            ) from None
        rows, cols = ds.get("Rows"), ds.get("Columns")
        if stored.ndim != 2 or stored.shape != (rows, cols):
            raise VendorFault(
                f"{file}: pixel data shape {stored.shape} does not match Rows x Columns {rows} x {cols}",
                "error",
            )
        try:
            return to_model_plane(
                ds,
                i.height,
                i.width,
                pixels=i.pixels,
                orientation=i.orientation,
                resize=i.resize,
                scale=i.scale,
                stored=stored,
            )
        except (PixelError, ValueError, AttributeError, KeyError) as exc:
            raise VendorFault(
                f"{file}: cannot compute presentation pixels ({exc})", "error"
            ) from None

    def prepare(self, exam: ExamInput) -> PreparedExam:
        views: dict[tuple[str, str], tuple[np.ndarray, Plane]] = {}
        singles: list[tuple[np.ndarray, Plane]] = []
        for ref, ds in exam.images:
            lat, view = check_mammogram(ds, ref.file)
            if view not in ("CC", "MLO"):
                continue  # extra views (ML, XCCL, spot) are not part of a screening input
            plane, geometry = self._plane(ds, ref.file)
            entry = (plane, Plane(lat, view, ref.file, geometry))
            singles.append(entry)
            views.setdefault((lat, view), entry)
        unit = self.spec.input.unit
        batches: list[Batch] = []
        if unit == "image":
            if not singles:
                raise VendorFault("no CC or MLO image in the exam", "rejected")
            if self.spec.graph.batch_dynamic:
                batches.append(
                    Batch(
                        np.stack([p for p, _ in singles])[:, None],
                        tuple((m,) for _, m in singles),
                        "image",
                    )
                )
            else:
                batches.extend(Batch(p[None, None], ((m,),), "image") for p, m in singles)
        elif unit == "breast":
            for side in ("L", "R"):
                have = [(side, v) in views for v in ("CC", "MLO")]
                if not any(have):
                    continue
                if not all(have):
                    missing = [
                        f"{side}{v}" for v, h in zip(("CC", "MLO"), have, strict=True) if not h
                    ]
                    raise VendorFault(
                        f"breast unit needs CC and MLO of each imaged side; missing {', '.join(missing)}",
                        "rejected",
                    )
                planes = [views[(side, v)] for v in ("CC", "MLO")]
                batches.append(
                    Batch(
                        np.stack([p for p, _ in planes])[None], (tuple(m for _, m in planes),), side
                    )
                )
            if not batches:
                raise VendorFault("no CC or MLO image in the exam", "rejected")
        else:
            order = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))
            missing = [f"{lat}{v}" for lat, v in order if (lat, v) not in views]
            if missing:
                raise VendorFault(
                    f"exam unit needs LCC, LMLO, RCC, RMLO; missing {', '.join(missing)}",
                    "rejected",
                )
            planes = [views[k] for k in order]
            batches.append(
                Batch(
                    np.stack([p for p, _ in planes])[None], (tuple(m for _, m in planes),), "exam"
                )
            )
        return PreparedExam(exam.exam_id, tuple(batches))

    # ------------------------------------------------------------------ infer

    def _map(self, raw: float) -> float:
        if not math.isfinite(raw):
            raise VendorFault(
                f"model returned {'NaN' if math.isnan(raw) else 'inf'} as a score", "error"
            )
        return self.pkg.map_score(raw)

    def _aggregate(self, values: list[float]) -> float:
        return max(values) if self.spec.aggregate == "max" else float(sum(values) / len(values))

    def _findings(self, heat: np.ndarray, plane: Plane) -> list[Finding]:
        """Local maxima of one heatmap channel (h, w) mapped back to stored-image pixels."""
        i = self.spec.input
        h, w = heat.shape
        if not np.all(np.isfinite(heat)):
            heat = np.nan_to_num(heat, nan=-np.inf, posinf=np.finfo(np.float32).max, neginf=-np.inf)
        peaks = (heat == maximum_filter(heat, size=PEAK_WINDOW, mode="nearest")) & np.isfinite(heat)
        rows, cols = np.nonzero(peaks)
        order = np.lexsort(
            (cols, rows, -heat[rows, cols])
        )  # by value, ties by position: deterministic
        g = plane.geometry
        out: list[Finding] = []
        for k in order:
            r, c = int(rows[k]), int(cols[k])
            score = self.pkg.map_score(float(heat[r, c]))
            if score < FINDING_FLOOR:
                break
            x_model = (c + 0.5) * i.width / w
            y_model = (r + 0.5) * i.height / h
            if x_model > g.content_width or y_model > g.content_height:
                continue  # a peak in the zero padding is not on the image
            col, row = model_to_image(x_model, y_model, g)
            out.append(
                Finding(
                    plane.laterality,
                    plane.view,
                    plane.file,
                    round(col, 2),
                    round(row, 2),
                    round(score, 6),
                )
            )
            if len(out) == FINDINGS_PER_IMAGE:
                break
        return out

    def _output_names(self) -> list[str]:
        """The outputs every call asks for: score, then heatmap, then breast scores."""
        s = self.spec
        names = [s.score_output] + ([s.heatmap_output] if s.heatmap_output else [])
        return names + ([s.breast_scores_output] if s.breast_scores_output else [])

    def infer(self, prepared: PreparedExam) -> ExamOutput:
        names = self._output_names()
        # lazily: a fault in one batch's outputs ends the exam before its next call
        return self._read(prepared, (self._run(names, b, prepared) for b in prepared.batches))

    def _read(self, prepared: PreparedExam, calls: Iterable[list[np.ndarray]]) -> ExamOutput:
        """The exam's output from the outputs of each of its batches (in ``_output_names``
        order, one list per batch, in batch order); VendorFault for a malformed output."""
        image_scores: dict[str, list[float]] = {}
        breast_scores: dict[str, float] = {}
        exam_score: float | None = None
        findings: list[Finding] = []
        for batch, outputs in zip(prepared.batches, calls, strict=True):
            scores = np.asarray(outputs[0], dtype=np.float64).reshape(-1)
            if scores.shape[0] != len(batch.items):
                raise VendorFault(
                    f"score output has {scores.shape[0]} values for {len(batch.items)} inputs",
                    "error",
                )
            mapped = [self._map(float(s)) for s in scores]
            if batch.key == "image":
                for planes, s in zip(batch.items, mapped, strict=True):
                    image_scores.setdefault(planes[0].laterality, []).append(s)
            elif batch.key in ("L", "R"):
                breast_scores[batch.key] = mapped[0]
            else:
                exam_score = mapped[0]
                if self.spec.breast_scores_output:
                    per_side = np.asarray(outputs[-1], dtype=np.float64).reshape(-1)
                    if per_side.shape[0] != 2 * len(batch.items):
                        raise VendorFault(
                            f"breast_scores output has {per_side.shape[0]} values; expected 2 per exam [L, R]",
                            "error",
                        )
                    breast_scores = {
                        "L": self._map(float(per_side[0])),
                        "R": self._map(float(per_side[1])),
                    }
            if self.spec.heatmap_output:
                heat = np.asarray(outputs[1], dtype=np.float32)  # heatmap is the second name
                if heat.ndim != 4 or heat.shape[0] != len(batch.items):
                    raise VendorFault(
                        f"heatmap output has shape {heat.shape}; expected (N, C, h, w)", "error"
                    )
                for n, planes in enumerate(batch.items):
                    if heat.shape[1] == len(planes):
                        for ch, plane in enumerate(planes):
                            findings.extend(self._findings(heat[n, ch], plane))
        if image_scores:
            breast_scores = {lat: self._aggregate(v) for lat, v in sorted(image_scores.items())}
        if exam_score is None:
            exam_score = self._aggregate([breast_scores[k] for k in sorted(breast_scores)])
        findings.sort(key=lambda f: (-f.score, f.file, f.y, f.x))
        return ExamOutput(score=exam_score, breasts=breast_scores, findings=tuple(findings))


def split_rows(
    outputs: list[np.ndarray], names: list[str], parts: list[np.ndarray]
) -> list[list[np.ndarray]]:
    """The outputs of one call over ``np.concatenate(parts)``, cut back into each part's rows
    (every output has one row per input row, as in its batch-1 call)."""
    total = sum(len(p) for p in parts)
    for name, out in zip(names, outputs, strict=True):
        if out.ndim == 0 or out.shape[0] != total:
            raise VendorFault(
                f"output {name!r} of a batched call has shape {out.shape}; expected {total} rows",
                "error",
            )
    ends = np.cumsum([len(p) for p in parts]).tolist()
    return [[out[a:b] for out in outputs] for a, b in zip([0, *ends[:-1]], ends, strict=True)]


class OnnxAdapter(TensorModel):
    """A :class:`~harness.vendors.adapter.VendorAdapter` over an onnxruntime session in a worker
    process (a hung call is abandoned by killing it)."""

    def __init__(
        self, pkg: VendorPackage, *, device: str = "cpu", evidence_dir: Path | None = None
    ) -> None:
        """``evidence_dir`` is unused: a local model returns nothing besides its outputs."""
        import onnxruntime as ort

        if pkg.onnx is None:
            raise VendorPackageError(f"{pkg.source}: no onnx section; the ONNX adapter needs one")
        self.pkg = pkg
        self.spec = pkg.onnx
        self.warnings: list[str] = []
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" in available:
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                self.warnings.append(
                    "--device cuda: this onnxruntime has no CUDAExecutionProvider "
                    "(install onnxruntime-gpu); running on CPU"
                )
        elif device != "cpu":
            raise VendorPackageError(f"device {device!r} is not cpu or cuda")
        self._model = str(self.spec.model_path(pkg.root))
        self._providers = providers
        self._lock = threading.Lock()
        try:
            self._process: SessionProcess | None = SessionProcess(self._model, providers)
        except _LoadError as exc:
            raise VendorPackageError(
                f"{pkg.source}: onnxruntime cannot load {self.spec.model}: {exc}; export a valid model"
            ) from None
        used = self._process.provider
        if device == "cuda" and used != "CUDAExecutionProvider" and not self.warnings:
            self.warnings.append(f"--device cuda: CUDA provider did not start; running on {used}")
        for w in self.warnings:
            print(f"mammocert: warning: {w}", file=sys.stderr)
        self.info = AdapterInfo(
            interface="onnx",
            model_digests=dict(pkg.model_digests),
            execution_provider=used,
            batchable=self.spec.graph.batch_dynamic,
            batch_size=self.spec.batch_size,
        )

    def infer(self, prepared: PreparedExam) -> ExamOutput:
        (out,) = self.infer_batch([prepared])
        if isinstance(out, VendorFault):
            raise out
        return out

    def infer_batch(self, exams: Sequence[PreparedExam]) -> list[ExamOutput | VendorFault]:
        """Several exams in as few session calls as their batches allow: call ``j`` stacks the
        ``j``-th batch of every exam that has one (exam unit: one call of N exams; breast unit:
        up to two, the first side of each exam and then the second; image unit with a dynamic
        batch: one call of every CC/MLO image). Each exam's outputs are its rows of the call's
        outputs, read as if it had been called alone: a malformed or non-finite output is that
        exam's fault, in its slot. A failed call, or one whose outputs do not have a row per
        input, raises VendorFault (the runner then calls the exams one by one)."""
        names = self._output_names()
        outputs: list[list[list[np.ndarray]]] = [[] for _ in exams]
        for j in range(max(len(e.batches) for e in exams)):
            members = [k for k, e in enumerate(exams) if j < len(e.batches)]
            parts = [exams[k].batches[j].tensor for k in members]
            result = self._session().run(names, self.spec.input.name, parts)
            rows = [result] if len(parts) == 1 else split_rows(result, names, parts)
            for k, piece in zip(members, rows, strict=True):
                outputs[k].append(piece)
        read: list[ExamOutput | VendorFault] = []
        for exam, calls in zip(exams, outputs, strict=True):
            try:
                read.append(self._read(exam, calls))
            except VendorFault as fault:
                read.append(fault)
        return read

    def _session(self) -> SessionProcess:
        """The live worker process; a fresh one after :meth:`abandon` or a crash."""
        with self._lock:
            if self._process is not None and not self._process.alive:
                self._process.close()  # crashed: its call has already been recorded
                self._process = None
            if self._process is None:
                try:
                    self._process = SessionProcess(self._model, self._providers)
                except _LoadError as exc:
                    raise VendorFault(f"the model could not be reloaded: {exc}", "error") from None
            return self._process

    def abandon(self) -> None:
        """Give up on the call in progress (the runner's deadline passed): kill the worker
        process, so the waiting thread returns at once and nothing is left running."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.kill()

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.close()
