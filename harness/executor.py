"""The executor seam: where the runner's exam-conditions are loaded, perturbed and inferred.

The runner (:mod:`harness.runner`) keeps the journal and decides which exam-conditions still
need the model; an :class:`Executor` computes those and yields one :class:`TaskOutcome` per task,
as each arrives. Two implementations:

* :class:`LocalExecutor` (here): this process, a prefetch pool of threads for
  ``load -> transform -> adapter.prepare`` and one infer thread with a deadline;
* :class:`harness.dask_executor.DaskExecutor`: the same per-task work on Dask workers, each with
  its own adapter opened from the vendor package.

What one task does, on either side, is :class:`ModelCaller`: prepare, then a timed ``infer``
with the deadline; vendor faults (any exception out of the adapter) become ``rejected``/``error``
records, so both executors give the same predictions for the same exams.

Prefetch: ``prepare`` of the next exams overlaps with ``infer`` of the current one; onnxruntime
and numpy release the GIL, so threads give real overlap without pickling sessions or datasets
between processes. OpenJPEG is not thread-safe: JPEG 2000 encoding takes
``harness.pixels.CODEC_LOCK``, and compressed pixel data is decoded by the run's decoder
(:mod:`harness.decode`: a pool of decoder processes, or nvImageCodec when the model is on CUDA),
so the decodes of the prefetched exams run in parallel instead of one at a time under the lock.

Batches: an adapter that declares ``info.batch_size`` above 1 and has ``infer_batch`` (the ONNX
adapter, ``onnx.batch_size``) gets up to that many consecutive tasks per model call. The groups
are cut from the task order alone (tasks 1-8, 9-16, ... for batch 8), never from what happens
to be prepared, so they do not depend on timing; a task whose ``prepare`` failed is recorded and
left out of its group's call. The call's deadline is ``timeout_s`` times its tasks; a call that
fails or passes it is followed by one call per task, so a faulting exam is named and the others
get the predictions they get alone. ``latency_s`` of a task scored in a group is the call's
seconds divided by its tasks. The Dask executor scores one task per call.

Timeouts: ``infer`` runs in a dedicated daemon thread and the caller waits at most ``timeout_s``.
On a timeout the exam is recorded as ``error: timeout after Ns`` and the call is abandoned: an
adapter that can stop its model (the ONNX adapter runs its session in a worker process) has its
``abandon()`` called, which ends the hung call, so no thread is left behind. A Python thread
stuck inside a native call of an adapter without ``abandon`` cannot be killed: it is left as a
daemon thread (its late result is discarded) and a fresh thread takes the next exam. If
``MAX_HUNG`` abandoned threads are still stuck, the model is considered dead: the remaining exams
are recorded as ``error`` ("not run: ...") without being journaled, so a later ``--resume`` tries
them again.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, Protocol

from harness.cases.manifest import Exam, Manifest
from harness.decode import Decoder, open_decoder
from harness.errors import ManifestError, UsageError, VendorFault
from harness.exam_input import ExamInput, load_exam
from harness.pixels import decoding_with
from harness.predictions import ORIGINAL, ExamOutput, Prediction
from harness.profile import TaskTiming
from harness.vendors.adapter import VendorAdapter

Transform = Callable[[ExamInput, str], ExamInput]
MAX_HUNG = 3
ABANDON_WAIT_S = 10.0  # how long an abandoned call may take to return once its model is stopped
_INFINITIES = (float("inf"), float("-inf"))


@dataclass(frozen=True)
class ExamTask:
    """One exam under one condition; ``case_digest`` keys the journal."""

    condition: str
    exam: Exam
    case_digest: str


@dataclass(frozen=True)
class TaskOutcome:
    """The prediction for a task; ``journaled`` is False for a record a ``--resume`` must redo
    (the exam was not run, e.g. the model is hung or its Dask worker kept dying). ``timing`` is
    what the task cost where it ran (``--profile``; machine-dependent, never in the results)."""

    task: ExamTask
    prediction: Prediction
    journaled: bool = True
    timing: TaskTiming | None = None


@dataclass(frozen=True)
class Prepared:
    """A task's model input and what loading and preparing it cost."""

    value: Any
    load_s: float
    prepare_s: float


@dataclass(frozen=True)
class ExamJob:
    """What every task of one runner call shares."""

    adapter: VendorAdapter
    manifest: Manifest
    transform: Transform | None
    timeout_s: float | None


