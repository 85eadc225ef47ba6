"""Benchmark: harness windowing (in place) against the plain PS3.3 expressions, same run.

The resample relation upsamples the CI-size phantom 6-12x per axis, so the adapter windows images
of ~20 M pixels; the plain expressions allocate several full-size float64 temporaries each.

    python bench/bench_pixels.py [--rows 4800] [--cols 4000] [--repeat 3]

Calls alternate (plain, harness, plain, ...) so neither side always gets warm memory; prints
min / median / max seconds of each per window function, and the ratio of the medians. The plain
side's maximum is the regime of a fresh upsampled image (new full-size arrays faulted in).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.pixels import _window


def plain(x: np.ndarray, c: float, w: float, function: str, y: float) -> np.ndarray:
    """The expressions as plain expressions with temporaries (the baseline)."""
    if function == "LINEAR":
        c, w = c - 0.5, w - 1.0
        out = ((x - c) / w + 0.5) * y
        return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, y, out))
    return y / (1.0 + np.exp(-4.0 * (x - c) / w))


def timed(fn, x: np.ndarray, function: str) -> float:
    t0 = time.perf_counter()
    fn(x, 2000.0, 1500.0, function, 4095.0)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4800)
    ap.add_argument("--cols", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    x = np.random.default_rng(0).integers(0, 4096, size=(a.rows, a.cols)).astype(np.float64)
    for function in ("LINEAR", "SIGMOID"):
        with np.errstate(over="ignore"):
            assert np.array_equal(
                plain(x, 2000.0, 1500.0, function, 4095.0),
                _window(x, 2000.0, 1500.0, function, 4095.0),
            )
            pairs = [
                (timed(plain, x, function), timed(_window, x, function)) for _ in range(a.repeat)
            ]
        t_plain, t_ours = (np.array(t) for t in zip(*pairs, strict=True))

        def spread(t: np.ndarray) -> str:
            return f"{t.min():.3f} / {np.median(t):.3f} / {t.max():.3f} s"

        print(
            f"{function} ({a.rows}x{a.cols}): plain {spread(t_plain)}, harness {spread(t_ours)}; "
            f"median ratio {np.median(t_plain) / np.median(t_ours):.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
