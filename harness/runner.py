"""The crash-safe runner: every exam of a reference set through a vendor adapter, journaled.

Pipeline (bounded, so memory does not grow with the set)::

    coordinator:  for each (condition, exam) in sorted order
                    journaled?  -> reuse (only with resume)
                    else hand the task to the executor (harness.executor)
    executor:     load -> transform(exam, condition) -> adapter.prepare -> adapter.infer, timed
                  (local: a prefetch pool of threads and one infer thread in this process;
                  dask: the same work on Dask workers, harness.dask_executor)
    coordinator:  journal.put(prediction)  (committed, as each outcome arrives)  -> progress

The journal lives on the coordinator alone, whichever executor computes: each exam-condition is
recorded once, when its outcome arrives, and a killed coordinator or worker loses at most the
tasks in flight, which ``--resume`` computes again.

Vendor faults (:class:`VendorFault` from prepare/infer, or any exception out of the vendor's
adapter code) become per-exam ``rejected``/``error`` records; the run goes on. ``latency_s`` is
the wall time of ``infer`` alone (the model's time, not the harness's loading and preprocessing).
Timeouts and hung models: :mod:`harness.executor`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cases.manifest import Manifest, load_manifest
from harness.errors import UsageError
from harness.executor import (
    ABANDON_WAIT_S,
    MAX_HUNG,
    ExamJob,
    ExamTask,
    Executor,
    LocalExecutor,
    Transform,
)
from harness.fsio import check_output_file
from harness.journal import Journal, model_digest
from harness.predictions import ORIGINAL, Prediction, write_predictions
from harness.profile import RunProfile
from harness.vendors.adapter import VendorAdapter
from harness.vendors.package import DEFAULT_TIMEOUT_S

__all__ = ["ABANDON_WAIT_S", "MAX_HUNG", "RunStats", "Transform", "run_predictions"]


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


def summary_text(stats: RunStats, adapter: VendorAdapter, executor: Executor | None = None) -> str:
    """The one-paragraph summary printed at the end of a run."""
    where = executor.describe() if executor is not None else "local"
    # the local executor groups exams per call; a Dask worker scores one exam per call
    batch = adapter.info.batch_size if where == "local" else 1
    per_call = f", {batch} exams per call" if batch > 1 else ""
    return (
        f"Predicted {stats.total} exam-condition(s) with the {adapter.info.interface} model "
        f"({adapter.info.execution_provider}{per_call}): {stats.ok} ok, {stats.rejected} rejected, {stats.error} error; "
        f"{stats.reused} reused from the journal. {stats.total - stats.reused} computed in {stats.wall_s:.1f} s "
        f"({stats.rate:.2f} exams/s)" + ("." if where == "local" else f" on {where}.")
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
    executor: Executor | None = None,
    profile: RunProfile | None = None,
) -> list[Prediction]:
    """Run every exam under every condition; returns predictions sorted by (condition, exam_id).

    ``transform(exam_input, condition)`` is applied for every condition other than ``original``.
    With a ``journal``, each result is committed before it counts, and (when ``resume``) rows
    that match model, case, condition and harness version are reused instead of recomputed.
    ``executor`` computes the rest (default: a :class:`~harness.executor.LocalExecutor` with
    ``workers`` prefetch threads and ``prefetch`` tasks in flight). ``profile`` counts each
    computed task's timing and the runner's wall time into its current phase.
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
    total = len(conds) * len(exams)
    if executor is None:
        executor = LocalExecutor(workers, prefetch)
    results: list[Prediction] = []
    counts = {"ok": 0, "rejected": 0, "error": 0}
    reused = 0
    t_start = time.perf_counter()
    bar = _progress(progress, total)
    task_id = bar.add_task("predict", total=total, rate=0.0) if bar else None
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

    def to_compute() -> Iterator[ExamTask]:
        """The tasks the journal does not answer; journaled ones are recorded as they pass."""
        nonlocal reused
        for cond in conds:
            for exam in exams:
                digest = exam.digest()
                if journal is not None and resume:
                    old = journal.get(digest, cond)
                    if old is not None:
                        reused += 1
                        record(old, digest, journaled=False)
                        continue
                yield ExamTask(cond, exam, digest)

    outcomes = executor.run(ExamJob(adapter, manifest, transform, timeout_s), to_compute())
    try:
        for outcome in outcomes:
            record(outcome.prediction, outcome.task.case_digest, outcome.journaled)
            if profile is not None:
                profile.add_task(outcome.timing)
    finally:
        outcomes.close()  # type: ignore[attr-defined]  # a generator: stops its tasks now
        if bar:
            bar.stop()
        if profile is not None:
            profile.add_runner(time.perf_counter() - t_start)
    stats = RunStats(
        len(results),
        counts["ok"],
        counts["rejected"],
        counts["error"],
        reused,
        time.perf_counter() - t_start,
    )
    if progress:
        print(summary_text(stats, adapter, executor), file=sys.stderr)
    return sorted(results, key=lambda r: (r.condition != ORIGINAL, r.condition, r.exam_id))


def predict_cli(args: Any) -> int:
    """``mammocert predict --vendor PKG --cases DIR --out FILE [--journal J --resume --device D
    --timeout S --executor local|dask --scheduler ADDRESS | --workers N --profile [FILE]]``."""
    from harness.executor_choice import ExecutorChoice
    from harness.profile import open_profile, report_profile
    from harness.vendors import load_vendor_package, open_adapter

    choice = ExecutorChoice.from_args(args)  # before anything is loaded
    profile, profile_path = open_profile(getattr(args, "profile", None))

    def phase(name: str) -> AbstractContextManager[Any]:
        return profile.phase(name) if profile is not None else nullcontext()

    with phase("setup"):
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
                f"--resume: no journal at {journal_path}; run without --resume first, or pass "
                "--journal"
            )
        device = getattr(args, "device", "cpu")
        adapter = open_adapter(pkg, device, manifest=manifest)
    try:
        with (
            phase("original"),
            choice.open(pkg, device) as executor,
            Journal(journal_path, model_digest(adapter.info.model_digests)) as journal,
        ):
            preds = run_predictions(
                adapter,
                manifest,
                journal=journal,
                timeout_s=timeout,
                progress=True,
                resume=bool(args.resume),
                executor=executor,
                profile=profile,
            )
    finally:
        adapter.close()
    with phase("write"):
        write_predictions(out, preds)
    print(f"predictions: {out}  journal: {journal_path}", file=sys.stderr)
    report_profile(profile, profile_path)
    return 0
