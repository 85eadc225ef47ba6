"""Generation throughput of the synthetic phantom (images/s), CI size and full detector size.

Without ``--baseline``: 1 worker vs 2 workers in the same run (ratio). With ``--baseline SRC`` (a
source tree of the code to compare against, e.g. a checkout of ``main``): the same set is built by
that tree and by this one, each in a fresh subprocess, alternating ``--repeat`` times; reports the
best time of each and their ratio, and fails unless both builds have the same manifest digest (the
set's pixels, manifest and every file hash).

Usage: python3 bench/bench_cases.py [--exams N] [--full-exams N]
       python3 bench/bench_cases.py --baseline ../base [--exams 200] [--workers 2] [--repeat 2]
       (../base: a checkout to compare with, e.g. `git worktree add ../base main`)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import build_reference_set
from harness.cases.recipe import load_recipe

HERE = Path(__file__).resolve().parents[1]

# Run in the subprocess: build with whatever `harness` its PYTHONPATH puts first.
_CHILD = """
import json, sys, time
from harness.cases.build import build_reference_set
recipe, out, exams, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
m = build_reference_set(recipe, out, exams=exams, workers=workers)
print(json.dumps({"seconds": time.perf_counter() - t0, "digest": m.digest}))
"""


def run(size: str, exams: int, workers: int) -> float:
    recipe = dataclasses.replace(load_recipe(DEFAULT_RECIPE), image_size=size, exams=exams)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_reference_set(recipe, Path(tmp) / "set", workers=workers)
        return 4 * exams / (time.perf_counter() - t0)


def build_with(src: Path, recipe: Path, exams: int, workers: int) -> tuple[float, str]:
    """(seconds, digest) of building ``exams`` of ``recipe`` with the code in ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", _CHILD, str(recipe), f"{tmp}/set", str(exams), str(workers)]
        out = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["seconds"]), str(res["digest"])


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def compare(baseline: Path, a: argparse.Namespace) -> int:
    runs = [("ci", HERE / "reference_cases" / "default.yaml", a.exams)]
    if a.full_exams:
        runs.append(("full", HERE / "reference_cases" / "full.yaml", a.full_exams))
    failed = 0
    for size, recipe, n in runs:
        times: dict[str, list[float]] = {"baseline": [], "this tree": []}
        digests: dict[str, set[str]] = {"baseline": set(), "this tree": set()}
        for _ in range(a.repeat):
            for name, src in (("baseline", baseline), ("this tree", HERE)):
                print(f"{size} {name}: building {n} exams, {load()}", flush=True)
                sec, digest = build_with(src, recipe, n, a.workers)
                times[name].append(sec)
                digests[name].add(digest)
                print(f"  {sec:.2f} s ({4 * n / sec:.2f} images/s) {digest}", flush=True)
        same = len(digests["baseline"] | digests["this tree"]) == 1
        b, t = min(times["baseline"]), min(times["this tree"])
        print(
            f"{size:4s} {n:3d} exams, {a.workers} workers: baseline {b:.2f} s, this tree {t:.2f} s "
            f"(best of {a.repeat}), speed-up {b / t:.2f}x; {4 * n / t:.2f} images/s; "
            f"digests {'identical' if same else 'DIFFER'}; {load()}"
        )
        failed |= not same
    return 1 if failed else 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exams", type=int, default=20)
    ap.add_argument("--full-exams", type=int, default=2)
    ap.add_argument("--baseline", type=Path, help="source tree to compare against (e.g. main)")
    ap.add_argument("--workers", type=int, default=2, help="with --baseline")
    ap.add_argument("--repeat", type=int, default=1, help="with --baseline")
    a = ap.parse_args()
    if a.baseline is not None:
        sys.exit(compare(a.baseline.resolve(), a))
    for size, n in (("ci", a.exams), ("full", a.full_exams)):
        if not n:
            continue
        one, two = run(size, n, 1), run(size, n, 2)
        print(
            f"{size:4s} {n:3d} exams: 1 worker {one:6.2f} images/s, 2 workers {two:6.2f} images/s, ratio {two / one:.2f}"
        )


if __name__ == "__main__":
    main()
