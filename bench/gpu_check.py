"""The GPU check (run by ``bench/gpu_check.sh``): on one NVIDIA GPU, the runner against a bare
``session.run`` loop on the same preprocessed tensors, GPU utilisation and memory, and CPU vs GPU
scores.

    python bench/gpu_check.py --cases DIR [--vendor PKG] [--exams N] [--tolerance 1e-4]

1. Every exam is prepared once (decode, presentation pixels, model planes) and kept in memory.
2. Baseline: a bare loop of ``session.run`` on the CUDA provider over those tensors: the
   fastest the GPU can score them with this model, no I/O at all.
3. The runner (``harness.runner.run_predictions``, ``--device cuda``): reads, decodes and
   prepares in its prefetch pool while the GPU infers. Target: at least 0.95x the baseline's
   exams/s, i.e. the pool keeps the GPU fed.
4. ``nvidia-smi`` is sampled every 0.2 s during the runner: mean/max utilisation, peak memory.
5. The same exams on the CPU provider: the largest |GPU - CPU| exam score must be within
   ``--tolerance`` (floating-point differences between providers; a larger one is a fault).

Exit 0 when the runner is within target and the scores agree, 1 otherwise, 2 without a usable
CUDA provider (named, with the fix).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REFERENCE_VENDOR = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"
TARGET = 0.95


class GpuSampler(threading.Thread):
    """nvidia-smi utilisation and memory, sampled until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.util: list[float] = []
        self.mem_mb: list[float] = []
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            line = out.stdout.strip().splitlines()[:1]
            if line:
                u, m = (float(x) for x in line[0].split(","))
                self.util.append(u)
                self.mem_mb.append(m)
            self._stop.wait(0.2)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self.join(timeout=2)
        if not self.util:
            return {}
        return {
            "gpu_util_mean_pct": round(sum(self.util) / len(self.util), 1),
            "gpu_util_max_pct": max(self.util),
            "gpu_mem_peak_mb": max(self.mem_mb),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--vendor", default=str(REFERENCE_VENDOR))
    ap.add_argument("--exams", type=int, default=48)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()

    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print(
            f"gpu_check: onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            f"({ort.get_available_providers()}); install onnxruntime-gpu matching the CUDA driver",
            file=sys.stderr,
        )
        return 2
    from harness.cases.manifest import load_manifest
    from harness.exam_input import load_exam
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    manifest = load_manifest(a.cases)
    exams = sorted(manifest.exams, key=lambda e: e.exam_id)[: a.exams]
    ids = [e.exam_id for e in exams]
    pkg = load_vendor_package(a.vendor)
    gpu = open_adapter(pkg, "cuda")
    if gpu.info.execution_provider != "CUDAExecutionProvider":
        print(
            f"gpu_check: the CUDA provider did not start ({gpu.info.execution_provider})",
            file=sys.stderr,
        )
        return 2
    prepared = [gpu.prepare(load_exam(manifest, e)) for e in exams]
    gpu.infer(prepared[0])  # warm-up: the worker's CUDA context, kernels, memory arena
    spec = pkg.onnx
    names = [spec.score_output] + ([spec.heatmap_output] if spec.heatmap_output else [])
    # the bare loop: an in-process CUDA session, no worker, no I/O
    bare_session = ort.InferenceSession(
        str(spec.model_path(pkg.root)), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    bare_session.run(names, {spec.input.name: prepared[0].batches[0].tensor})
    t0 = time.perf_counter()
    for p in prepared:
        for batch in p.batches:
            bare_session.run(names, {spec.input.name: batch.tensor})
    bare = len(prepared) / (time.perf_counter() - t0)

    sampler = GpuSampler()
    sampler.start()
    t0 = time.perf_counter()
    on_gpu = run_predictions(gpu, manifest, progress=False, exam_ids=ids, timeout_s=None)
    runner = len(ids) / (time.perf_counter() - t0)
    usage = sampler.stop()
    gpu.close()

    cpu = open_adapter(pkg, "cpu")
    on_cpu = run_predictions(cpu, manifest, progress=False, exam_ids=ids, timeout_s=None)
    cpu.close()
    diffs = [
        abs(g.score - c.score)
        for g, c in zip(on_gpu, on_cpu, strict=True)
        if g.score is not None and c.score is not None
    ]
    worst = max(diffs) if diffs else float("nan")
    ratio = runner / bare
    report = {
        "exams": len(ids),
        "bare_session_run_exams_per_s": round(bare, 2),
        "runner_exams_per_s": round(runner, 2),
        "ratio": round(ratio, 3),
        "target": TARGET,
        "max_abs_score_diff_gpu_vs_cpu": worst,
        "tolerance": a.tolerance,
        "ok_gpu_vs_cpu": sum(g.status == "ok" for g in on_gpu)
        == sum(c.status == "ok" for c in on_cpu),
        **usage,
    }
    print(json.dumps(report, indent=1))
    good = ratio >= TARGET and worst <= a.tolerance and report["ok_gpu_vs_cpu"]
    print(
        f"gpu_check: runner {runner:.2f} exams/s vs bare session.run {bare:.2f} ({ratio:.2f}x, "
        f"target {TARGET}x); GPU vs CPU scores within {worst:.2e} (tolerance {a.tolerance:g}): "
        + ("OK" if good else "NOT MET")
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
