"""Generation throughput of the synthetic phantom (images/s), CI size and full detector size,
1 worker vs 2 workers in the same run (ratio). Usage: python3 bench/bench_cases.py [--exams N]"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import build_reference_set
from harness.cases.recipe import load_recipe


def run(size: str, exams: int, workers: int) -> float:
    recipe = dataclasses.replace(load_recipe(DEFAULT_RECIPE), image_size=size, exams=exams)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_reference_set(recipe, Path(tmp) / "set", workers=workers)
        return 4 * exams / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exams", type=int, default=20)
    ap.add_argument("--full-exams", type=int, default=2)
    a = ap.parse_args()
    for size, n in (("ci", a.exams), ("full", a.full_exams)):
        one, two = run(size, n, 1), run(size, n, 2)
        print(
            f"{size:4s} {n:3d} exams: 1 worker {one:6.2f} images/s, 2 workers {two:6.2f} images/s, ratio {two / one:.2f}"
        )


if __name__ == "__main__":
    main()
