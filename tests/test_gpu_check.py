"""bench/gpu_check: one line and exit 2 without a GPU; its passes on the CPU provider."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from vendors.mgfactory import write_set

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_gpu_check_sh_without_a_gpu_exits_2_with_one_line():
    r = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "no NVIDIA GPU" in r.stderr


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_gpu_check_without_a_cuda_provider_exits_2_with_one_line(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    r = _gpu_check("--cases", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "no CUDAExecutionProvider" in r.stderr and "onnxruntime-gpu" in r.stderr


def test_gpu_check_runs_its_passes_on_the_cpu_provider(tmp_path):
    """Batch 1 and batch 3 of a copy of the reference package on 4 exams: on CPU the batched
    scores are the unbatched ones exactly, so the largest difference is 0."""
    cases = write_set(tmp_path / "cases", n=4)
    r = _gpu_check("--device", "cpu", "--cases", str(cases), "--exams", "4", "--batch", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    *report, summary = r.stdout.strip().splitlines()
    got = json.loads("\n".join(report))
    assert got["batch_sizes"] == [1, 3] and got["exams"] == 4 and not got["target_judged"]
    assert got["max_abs_score_diff_vs_cpu_batch1"] == 0.0 and got["same_statuses_as_cpu_batch1"]
    assert got["pinned_host_memory_offered"] is False  # a CPU build has no CUDA device
    for b, calls in ((1, 4), (3, 2)):
        assert got[f"batch{b}"]["runner_exams_per_s"] > 0
        assert got[f"batch{b}"]["bare_session_run_exams_per_s"] > 0
        assert got[f"batch{b}"]["model_calls"] == calls  # 4 exams: 1+1+1+1, then 3+1
        assert 0 < got[f"batch{b}"]["infer_thread_busy"] <= 1
    assert summary.startswith("gpu_check (cpu): runner vs bare session.run batch 1 ")
    assert summary.endswith(": OK")


def test_gpu_check_refuses_a_package_it_cannot_copy(tmp_path):
    r = _gpu_check("--device", "cpu", "--cases", str(tmp_path), "--vendor", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "vendor.yaml" in r.stderr
