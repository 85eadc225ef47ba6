"""Benchmark of harness.programme: vectorised protocol replay and the whole analysis at 100k exams.

Run: python3 bench/bench_programme.py [--n 100000] [--repeat 3]
Baseline, in the same run: the per-exam Python loop (``harness.programme.protocols.replay_loop``,
the same rules one exam at a time) for the same protocols at the same resolved thresholds. The
report is the ratio; also the full ``analyse`` (5 protocols, 2000 bootstrap replicates, one-way,
band sweep and 4000 probabilistic draws). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.programme.analysis import analyse
from harness.programme.costs import load_costs
from harness.programme.protocols import replay, replay_loop
from harness.programme.screening import ScreeningSet
from harness.stats.reweight import screening_weights


def synthetic(n: int, seed: int = 1) -> ScreeningSet:
    """An enriched set (20 % cancers) with correlated reader errors and 4-decimal AI scores."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    hard = rng.random(n) < 0.3  # hard cases: both readers and the AI do worse
    r1 = np.where(y, rng.random(n) < np.where(hard, 0.4, 0.85), rng.random(n) < 0.025)
    r2 = np.where(y, rng.random(n) < np.where(hard, 0.4, 0.85), rng.random(n) < 0.025)
    cons = np.where(r1 != r2, rng.random(n) < np.where(y, 0.7, 0.3), r1)
    z = rng.normal(np.where(y, np.where(hard, 0.8, 2.2), 0.0), 1.0)
    s = np.round(1 / (1 + np.exp(-(z - 2))), 4)
    s[rng.random(n) < 0.002] = np.nan
    return ScreeningSet.from_arrays(y, r1, r2, cons, s, interval=y & ~cons & (rng.random(n) < 0.5))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ss = synthetic(a.n)
    w = screening_weights(ss.labels, 6.0)
    model = load_costs(region="midtjylland")
    specs = list(model.protocols)
    for run in range(a.repeat):
        t0 = time.perf_counter()
        paths = [replay(s, ss, w) for s in specs]
        t_vec = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s, p in zip(specs, paths, strict=True):
            replay_loop(s, ss, p.thresholds)
        t_loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        analyse(ss, 6.0, 1, model)
        t_all = time.perf_counter() - t0
        print(
            f"run {run + 1}: {a.n} exams, {len(specs)} protocols: replay {t_vec:.3f} s vs "
            f"per-exam loop {t_loop:.2f} s ({t_loop / t_vec:.0f}x); full analysis {t_all:.2f} s"
        )


if __name__ == "__main__":
    main()
