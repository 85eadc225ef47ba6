"""The GPU check (run by ``bench/gpu_check.sh``): on one NVIDIA GPU, the runner against a bare
``session.run`` loop on the same preprocessed tensors, at batch 1 and at a declared batch size,
GPU utilisation and memory, and CPU vs GPU scores.

    python bench/gpu_check.py --cases DIR [--vendor PKG] [--exams N] [--batch 8]
                              [--tolerance 1e-4] [--device cuda|cpu]

1. Two copies of the package (``--vendor``, default the reference vendor) in a temporary
   directory, one with ``onnx.batch_size: 1`` and one with ``onnx.batch_size: N`` (``--batch``;
   the package itself is not touched).
2. Every exam is prepared once (decode, presentation pixels, model planes) and kept in memory.
3. For each batch size, a bare loop of ``session.run`` in this process on those tensors, N
   exams per call exactly as the runner groups them (``OnnxAdapter.infer_batch``'s stacking):
   the fastest the GPU can score them with this model, no I/O at all; then the runner
   (``harness.runner.run_predictions``, ``--device cuda``), which reads, decodes and prepares in
   its prefetch pool while the GPU infers. Target: the runner at least 0.95x its bare loop's
   exams/s at both batch sizes, i.e. the pool keeps the GPU fed.
4. ``nvidia-smi`` is sampled every 0.2 s during each runner pass: mean/max utilisation, peak
   memory; and the runner's own account (``--profile``'s figures): its model calls, the share
   of the pass its infer thread was in a call, and load + prepare seconds per exam, which say
   whether a shortfall is the feeding (the thread mostly idle, waiting for prepared exams) or
   the calls themselves.
5. The same exams on the CPU provider (batch 1): the largest |GPU - CPU| exam score of either
   GPU pass must be within ``--tolerance`` (floating-point differences between providers and
   batch sizes; a larger one is a fault), with the same statuses.

``--device cpu`` runs all of it on the CPU provider without ``nvidia-smi``: a check of the
script's own logic on a machine without a GPU (the throughput target is reported, not judged).

Exit 0 when the runners are within target and the scores agree, 1 otherwise, 2 without a usable
CUDA provider (named, with the fix).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REFERENCE_VENDOR = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"
TARGET = 0.95
PROVIDERS = {
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}


class GpuSampler(threading.Thread):
    """nvidia-smi utilisation and memory, sampled until stopped (nothing without a GPU)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(daemon=True)
        self.enabled = enabled
        self.util: list[float] = []
        self.mem_mb: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while self.enabled and not self._halt.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            line = out.stdout.strip().splitlines()[:1]
            if line:
                u, m = (float(x) for x in line[0].split(","))
                self.util.append(u)
                self.mem_mb.append(m)
            self._halt.wait(0.2)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join(timeout=2)
        if not self.util:
            return {}
        return {
            "gpu_util_mean_pct": round(sum(self.util) / len(self.util), 1),
            "gpu_util_max_pct": max(self.util),
            "gpu_mem_peak_mb": max(self.mem_mb),
        }


def package_copy(src: Path, dest: Path, batch_size: int) -> Path:
    """A copy of the package at ``src`` whose vendor.yaml declares ``onnx.batch_size``."""
    shutil.copytree(src, dest)
    yml = dest / "vendor.yaml"
    data = yaml.safe_load(yml.read_text(encoding="utf-8"))
    data["onnx"]["batch_size"] = batch_size
    yml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dest


def pinned_memory_offered(ort) -> bool:
    """Whether this onnxruntime build offers page-locked host memory for CUDA (a plugin
    provider's HOST_ACCESSIBLE memory; the runner does not use it, see ``run_bound``)."""
    try:
        return any(
            d.ep_name == "CUDAExecutionProvider"
            and d.memory_info(ort.OrtDeviceMemoryType.HOST_ACCESSIBLE) is not None
            for d in ort.get_ep_devices()
        )
    except (AttributeError, RuntimeError):  # an older build without the plugin-provider API
        return False


def bare_loop(session, names: list[str], input_name: str, prepared: list, batch: int) -> float:
    """Exams/s of ``session.run`` over the prepared exams, ``batch`` exams per call, stacked
    as ``OnnxAdapter.infer_batch`` stacks them (call j: the j-th batch of every exam)."""
    groups = [prepared[k : k + batch] for k in range(0, len(prepared), batch)]
    calls = [
        np.concatenate([e.batches[j].tensor for e in group if j < len(e.batches)])
        for group in groups
        for j in range(max(len(e.batches) for e in group))
    ]
    session.run(names, {input_name: calls[0]})  # warm-up: kernels and memory for this shape
    t0 = time.perf_counter()
    for tensor in calls:
        session.run(names, {input_name: tensor})
    return len(prepared) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True)
    ap.add_argument("--vendor", default=str(REFERENCE_VENDOR))
    ap.add_argument("--exams", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8, help="the declared batch size to check")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--device", choices=sorted(PROVIDERS), default="cuda")
    a = ap.parse_args()
    if not 2 <= a.batch <= 256:
        print(f"gpu_check: --batch {a.batch}: give 2 to 256 (batch 1 runs anyway)", file=sys.stderr)
        return 2

    import onnxruntime as ort

    on_gpu = a.device == "cuda"
    if on_gpu and "CUDAExecutionProvider" not in ort.get_available_providers():
        print(
            f"gpu_check: onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            f"({ort.get_available_providers()}); install onnxruntime-gpu matching the CUDA driver",
            file=sys.stderr,
        )
        return 2
    if not (Path(a.vendor) / "vendor.yaml").is_file():
        print(
            f"gpu_check: --vendor {a.vendor}: not a package directory with vendor.yaml; "
            "unzip a .zip package first",
            file=sys.stderr,
        )
        return 2
    from harness.errors import MammocertError

    try:
        return check(a, on_gpu)
    except MammocertError as exc:  # a bad set or package: one line, as the CLI says it
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2