class Executor(Protocol):
    """Computes tasks and yields their outcomes as they arrive (in any order), each task once.

    ``tasks`` is consumed lazily, at most a bounded number ahead of the outcomes, so the runner
    can record journaled results while it feeds the executor. Exceptions that are not vendor
    faults (a bad manifest, a missing transform, a worker that sees another package) propagate.
    """

    def run(self, job: ExamJob, tasks: Iterable[ExamTask]) -> Iterator[TaskOutcome]: ...

    def describe(self) -> str:
        """A short phrase for the run summary, e.g. ``local`` or ``dask tcp://h:8786, 8 workers``."""
        ...


class _InferWorker:
    """One daemon thread that runs ``infer`` calls; replaced when a call hangs."""

    def __init__(self) -> None:
        self.hung: list[threading.Thread] = []
        self._start()

    def _start(self) -> None:
        self._jobs: deque[tuple[Callable[[Any], Any], Any, Future] | None] = deque()
        self._ready = threading.Semaphore(0)
        self._thread = threading.Thread(
            target=self._loop, args=(self._jobs, self._ready), daemon=True, name="mammocert-infer"
        )
        self._thread.start()

    @staticmethod
    def _loop(jobs: deque, ready: threading.Semaphore) -> None:
        while True:
            ready.acquire()
            job = jobs.popleft()
            if job is None:
                return
            fn, arg, fut = job
            t0 = time.perf_counter()
            try:
                result = fn(arg)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as data
                fut.set_exception(exc)
            else:
                fut.set_result((result, time.perf_counter() - t0))

    def call(
        self, fn: Callable[[Any], Any], arg: Any, timeout_s: float | None
    ) -> tuple[Any, float]:
        fut: Future = Future()
        self._jobs.append((fn, arg, fut))
        self._ready.release()
        try:
            return fut.result(timeout=timeout_s)
        except FutureTimeout:
            # Abandon the stuck thread (a native call cannot be interrupted) and start a fresh one.
            self._jobs.append(None)
            self._ready.release()
            self.hung.append(self._thread)
            self._start()
            raise

    def stuck(self) -> int:
        return sum(t.is_alive() for t in self.hung)

    def reap(self, wait_s: float) -> None:
        """Wait for abandoned threads whose call was stopped; those still stuck stay counted."""
        for t in self.hung:
            t.join(wait_s)
        self.hung = [t for t in self.hung if t.is_alive()]

    def close(self) -> None:
        self._jobs.append(None)
        self._ready.release()
        self._thread.join(1.0)  # idle: it returns at once


def _fault_reason(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, VendorFault):
        return exc.status, exc.reason
    return "error", f"adapter raised {type(exc).__name__}: {str(exc)[:200]}"


