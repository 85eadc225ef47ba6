"""Distributed runs: the runner's tasks computed on Dask workers (docs/distributed.md).

The coordinator (the ``mammocert`` process) keeps the journal and the runner's loop
(:mod:`harness.runner`); a :class:`DaskExecutor` submits each exam-condition the journal does not
answer as one Dask task and yields outcomes as they complete. A worker task is exactly what the
local executor does for one exam (:class:`harness.executor.ModelCaller`: load, transform,
prepare, timed infer, vendor faults as data), with an adapter the worker opens itself, once per
process, from the vendor package:

* the package reaches a worker by path (a shared file system), or, for a ``.zip`` package, as a
  copy Dask uploads to every worker (new ones included); the reference set by path;
* before its first task a worker loads the package and the manifest and checks their digests and
  the execution provider against the coordinator's; a difference is a one-line
  :class:`~harness.errors.UsageError` (exit 2), never a prediction from another model or set.

A worker that dies (killed, out of memory, its node lost) loses the tasks it held; the scheduler
runs them again on another worker (Dask's own recovery: ``distributed.scheduler.allowed-failures``
deaths per task before it gives up). A task that still cannot complete becomes an ``error``
record that is not journaled, so ``--resume`` tries it again. The coordinator records each
outcome once, as it arrives, whatever happened on the workers.

The cluster is any Dask scheduler address (``dask scheduler``, dask-jobqueue, dask-kubernetes)
or a :class:`distributed.LocalCluster` of worker processes started here (``--workers N``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cases.manifest import Manifest, load_manifest
from harness.errors import UsageError
from harness.executor import ExamJob, ExamTask, ModelCaller, TaskOutcome, Transform
from harness.predictions import Prediction
from harness.profile import TaskTiming
from harness.vendors.package import VendorPackage

CONNECT_TIMEOUT_S = 10.0  # a scheduler that does not answer in this time is not there
WORKERS_TIMEOUT_S = 120.0  # workers of a batch system may queue a while before they join
TASKS_PER_THREAD = 4  # tasks in flight per worker thread: enough to keep workers busy, bounded
# A worker process must be allowed children: the ONNX adapter runs its session in one.
WORKER_CONFIG = {"distributed.worker.daemon": False}


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to compute tasks of one runner call (sent with every task)."""

    vendor: str  # package path as workers see it, or the uploaded copy's file name
    vendor_copied: bool  # True: ``vendor`` is a file in the worker's local directory
    package_digest: str
    model_digests: tuple[tuple[str, str], ...]
    execution_provider: str
    device: str
    cases: str
    manifest_digest: str
    transform: Transform | None
    timeout_s: float | None


_OPENED: dict[tuple[str, ...], tuple[ModelCaller, Manifest]] = {}
_OPENED_LOCK = threading.Lock()


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return f"pid {os.getpid()}"


def _vendor_path(job: WorkerJob) -> Path:
    if not job.vendor_copied:
        return Path(job.vendor)
    from distributed import get_worker

    return Path(get_worker().local_directory) / job.vendor


def _open(job: WorkerJob) -> tuple[ModelCaller, Manifest]:
    """Load and check the package and the set, then open the adapter (once per process)."""
    from harness.vendors import load_vendor_package, open_adapter

    where = f"dask worker {_worker_address()}"
    vendor = _vendor_path(job)
    try:
        pkg = load_vendor_package(vendor)
        manifest = load_manifest(job.cases)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if pkg.package_digest != job.package_digest:
        raise UsageError(
            f"{where}: vendor package {vendor} has digest {pkg.package_digest}, the "
            f"coordinator's has {job.package_digest}; give every worker the same package"
        )
    if manifest.digest != job.manifest_digest:
        raise UsageError(
            f"{where}: reference set {job.cases} has digest {manifest.digest}, the "
            f"coordinator's has {job.manifest_digest}; give every worker the same set"
        )
    if multiprocessing.current_process().daemon:
        raise UsageError(
            f"{where}: a daemonic worker process cannot start the model's session process; "
            "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False (docs/distributed.md)"
        )
    adapter = open_adapter(pkg, job.device, manifest=manifest)
    info = adapter.info
    if tuple(sorted(info.model_digests.items())) != job.model_digests or (
        info.execution_provider != job.execution_provider
    ):
        adapter.close()
        raise UsageError(
            f"{where}: the model runs on {info.execution_provider} here and on "
            f"{job.execution_provider} on the coordinator; predictions would differ, so give "
            "every worker the same device and onnxruntime build"
        )
    return ModelCaller(adapter), manifest


def _opened(job: WorkerJob) -> tuple[ModelCaller, Manifest]:
    key = (job.vendor, job.package_digest, job.device, job.cases, job.manifest_digest)
    with _OPENED_LOCK:
        got = _OPENED.get(key)
        if got is None:
            got = _OPENED[key] = _open(job)
    return got


def check_worker(job: WorkerJob) -> str:
    """A worker's check before the run: open (and cache) the adapter; returns its address."""
    _opened(job)
    return _worker_address()


def compute(job: WorkerJob, task: ExamTask) -> tuple[Prediction, bool, TaskTiming | None]:
    """One task on a worker: the same work as the local executor does for one exam; its timing
    travels back with the prediction (``--profile``)."""
    caller, manifest = _opened(job)
    outcome = caller.run(ExamJob(caller.adapter, manifest, job.transform, job.timeout_s), task)
    return outcome.prediction, outcome.journaled, outcome.timing