def check(a: argparse.Namespace, on_gpu: bool) -> int:
    """The passes of the module docstring; the exit status."""
    import onnxruntime as ort

    from harness.cases.manifest import load_manifest
    from harness.exam_input import load_exam
    from harness.profile import RunProfile
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    manifest = load_manifest(a.cases)
    exams = sorted(manifest.exams, key=lambda e: e.exam_id)[: a.exams]
    ids = [e.exam_id for e in exams]
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        pkgs = {
            b: load_vendor_package(package_copy(Path(a.vendor), work / f"batch{b}", b))
            for b in (1, a.batch)
        }
        spec = pkgs[1].onnx
        names = [spec.score_output] + ([spec.heatmap_output] if spec.heatmap_output else [])
        names += [spec.breast_scores_output] if spec.breast_scores_output else []
        bare_session = ort.InferenceSession(
            str(spec.model_path(pkgs[1].root)), providers=PROVIDERS[a.device]
        )
        report: dict = {
            "device": a.device,
            "exams": len(ids),
            "batch_sizes": [1, a.batch],
            "pinned_host_memory_offered": pinned_memory_offered(ort),
        }
        passes: dict[int, list] = {}
        ratios: dict[int, float] = {}
        for b, pkg in pkgs.items():
            adapter = open_adapter(pkg, a.device)
            if on_gpu and adapter.info.execution_provider != "CUDAExecutionProvider":
                print(
                    f"gpu_check: the CUDA provider did not start ({adapter.info.execution_provider})",
                    file=sys.stderr,
                )
                adapter.close()
                return 2
            prepared = [adapter.prepare(load_exam(manifest, e)) for e in exams]
            adapter.infer_batch(prepared[:b])  # warm-up: the worker's context, kernels, arena
            bare = bare_loop(bare_session, names, spec.input.name, prepared, b)
            del prepared
            sampler = GpuSampler(on_gpu)
            sampler.start()
            profile = RunProfile()
            t0 = time.perf_counter()
            with profile.phase("runner") as spent:
                passes[b] = run_predictions(
                    adapter, manifest, progress=False, exam_ids=ids, timeout_s=None, profile=profile
                )
            wall = time.perf_counter() - t0
            usage = sampler.stop()
            adapter.close()
            ratios[b] = len(ids) / wall / bare
            report[f"batch{b}"] = {
                "bare_session_run_exams_per_s": round(bare, 2),
                "runner_exams_per_s": round(len(ids) / wall, 2),
                "ratio": round(ratios[b], 3),
                # where a shortfall comes from: the infer thread busy all the time means the
                # model calls (stacking, transport, the session) limit; less, the preparation
                "model_calls": spent.model_calls,
                "infer_thread_busy": round(spent.infer_s / wall, 3),
                "load_prepare_s_per_exam": round((spent.load_s + spent.prepare_s) / len(ids), 4),
                **usage,
            }
        cpu = open_adapter(pkgs[1], "cpu")
        on_cpu = run_predictions(cpu, manifest, progress=False, exam_ids=ids, timeout_s=None)
        cpu.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    worst = 0.0
    same_status = True
    for run in passes.values():
        for g, c in zip(run, on_cpu, strict=True):
            same_status &= g.status == c.status
            if g.score is not None and c.score is not None:
                worst = max(worst, abs(g.score - c.score))
    report.update(
        {
            "target": TARGET,
            "target_judged": on_gpu,
            "max_abs_score_diff_vs_cpu_batch1": worst,
            "tolerance": a.tolerance,
            "same_statuses_as_cpu_batch1": same_status,
        }
    )
    print(json.dumps(report, indent=1))
    fed = all(r >= TARGET for r in ratios.values()) or not on_gpu
    good = fed and worst <= a.tolerance and same_status
    shown = ", ".join(f"batch {b} {r:.2f}x" for b, r in ratios.items())
    print(
        f"gpu_check ({a.device}): runner vs bare session.run {shown} (target {TARGET}x"
        + ("" if on_gpu else ", not judged on cpu")
        + f"); scores vs CPU batch 1 within {worst:.2e} (tolerance {a.tolerance:g}): "
        + ("OK" if good else "NOT MET")
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
