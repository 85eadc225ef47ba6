"""Benchmark: inference cost of the reference model's exported graph variants.

Exports, with the same random weights, the shipped architecture (`train_model` default), the
same with the flip mean (`--flip-tta`) and the prewhitened CFAR variant with the flip mean
(`--prewhiten --flip-tta`), and times one exam (1, 4, 512, 416) through onnxruntime on CPU with
two threads. The baseline is the shipped architecture in the same run; weights do not change the
cost, so no training is needed (PyTorch is: pip install -e '.[train]').

    python bench/bench_reference_graph.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def seconds_per_exam(path: Path, x: np.ndarray, repeat: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    session.run(None, {"image": x})  # warm-up
    best = []
    for _ in range(3):  # best of three blocks: the least disturbed by other work
        t0 = time.perf_counter()
        for _ in range(repeat):
            session.run(None, {"image": x})
        best.append((time.perf_counter() - t0) / repeat)
    return min(best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20, help="exams per timed block")
    args = ap.parse_args()

    import torch

    from harness.reference import train_model as tm

    kernel = tm.symmetrise(np.random.default_rng(0).normal(size=(tm.PW_SIZE, tm.PW_SIZE)))
    x = np.random.default_rng(1).random((1, 4, tm.HEIGHT, tm.WIDTH)).astype(np.float32)
    variants = {
        "shipped (no flip)": (None, False),
        "shipped + flip mean": (None, True),
        "prewhiten + flip mean": (kernel.astype(np.float32), True),
    }
    times = {}
    with tempfile.TemporaryDirectory() as d:
        for name, (k, flip) in variants.items():
            torch.manual_seed(0)
            path = Path(d) / "model.onnx"
            tm.export(tm.make_net(k).eval(), 1.0, 0.0, path, flip=flip)
            times[name] = seconds_per_exam(path, x, args.repeat)
    base = times["shipped (no flip)"]
    for name, t in times.items():
        print(f"{name:24} {1000 * t:8.1f} ms/exam  {t / base:5.2f}x the shipped graph")


if __name__ == "__main__":
    main()