def close_worker() -> int:
    """Close the adapters this worker process opened (their model processes end); a count."""
    with _OPENED_LOCK:
        opened = list(_OPENED.values())
        _OPENED.clear()
    for caller, _ in opened:
        caller.close()
        caller.adapter.close()
    return len(opened)


class DaskExecutor:
    """Tasks on the workers of a Dask ``client``; outcomes in completion order."""

    def __init__(
        self,
        client: Any,
        package: VendorPackage,
        device: str,
        description: str = "dask",
        window: int | None = None,
    ) -> None:
        self.client = client
        self.package = package
        self.device = device
        self._description = description
        self._window = window
        self._checked: set[tuple[str, ...]] = set()
        vendor = Path(package.source)
        self.vendor_copied = vendor.is_file()
        if self.vendor_copied:  # a .zip: every worker, present and future, gets a copy
            from distributed.diagnostics.plugin import UploadFile

            client.register_plugin(
                UploadFile(str(vendor), load=False),
                name=f"mammocert-vendor-{package.package_digest[7:23]}",
            )
            self.vendor = vendor.name
        else:
            self.vendor = str(vendor.resolve())

    def describe(self) -> str:
        return self._description

    def _threads(self) -> int:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        return max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    def _check_workers(self, job: WorkerJob) -> None:
        """Every worker present opens the package and checks its digests before any task."""
        key = (job.vendor, job.package_digest, job.device, job.cases, job.manifest_digest)
        if key in self._checked:
            return
        addresses = list(self.client.scheduler_info(n_workers=-1)["workers"])
        futures = [
            self.client.submit(check_worker, job, workers=[a], allow_other_workers=True, pure=False)
            for a in addresses
        ]
        self.client.gather(futures)
        self._checked.add(key)

    def run(self, job: ExamJob, tasks: Iterable[ExamTask]) -> Iterator[TaskOutcome]:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        info = job.adapter.info
        wjob = WorkerJob(
            vendor=self.vendor,
            vendor_copied=self.vendor_copied,
            package_digest=self.package.package_digest,
            model_digests=tuple(sorted(info.model_digests.items())),
            execution_provider=info.execution_provider,
            device=self.device,
            cases=str(job.manifest.root.resolve()),
            manifest_digest=job.manifest.digest,
            transform=job.transform,
            timeout_s=job.timeout_s,
        )
        queue = iter(tasks)
        first = next(queue, None)
        if first is None:
            return
        self._check_workers(wjob)
        window = self._window or TASKS_PER_THREAD * self._threads()
        run_id = uuid.uuid4().hex[:12]
        in_flight: dict[Any, ExamTask] = {}
        done = as_completed(loop=self.client.loop)

        def submit(task: ExamTask) -> None:
            key = f"mammocert-{run_id}-{task.condition}-{task.exam.exam_id}"
            fut = self.client.submit(compute, wjob, task, key=key, pure=False)
            in_flight[fut] = task
            done.add(fut)

        submit(first)
        for task in queue:
            submit(task)
            if len(in_flight) >= window:
                break
        try:
            for fut in done:
                task = in_flight.pop(fut)
                try:
                    prediction, journaled, timing = fut.result()
                except KilledWorker as exc:
                    reason = f"not run: the Dask workers running it kept dying ({exc})"
                    prediction = Prediction.failed(
                        task.exam.exam_id, task.condition, "error", reason[:300], None
                    )
                    journaled, timing = False, None
                yield TaskOutcome(task, prediction, journaled, timing)
                nxt = next(queue, None)
                if nxt is not None:
                    submit(nxt)
        finally:
            if in_flight:
                self.client.cancel(list(in_flight))

    def close(self) -> dict[str, int]:
        """Close the adapters the workers opened (a shared cluster lives on); per worker, how
        many it had open."""
        return self.client.run(close_worker)


def _connect(scheduler: str) -> Any:
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(
            f"--scheduler {scheduler}: no Dask scheduler answered ({detail[:160]}); start one "
            "(`dask scheduler`) or give its address, e.g. tcp://host:8786"
        ) from None


@contextmanager
def dask_executor(
    package: VendorPackage,
    device: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    cluster: Any = None,
) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on a scheduler address, a Cluster object (dask-jobqueue,
    dask-kubernetes, ...), or a ``LocalCluster`` of ``workers`` processes with one thread each,
    closed again at the end (a cluster that was handed in lives on)."""
    import dask
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        if workers is not None:
            # Held for the cluster's life: a nanny reads it again when it restarts a worker.
            stack.enter_context(dask.config.set(WORKER_CONFIG))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                )
            )
        if cluster is not None:
            client = stack.enter_context(Client(cluster, set_as_default=False))
            where = f"dask {cluster.scheduler_address}"
        else:
            assert scheduler is not None
            client = stack.enter_context(_connect(scheduler))
            where = f"dask {scheduler}"
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise UsageError(
                f"{where}: no worker joined within {WORKERS_TIMEOUT_S:g} s; start workers "
                "(`dask worker ADDRESS`) or check the cluster's queue"
            ) from None
        n = len(client.scheduler_info(n_workers=-1)["workers"])
        executor = DaskExecutor(client, package, device, f"{where} ({n} workers)")
        try:
            yield executor
        finally:
            try:
                executor.close()
            except Exception:  # noqa: BLE001 - a cluster already gone has nothing to close
                pass
