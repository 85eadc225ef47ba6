"""Benchmark: the runner (prefetch pool overlapping prepare with infer) against a plain loop.

Both sides do the same work on the same exams with the same vendor package: read the four DICOM
files, compute the model planes (harness.pixels), run the ONNX session. The baseline is the
obvious sequential loop; the runner adds its prefetch pool, journal-free. Each measurement runs
in a fresh subprocess so its peak RSS (ru_maxrss) is its own; two set sizes show whether memory
stays flat as the set grows.

    python bench/bench_runner.py --cases DIR [--vendor PKG] [--sizes 24 96] [--repeat 2]

Prints one line per (mode, size) and the throughput ratio runner/baseline per size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REFERENCE_VENDOR = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"


def _child(mode: str, cases: str, vendor: str, n: int) -> dict:
    from harness.cases.manifest import load_manifest
    from harness.exam_input import load_exam
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    manifest = load_manifest(cases)
    exams = sorted(manifest.exams, key=lambda e: e.exam_id)[:n]
    pkg = load_vendor_package(vendor)
    adapter = open_adapter(pkg)
    t0 = time.perf_counter()
    if mode == "baseline":
        # the same per-exam work as the runner (read, preprocess, infer), one exam after another
        for exam in exams:
            adapter.infer(adapter.prepare(load_exam(manifest, exam)))
    else:
        run_predictions(
            adapter, manifest, progress=False, exam_ids=[e.exam_id for e in exams], timeout_s=None
        )
    wall = time.perf_counter() - t0
    return {
        "mode": mode,
        "exams": len(exams),
        "wall_s": round(wall, 3),
        "exams_per_s": round(len(exams) / wall, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--vendor", default=str(REFERENCE_VENDOR))
    ap.add_argument("--sizes", type=int, nargs="+", default=[24, 96])
    ap.add_argument("--repeat", type=int, default=2, help="runs per (mode, size); the best is kept")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.cases, args.vendor, int(args.child[1]))))
        return 0
    for n in args.sizes:
        best: dict[str, dict] = {}
        for _ in range(args.repeat):
            for mode in ("baseline", "runner"):  # interleaved, so drift hits both
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--cases",
                        args.cases,
                        "--vendor",
                        args.vendor,
                        "--child",
                        mode,
                        str(n),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if mode not in best or r["wall_s"] < best[mode]["wall_s"]:
                    best[mode] = r
        for mode in ("baseline", "runner"):
            print(json.dumps(best[mode]))
        print(
            f"size {n}: runner/baseline throughput = {best['runner']['exams_per_s'] / best['baseline']['exams_per_s']:.2f}x, "
            f"peak RSS baseline {best['baseline']['peak_rss_mb']} MB, runner {best['runner']['peak_rss_mb']} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
