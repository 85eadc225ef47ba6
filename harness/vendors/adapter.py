"""The one plug-in seam for vendor models: :class:`VendorAdapter`, plus a shipped fake.

An adapter works in two stages so the runner can overlap them: ``prepare`` (CPU work on the
decoded DICOM datasets: pixels, tensors, re-identified UIDs; thread-safe, run in the prefetch
pool) and ``infer`` (talk to the model: ONNX session, DICOM node or REST service). Either stage
raises :class:`harness.errors.VendorFault` for a per-exam fault; the runner records it as data.
An adapter may also score several exams in one call (``infer_batch``, see below).

Example::

    adapter = FakeAdapter(lambda exam: ExamOutput(score=0.5, breasts={"L": 0.5, "R": 0.1}))
    out = adapter.infer(adapter.prepare(exam_input))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.exam_input import ExamInput
from harness.predictions import ExamOutput


@dataclass(frozen=True)
class AdapterInfo:
    """Identity of the model behind an adapter, bound into results and attestations."""

    interface: str
    model_digests: Mapping[str, str] = field(default_factory=dict)  # artifact name -> sha256 hex
    execution_provider: str = "n/a"
    batchable: bool = False
    # exams the local executor hands to one ``infer_batch`` call (1: ``infer``, one exam a call)
    batch_size: int = 1


@runtime_checkable
class VendorAdapter(Protocol):
    """A vendor model behind one interface (onnx, dicom, rest)."""

    info: AdapterInfo

    def prepare(self, exam: ExamInput) -> Any:
        """CPU-side preparation of one exam; raise VendorFault('...', 'rejected') for invalid input."""
        ...

    def infer(self, prepared: Any) -> ExamOutput:
        """Score one prepared exam; raise VendorFault for a model fault."""
        ...

    # An adapter whose ``info.batch_size`` is above 1 also has
    # ``infer_batch(prepared: Sequence[Any]) -> list[ExamOutput | VendorFault]``: several
    # exams in one model call, a fault of one exam's output in its slot, a fault of the call
    # raised (the executor then scores each exam with ``infer``). It is optional, like
    # ``abandon()`` (stop a hung call; see harness.executor), so neither is in this protocol.

    def close(self) -> None:
        """Release sessions, sockets and servers."""
        ...


class FakeAdapter:
    """An adapter driven by a Python function; for tests and for vendors trying the harness."""

    def __init__(
        self, fn: Callable[[ExamInput], ExamOutput], info: AdapterInfo | None = None
    ) -> None:
        self._fn = fn
        self.info = info or AdapterInfo(interface="fake", model_digests={"fake": "0" * 64})

    def prepare(self, exam: ExamInput) -> ExamInput:
        return exam

    def infer(self, prepared: ExamInput) -> ExamOutput:
        return self._fn(prepared)

    def close(self) -> None:
        pass
