"""Benchmark of harness.stats: vectorised stratified bootstrap vs the per-replicate loop, DeLong at 1M.

Run: python3 bench/bench_stats.py [--loop-reps 40]
The loop baseline (resample indices, materialise, rank-based AUC per replicate, as pROC does)
is timed on a subset of replicates in the same run and extrapolated to B = 2000; the report
is the ratio. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.stats import bootstrap as bs
from harness.stats.roc import delong


def synthetic(n: int, prevalence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    s = np.round(
        1 / (1 + np.exp(-rng.normal(-2 + 1.6 * y, 1.0))), 4
    )  # 4-decimal scores, like a vendor's
    return s, y


def bench_bootstrap(n: int, prevalence: float, n_boot: int, loop_reps: int) -> None:
    s, y = synthetic(n, prevalence, 1)
    t0 = time.perf_counter()
    r = bs.bootstrap_auc(s, y, np.random.default_rng(2), n_boot=n_boot)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = bs.bootstrap_sens_at_spec(s, y, 0.9, np.random.default_rng(2), n_boot=n_boot)
    t_sens = time.perf_counter() - t0
    cases, controls = s[y == 1], s[y == 0]
    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    ci = rng.integers(0, cases.size, (loop_reps, cases.size))
    cj = rng.integers(0, controls.size, (loop_reps, controls.size))
    bs._loop_auc(cases, controls, ci, cj)
    t_loop = (time.perf_counter() - t0) / loop_reps * n_boot
    print(
        f"n={n} prevalence={prevalence:.3f} cases={cases.size} levels={np.unique(cases).size} B={n_boot}"
    )
    print(f"  vectorised AUC bootstrap   {t_vec:7.2f} s  CI {r.ci_low:.4f}-{r.ci_high:.4f}")
    print(f"  vectorised sens@spec 0.90  {t_sens:7.2f} s  CI {q.ci_low:.4f}-{q.ci_high:.4f}")
    print(
        f"  loop AUC (extrapolated from {loop_reps})  {t_loop:7.2f} s  -> speed-up x{t_loop / t_vec:.1f}"
    )


def bench_delong(n: int) -> None:
    s, y = synthetic(n, 0.1, 4)
    s = s + np.random.default_rng(5).normal(0, 1e-6, n)  # mostly distinct scores
    delong(s[:1000], y[:1000])  # warm-up
    t0 = time.perf_counter()
    r = delong(s, y)
    print(
        f"DeLong on {n} exams: {time.perf_counter() - t0:.3f} s  (AUC {r.auc:.4f}, CI {r.ci_low:.4f}-{r.ci_high:.4f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--loop-reps", type=int, default=40)
    args = ap.parse_args()
    for prev in (0.007, 0.10):
        bench_bootstrap(args.n, prev, args.n_boot, args.loop_reps)
    bench_delong(1_000_000)


if __name__ == "__main__":
    main()