class ModelCaller:
    """One adapter's per-task work: prepare (thread-safe), then infer with a deadline.

    ``infer`` calls are serialised (one infer thread per adapter, and a lock so that a deadline
    times one model call, not the queue in front of it); ``prepare`` may run in many threads.
    ``batch_size``: how many prepared tasks :meth:`infer_group` may score in one model call (the
    adapter's ``info.batch_size`` when it has ``infer_batch``, else 1)."""

    def __init__(self, adapter: VendorAdapter) -> None:
        self.adapter = adapter
        self._worker = _InferWorker()
        self._lock = threading.Lock()
        batched = callable(getattr(adapter, "infer_batch", None))
        self.batch_size = max(1, adapter.info.batch_size) if batched else 1

    @staticmethod
    def prepare(job: ExamJob, task: ExamTask) -> Prepared:
        t0 = time.perf_counter()
        exam_input = load_exam(job.manifest, task.exam)
        if task.condition != ORIGINAL:
            if job.transform is None:
                raise UsageError(
                    f"condition {task.condition!r} needs a transform; pass transform= to "
                    "run_predictions"
                )
            exam_input = job.transform(exam_input, task.condition)
        t1 = time.perf_counter()
        value = job.adapter.prepare(exam_input)
        return Prepared(value, t1 - t0, time.perf_counter() - t1)

    @staticmethod
    def fault(task: ExamTask, exc: BaseException, seconds: float = 0.0) -> TaskOutcome:
        """The record of a task whose prepare raised: harness errors propagate, the rest is data.
        ``seconds``: how long it took to fail (counted as load + prepare)."""
        if isinstance(exc, UsageError | ManifestError):
            raise exc
        status, reason = _fault_reason(exc)
        return TaskOutcome(
            task,
            Prediction.failed(task.exam.exam_id, task.condition, status, reason, None),
            timing=TaskTiming(prepare_s=seconds),
        )

    def infer(self, job: ExamJob, task: ExamTask, prepared: Prepared) -> TaskOutcome:
        prediction, journaled, calls, infer_s = self._infer(job, task, prepared.value)
        timing = TaskTiming(prepared.load_s, prepared.prepare_s, infer_s, calls)
        return TaskOutcome(task, prediction, journaled, timing)

    def infer_group(
        self, job: ExamJob, group: list[tuple[ExamTask, Prepared]]
    ) -> list[TaskOutcome]:
        """The outcomes of ``group`` (at most ``batch_size`` prepared tasks), in its order.

        More than one task: one ``infer_batch`` call with the deadline ``timeout_s`` x tasks;
        each task's ``latency_s`` is the call's seconds divided by its tasks, and the call counts
        once (on the first task) in ``--profile``. If that call raises or passes its deadline,
        each task is called alone with :meth:`infer` (the seconds already spent are shared out
        in ``--profile``), so a faulting exam is named and its neighbours are scored as if
        they had been called alone."""
        if len(group) == 1:
            return [self.infer(job, *group[0])]
        outcomes, spent = self._infer_together(job, group)
        if outcomes is not None:
            return outcomes
        alone = [self.infer(job, task, prepared) for task, prepared in group]
        if spent is None:  # no call was made (the model is considered dead)
            return alone
        return [
            replace(
                o,
                timing=replace(
                    o.timing,
                    infer_s=o.timing.infer_s + spent / len(group),
                    model_calls=o.timing.model_calls + (k == 0),
                ),
            )
            if o.timing is not None
            else o
            for k, o in enumerate(alone)
        ]

    def _infer_together(
        self, job: ExamJob, group: list[tuple[ExamTask, Prepared]]
    ) -> tuple[list[TaskOutcome] | None, float | None]:
        """One ``infer_batch`` call for ``group`` and the seconds it took; None for the outcomes
        when the call failed or timed out, and for the seconds too when the model is considered
        dead and no call was made (the per-task path then records each task)."""
        n = len(group)
        with self._lock:
            if self._worker.stuck() >= MAX_HUNG:
                return None, None
            deadline = None if job.timeout_s is None else job.timeout_s * n
            infer_batch = self.adapter.infer_batch  # type: ignore[attr-defined]
            values = [prepared.value for _, prepared in group]
            t0 = time.perf_counter()
            try:
                outs, seconds = self._worker.call(infer_batch, values, deadline)
            except FutureTimeout:
                self._abandon()
                return None, time.perf_counter() - t0
            except Exception:  # noqa: BLE001 - each exam is called alone, which names the fault
                return None, time.perf_counter() - t0
        if not isinstance(outs, list) or len(outs) != n:
            return None, seconds
        latency = seconds / n
        return [
            TaskOutcome(
                task,
                _judged(task, out, latency),
                True,
                TaskTiming(prepared.load_s, prepared.prepare_s, latency, int(k == 0)),
            )
            for k, ((task, prepared), out) in enumerate(zip(group, outs, strict=True))
        ], seconds

    def _abandon(self) -> None:
        """After a timeout: stop the adapter's model where it can, and reap the threads."""
        abandon = getattr(self.adapter, "abandon", None)
        if abandon is not None:
            abandon()
            self._worker.reap(ABANDON_WAIT_S)

    def _infer(
        self, job: ExamJob, task: ExamTask, prepared: Any
    ) -> tuple[Prediction, bool, int, float]:
        """The prediction, whether to journal it, and the model calls made and their seconds."""
        exam_id, cond = task.exam.exam_id, task.condition
        with self._lock:
            stuck = self._worker.stuck()
            if stuck >= MAX_HUNG:
                reason = f"not run: {stuck} earlier model calls are still hung"
                return Prediction.failed(exam_id, cond, "error", reason, None), False, 0, 0.0
            t0 = time.perf_counter()
            try:
                out, latency = self._worker.call(self.adapter.infer, prepared, job.timeout_s)
            except FutureTimeout:
                self._abandon()
                reason = f"timeout after {job.timeout_s:g}s"
                failed = Prediction.failed(exam_id, cond, "error", reason, job.timeout_s)
                return failed, True, 1, time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - vendor-side infer faults are data
                return _judged(task, exc, None), True, 1, time.perf_counter() - t0
        return _judged(task, out, latency), True, 1, latency

    def run(self, job: ExamJob, task: ExamTask) -> TaskOutcome:
        """Prepare and infer one task in the calling thread (a Dask worker's task)."""
        t0 = time.perf_counter()
        try:
            prepared = self.prepare(job, task)
        except (UsageError, ManifestError):
            raise
        except Exception as exc:  # noqa: BLE001 - vendor-side prepare faults are data
            return self.fault(task, exc, time.perf_counter() - t0)
        return self.infer(job, task, prepared)

    def close(self) -> None:
        self._worker.close()


