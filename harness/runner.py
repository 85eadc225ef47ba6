"""The crash-safe runner: every exam of a reference set through a vendor adapter, journaled.

Pipeline (bounded, so memory does not grow with the set)::

    main thread:  for each (condition, exam) in sorted order
                    journaled?  -> reuse (only with resume)
                    else submit to the prefetch pool, at most ``prefetch`` exams in flight
    prefetch pool (threads):  pydicom.dcmread -> transform(exam, condition) -> adapter.prepare
    infer worker (one daemon thread):  adapter.infer, timed -> latency_s
    main thread:  journal.put(prediction)  (committed)  -> progress

``prepare`` of the next exams overlaps with ``infer`` of the current one; onnxruntime and numpy
release the GIL, so threads give real overlap without pickling sessions or datasets between
processes. OpenJPEG is not thread-safe: JPEG 2000 encoding and decoding take
``harness.pixels.CODEC_LOCK`` (one at a time; without it two threads crash the process).

Timeouts: ``infer`` runs in a dedicated daemon thread and the main thread waits at most
``timeout_s``. On a timeout the exam is recorded as ``error: timeout after Ns`` and the call is
abandoned: an adapter that can stop its model (the ONNX adapter runs its session in a worker
process) has its ``abandon()`` called, which ends the hung call, so no thread is left behind
and the process exits normally. A Python thread stuck inside a native call of an adapter without
``abandon`` cannot be killed: it is left as a daemon thread (its late result is discarded) and a
fresh worker thread takes the next exam. If ``MAX_HUNG`` abandoned threads are still stuck, the
model is considered dead: the remaining exams are recorded as ``error`` ("not run: ...") without
being journaled, so a later ``--resume`` tries them again.

Vendor faults (:class:`VendorFault` from prepare/infer, or any exception out of the vendor's
adapter code) become per-exam ``rejected``/``error`` records; the run goes on. ``latency_s`` is
the wall time of ``infer`` alone (the model's time, not the harness's loading and preprocessing).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cases.manifest import Exam, Manifest, load_manifest
from harness.errors import ManifestError, UsageError, VendorFault
from harness.exam_input import ExamInput, load_exam
from harness.fsio import check_output_file
from harness.journal import Journal, model_digest
from harness.predictions import ORIGINAL, Prediction, write_predictions
from harness.vendors.adapter import VendorAdapter
from harness.vendors.package import DEFAULT_TIMEOUT_S

Transform = Callable[[ExamInput, str], ExamInput]
MAX_HUNG = 3
ABANDON_WAIT_S = 10.0  # how long an abandoned call may take to return once its model is stopped


@dataclass(frozen=True)
class RunStats:
    """Counts and timings of one runner call (for the summary and the evidence)."""

    total: int
    ok: int
    rejected: int
    error: int
    reused: int
    wall_s: float

    @property
    def rate(self) -> float:
        return (self.total - self.reused) / self.wall_s if self.wall_s > 0 else 0.0


class _InferWorker:
    """One daemon thread that runs ``infer`` calls; replaced when a call hangs."""

    def __init__(self) -> None:
        self.hung: list[threading.Thread] = []
        self._start()

    def _start(self) -> None:
        self._jobs: deque[tuple[Callable[[Any], Any], Any, Future]] = deque()
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
            self._jobs.append(None)  # type: ignore[arg-type]
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
        self._jobs.append(None)  # type: ignore[arg-type]
        self._ready.release()
        self._thread.join(1.0)  # idle: it returns at once


def _prepare(
    adapter: VendorAdapter,
    manifest: Manifest,
    exam: Exam,
    condition: str,
    transform: Transform | None,
) -> Any:
    exam_input = load_exam(manifest, exam)
    if condition != ORIGINAL:
        if transform is None:
            raise UsageError(
                f"condition {condition!r} needs a transform; pass transform= to run_predictions"
            )
        exam_input = transform(exam_input, condition)
    return adapter.prepare(exam_input)


def _fault_reason(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, VendorFault):
        return exc.status, exc.reason
    return "error", f"adapter raised {type(exc).__name__}: {str(exc)[:200]}"


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} exams/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def summary_text(stats: RunStats, adapter: VendorAdapter) -> str:
    """The one-paragraph summary printed at the end of a run."""
    return (
        f"Predicted {stats.total} exam-condition(s) with the {adapter.info.interface} model "
        f"({adapter.info.execution_provider}): {stats.ok} ok, {stats.rejected} rejected, {stats.error} error; "
        f"{stats.reused} reused from the journal. {stats.total - stats.reused} computed in {stats.wall_s:.1f} s "
        f"({stats.rate:.2f} exams/s)."
    )


def run_predictions(
    adapter: VendorAdapter,
    manifest: Manifest,
    conditions: Sequence[str] = (ORIGINAL,),
    journal: Journal | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    progress: bool = True,
    transform: Transform | None = None,
    *,
    resume: bool = True,
    workers: int | None = None,
    prefetch: int | None = None,
    exam_ids: Sequence[str] | None = None,
) -> list[Prediction]:
    """Run every exam under every condition; returns predictions sorted by (condition, exam_id).

    ``transform(exam_input, condition)`` is applied for every condition other than ``original``.
    With a ``journal``, each result is committed before it counts, and (when ``resume``) rows
    that match model, case, condition and harness version are reused instead of recomputed.
    """
    if journal is not None and journal.model_digest != model_digest(adapter.info.model_digests):
        raise UsageError(
            f"{journal.path}: journal opened for another model; open it with model_digest(adapter.info.model_digests)"
        )
    exams = sorted(manifest.exams, key=lambda e: e.exam_id)
    if exam_ids is not None:
        wanted = set(exam_ids)
        exams = [e for e in exams if e.exam_id in wanted]
    conds = sorted(dict.fromkeys(conditions), key=lambda c: (c != ORIGINAL, c))
    tasks = [(c, e) for c in conds for e in exams]
    workers = workers or max(1, min(4, (os.cpu_count() or 2)))
    prefetch = prefetch or 2 * workers
    results: list[Prediction] = []
    counts = {"ok": 0, "rejected": 0, "error": 0}
    reused = 0
    t_start = time.perf_counter()
    bar = _progress(progress, len(tasks))
    task_id = bar.add_task("predict", total=len(tasks), rate=0.0) if bar else None
    if bar:
        bar.start()

    def record(pred: Prediction, case_digest: str, journaled: bool) -> None:
        if journal is not None and journaled:
            journal.put(case_digest, pred)  # committed before it counts
        results.append(pred)
        counts[pred.status] += 1
        if bar:
            elapsed = time.perf_counter() - t_start
            bar.update(
                task_id, advance=1, rate=(len(results) - reused) / elapsed if elapsed > 0 else 0.0
            )

    worker = _InferWorker()
    pending: deque[tuple[str, Exam, str, Future]] = deque()
    try:
        with ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="mammocert-prefetch"
        ) as pool:
            queue_iter = iter(tasks)
            exhausted = False
            while True:
                while not exhausted and len(pending) < prefetch:
                    nxt = next(queue_iter, None)
                    if nxt is None:
                        exhausted = True
                        break
                    cond, exam = nxt
                    digest = exam.digest()
                    if journal is not None and resume:
                        old = journal.get(digest, cond)
                        if old is not None:
                            reused += 1
                            record(old, digest, journaled=False)
                            continue
                    pending.append(
                        (
                            cond,
                            exam,
                            digest,
                            pool.submit(_prepare, adapter, manifest, exam, cond, transform),
                        )
                    )
                if not pending:
                    break
                cond, exam, digest, fut = pending.popleft()
                try:
                    prepared = fut.result()
                except (UsageError, ManifestError):
                    raise
                except Exception as exc:  # noqa: BLE001 - vendor-side prepare faults are data
                    status, reason = _fault_reason(exc)
                    record(
                        Prediction.failed(exam.exam_id, cond, status, reason, None), digest, True
                    )
                    continue
                stuck = worker.stuck()
                if stuck >= MAX_HUNG:
                    record(
                        Prediction.failed(
                            exam.exam_id,
                            cond,
                            "error",
                            f"not run: {stuck} earlier model calls are still hung",
                            None,
                        ),
                        digest,
                        False,
                    )
                    continue
                try:
                    out, latency = worker.call(adapter.infer, prepared, timeout_s)
                except FutureTimeout:
                    abandon = getattr(adapter, "abandon", None)
                    if abandon is not None:
                        abandon()
                        worker.reap(ABANDON_WAIT_S)
                    record(
                        Prediction.failed(
                            exam.exam_id, cond, "error", f"timeout after {timeout_s:g}s", timeout_s
                        ),
                        digest,
                        True,
                    )
                    continue
                except Exception as exc:  # noqa: BLE001 - vendor-side infer faults are data
                    status, reason = _fault_reason(exc)
                    record(
                        Prediction.failed(exam.exam_id, cond, status, reason, None), digest, True
                    )
                    continue
                if (
                    out.score is None
                    or out.score != out.score
                    or out.score in (float("inf"), float("-inf"))
                ):
                    record(
                        Prediction.failed(
                            exam.exam_id,
                            cond,
                            "error",
                            f"model returned a non-finite score ({out.score})",
                            round(latency, 6),
                        ),
                        digest,
                        True,
                    )
                    continue
                record(Prediction.ok(exam.exam_id, cond, out, round(latency, 6)), digest, True)
    finally:
        for *_, fut in pending:
            fut.cancel()
        worker.close()
        if bar:
            bar.stop()
    stats = RunStats(
        len(results),
        counts["ok"],
        counts["rejected"],
        counts["error"],
        reused,
        time.perf_counter() - t_start,
    )
    if progress:
        print(summary_text(stats, adapter), file=sys.stderr)
    return sorted(results, key=lambda r: (r.condition != ORIGINAL, r.condition, r.exam_id))


def predict_cli(args: Any) -> int:
    """``mammocert predict --vendor PKG --cases DIR --out FILE [--journal J --resume --device D --timeout S]``."""
    from harness.vendors import load_vendor_package, open_adapter

    pkg = load_vendor_package(args.vendor)
    manifest = load_manifest(args.cases)
    out = check_output_file(Path(args.out), "--out")  # before the model runs, not after
    timeout = pkg.timeout_s if args.timeout is None else float(args.timeout)
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout {args.timeout}: must be a finite number of seconds > 0")
    journal_path = Path(args.journal) if args.journal else Path(str(out) + ".journal.sqlite")
    check_output_file(journal_path, "--journal")
    if args.resume and not journal_path.is_file():
        raise UsageError(
            f"--resume: no journal at {journal_path}; run without --resume first, or pass --journal"
        )
    adapter = open_adapter(pkg, getattr(args, "device", "cpu"), manifest=manifest)
    try:
        with Journal(journal_path, model_digest(adapter.info.model_digests)) as journal:
            preds = run_predictions(
                adapter,
                manifest,
                journal=journal,
                timeout_s=timeout,
                progress=True,
                resume=bool(args.resume),
            )
    finally:
        adapter.close()
    write_predictions(out, preds)
    print(f"predictions: {out}  journal: {journal_path}", file=sys.stderr)
    return 0
