"""Benchmark: the Dask executor (a LocalCluster of worker processes) against the local runner.

One run, one machine, the same exams, conditions and vendor package:

1. the local runner (prefetch pool + infer thread), journal-free, timed;
2. a ``LocalCluster`` of ``--workers`` processes with one thread each: started (timed), warmed
   (each worker opens the model once), then the same tasks through the Dask executor, timed,
   with Dask's task stream recording each task's compute time on its worker; the predictions
   must equal the local ones (``latency_s`` aside), or the script fails;
3. the per-task costs: compute on a worker, the rest of a worker's time per task (scheduling,
   transfer, idle), the coordinator's dispatch rate with tasks that do nothing (``--noop-window``
   in flight, as a large cluster's window would be), and one journal commit (SQLite WAL,
   ``synchronous=FULL``);
4. a projection for ``--project`` exam-conditions on N workers from those costs: the workers'
   share ``tasks x (compute + overhead) / N`` against the coordinator's serial share
   ``tasks x (dispatch + commit)``, whichever is larger, plus the measured cluster start.

    python bench/bench_dask.py --cases DIR [--vendor PKG] [--exams 24] [--conditions original mirror]

Prints JSON lines and a summary; quote the summary in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_VENDOR = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"


def _noop(x: int) -> int:
    return x


def _dispatch_rate(client, n: int, window: int) -> float:
    """Tasks per second the coordinator and scheduler sustain with the executor's pattern
    (bounded window, as_completed, one result fetched per task) when the tasks do nothing."""
    from distributed import as_completed

    done = as_completed(loop=client.loop)
    t0 = time.perf_counter()
    submitted = 0
    while submitted < min(window, n):
        done.add(client.submit(_noop, submitted, pure=False))
        submitted += 1
    for fut in done:
        fut.result()
        if submitted < n:
            done.add(client.submit(_noop, submitted, pure=False))
            submitted += 1
    return n / (time.perf_counter() - t0)


def _commit_s(n: int = 200) -> float:
    """Seconds per journal commit (the coordinator's one serial write per result)."""
    from harness.journal import Journal
    from harness.predictions import Prediction

    with (
        tempfile.TemporaryDirectory() as d,
        Journal(Path(d) / "j.sqlite", "sha256:" + "0" * 64) as j,
    ):
        preds = [
            Prediction.failed(f"E{k:06d}", "original", "error", "bench", None) for k in range(n)
        ]
        t0 = time.perf_counter()
        for k, p in enumerate(preds):
            j.put(f"sha256:{k:064d}", p)
        return (time.perf_counter() - t0) / n


def _strip(preds) -> list[str]:
    out = []
    for p in preds:
        d = json.loads(p.to_json())
        d.pop("latency_s")
        out.append(json.dumps(d, sort_keys=True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--vendor", default=str(REFERENCE_VENDOR))
    ap.add_argument("--exams", type=int, default=24)
    ap.add_argument("--conditions", nargs="+", default=["original", "mirror"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--noop-tasks", type=int, default=2000)
    ap.add_argument(
        "--noop-window",
        type=int,
        default=256,
        help="no-op tasks in flight: the window of a large cluster (4 per worker thread)",
    )
    ap.add_argument("--project", type=int, default=100_000, help="exam-conditions to project")
    ap.add_argument("--nodes", type=int, nargs="+", default=[2, 8, 32, 128, 512])
    args = ap.parse_args()

    import dask
    from distributed import Client, LocalCluster, get_task_stream

    from harness.cases.manifest import load_manifest
    from harness.dask_executor import WORKER_CONFIG, DaskExecutor
    from harness.perturb.registry import apply_condition
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    manifest = load_manifest(args.cases)
    exam_ids = [e.exam_id for e in sorted(manifest.exams, key=lambda e: e.exam_id)][: args.exams]
    pkg = load_vendor_package(args.vendor)
    adapter = open_adapter(pkg)
    tasks = len(exam_ids) * len(args.conditions)

    def run(executor=None):
        t0 = time.perf_counter()
        preds = run_predictions(
            adapter,
            manifest,
            args.conditions,
            transform=apply_condition,
            progress=False,
            timeout_s=None,
            exam_ids=exam_ids,
            executor=executor,
        )
        return preds, time.perf_counter() - t0

    local, local_s = run()
    print(json.dumps({"mode": "local", "tasks": tasks, "wall_s": round(local_s, 3)}))

    with dask.config.set(WORKER_CONFIG):
        t0 = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster, set_as_default=False)
        client.wait_for_workers(args.workers)
        start_s = time.perf_counter() - t0
        try:
            executor = DaskExecutor(client, pkg, "cpu")
            t0 = time.perf_counter()
            run_predictions(  # warm-up: each worker checks the package and opens the model
                adapter, manifest, progress=False, exam_ids=exam_ids[:1], executor=executor
            )
            warm_s = time.perf_counter() - t0
            with get_task_stream(client) as ts:
                dist, dask_s = run(executor)
            computes = [
                sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
                for t in ts.data
                if str(t["key"]).startswith("mammocert-")
            ]
            if _strip(dist) != _strip(local):
                print("FAIL: the Dask predictions differ from the local ones", file=sys.stderr)
                return 1
            threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
            rate = _dispatch_rate(client, args.noop_tasks, args.noop_window)
            executor.close()
        finally:
            client.close()
            cluster.close()
    adapter.close()
    commit = _commit_s()

    compute = statistics.fmean(computes)
    worker_per_task = dask_s * threads / tasks  # a worker thread's wall time per task
    overhead = max(0.0, worker_per_task - compute)
    dispatch = 1.0 / rate
    print(
        json.dumps(
            {
                "mode": f"dask LocalCluster {args.workers}x1",
                "tasks": tasks,
                "wall_s": round(dask_s, 3),
                "cluster_start_s": round(start_s, 2),
                "warm_up_s": round(warm_s, 2),
                "compute_per_task_s": round(compute, 4),
                "worker_time_per_task_s": round(worker_per_task, 4),
                "overhead_per_task_s": round(overhead, 4),
                "noop_dispatch_per_s": round(rate, 1),
                "journal_commit_s": round(commit, 5),
                "identical_predictions": True,
            }
        )
    )
    print(
        f"{tasks} exam-conditions ({len(exam_ids)} exams x {len(args.conditions)} conditions), "
        f"{pkg.name}: local {local_s:.2f} s, Dask LocalCluster({args.workers} workers x 1 thread) "
        f"{dask_s:.2f} s: Dask/local throughput = {local_s / dask_s:.2f}x; predictions identical"
    )
    print(
        f"per task: compute on a worker {compute * 1e3:.1f} ms, worker time per task "
        f"{worker_per_task * 1e3:.1f} ms, so overhead {overhead * 1e3:.1f} ms "
        f"({overhead / worker_per_task:.0%}); coordinator: dispatch {dispatch * 1e3:.2f} ms "
        f"({rate:.0f} no-op tasks/s), journal commit {commit * 1e3:.2f} ms; cluster start "
        f"{start_s:.1f} s, first task per worker (model load) {warm_s:.1f} s"
    )
    serial = args.project * (dispatch + commit)
    print(f"projection for {args.project} exam-conditions (worker threads like these):")
    for n in args.nodes:
        parallel = args.project * (compute + overhead) / n
        total = max(parallel, serial) + start_s + warm_s
        bound = "workers" if parallel >= serial else "coordinator"
        print(
            f"  N={n:>4}: {total / 3600:6.2f} h ({bound}-bound; workers {parallel / 3600:.2f} h, "
            f"coordinator {serial / 3600:.2f} h)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