def _judged(task: ExamTask, out: ExamOutput | BaseException, latency: float | None) -> Prediction:
    """The prediction of a model call's result for ``task``: a raised fault (its latency is
    not recorded), a non-finite score (an error) or an output."""
    exam_id, cond = task.exam.exam_id, task.condition
    if isinstance(out, BaseException):
        status, reason = _fault_reason(out)
        return Prediction.failed(exam_id, cond, status, reason, None)
    if out.score is None or out.score != out.score or out.score in _INFINITIES:
        reason = f"model returned a non-finite score ({out.score})"
        return Prediction.failed(exam_id, cond, "error", reason, round(latency or 0.0, 6))
    return Prediction.ok(exam_id, cond, out, round(latency or 0.0, 6))


class LocalExecutor:
    """This process: ``workers`` prefetch threads, at most ``prefetch`` tasks in flight (at least
    two groups), infer in task order on one infer thread, ``batch_size`` consecutive tasks per
    model call (:class:`ModelCaller`). Outcomes come in task order. Compressed pixel data is
    decoded by ``decoder`` (default: :func:`harness.decode.open_decoder` for the adapter's
    execution provider, opened and closed with each run)."""

    def __init__(
        self,
        workers: int | None = None,
        prefetch: int | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2)))
        self.prefetch = prefetch or 2 * self.workers
        self.decoder = decoder

    def describe(self) -> str:
        return "local"

    def run(self, job: ExamJob, tasks: Iterable[ExamTask]) -> Iterator[TaskOutcome]:
        decoder = self.decoder or open_decoder(job.adapter.info.execution_provider)
        try:
            with decoding_with(decoder):
                yield from self._run(job, tasks)
        finally:
            if decoder is not self.decoder:
                decoder.close()

    @staticmethod
    def _score(
        caller: ModelCaller, job: ExamJob, group: list[tuple[ExamTask, Future]]
    ) -> list[TaskOutcome]:
        """One group's outcomes in task order: a task whose prepare failed is its own record
        and the rest are scored together."""
        outcomes: dict[int, TaskOutcome] = {}
        ready: list[tuple[int, ExamTask, Prepared]] = []
        for k, (task, fut) in enumerate(group):
            try:
                ready.append((k, task, fut.result()))
            except (UsageError, ManifestError):
                raise
            except Exception as exc:  # noqa: BLE001 - vendor-side prepare faults are data
                outcomes[k] = caller.fault(task, exc)
        if ready:
            scored = caller.infer_group(job, [(task, prepared) for _, task, prepared in ready])
            outcomes.update(zip((k for k, _, _ in ready), scored, strict=True))
        return [outcomes[k] for k in range(len(group))]

    def _run(self, job: ExamJob, tasks: Iterable[ExamTask]) -> Iterator[TaskOutcome]:
        caller = ModelCaller(job.adapter)
        pending: deque[tuple[ExamTask, Future]] = deque()
        try:
            with ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="mammocert-prefetch"
            ) as pool:
                queue = iter(tasks)
                exhausted = False
                # at least the group being scored and the next one, being prepared meanwhile
                ahead = max(self.prefetch, 2 * caller.batch_size)
                while True:
                    while not exhausted and len(pending) < ahead:
                        task = next(queue, None)
                        if task is None:
                            exhausted = True
                            break
                        pending.append((task, pool.submit(caller.prepare, job, task)))
                    if not pending:
                        return
                    # The next batch_size tasks in task order, whatever has finished preparing:
                    # groups are fixed by the order alone, never by timing.
                    group = [pending.popleft() for _ in range(min(caller.batch_size, len(pending)))]
                    yield from self._score(caller, job, group)
        finally:
            for _, fut in pending:
                fut.cancel()
            caller.close()
