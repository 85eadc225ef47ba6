"""The local executor's batches: fixed groups of consecutive tasks, faults kept per exam, the
deadline of a group, and the same predictions as one exam per call."""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from vendors.mgfactory import hanging_model, write_package, write_set

from harness.cases.manifest import load_manifest
from harness.errors import VendorFault
from harness.exam_input import ExamInput
from harness.executor import ExamJob, ExamTask, LocalExecutor
from harness.predictions import ORIGINAL, ExamOutput
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter
from harness.vendors.adapter import AdapterInfo

REFERENCE_VENDOR = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("executor") / "cases", n=8)


def _score(exam_id: str) -> float:
    return int(exam_id[1:]) / 10


class BatchedFake:
    """An adapter with ``infer_batch``: records each call's exam ids; ``rules`` maps an exam id
    to what the model does with it (``reject`` in prepare, ``fault``/``nan`` in its output
    slot, ``poison``: a batched call containing it raises, ``hang``: any call containing it
    waits until ``release`` is set)."""

    def __init__(self, batch_size: int, rules: dict[str, str] | None = None) -> None:
        self.info = AdapterInfo("fake", {"fake": "0" * 64}, batch_size=batch_size)
        self.rules = rules or {}
        self.groups: list[list[str]] = []
        self.singles: list[str] = []
        self.release = threading.Event()
        self._rng = np.random.default_rng()  # prepare times vary from run to run on purpose

    def prepare(self, exam: ExamInput) -> str:
        time.sleep(float(self._rng.uniform(0, 0.03)))
        if self.rules.get(exam.exam_id) == "reject":
            raise VendorFault("not a screening exam", "rejected")
        return exam.exam_id

    def _output(self, exam_id: str) -> ExamOutput | VendorFault:
        rule = self.rules.get(exam_id)
        if rule == "fault":
            return VendorFault(f"{exam_id}: implant", "rejected")
        score = float("nan") if rule == "nan" else _score(exam_id)
        return ExamOutput(score, {"L": score, "R": 0.0})

    def infer_batch(self, exam_ids: list[str]) -> list[ExamOutput | VendorFault]:
        self.groups.append(list(exam_ids))
        if any(self.rules.get(e) == "hang" for e in exam_ids):
            self.release.wait(60)
        if any(self.rules.get(e) == "poison" for e in exam_ids):
            raise RuntimeError("CUDA error: an illegal memory access")
        return [self._output(e) for e in exam_ids]

    def infer(self, exam_id: str) -> ExamOutput:
        self.singles.append(exam_id)
        if self.rules.get(exam_id) == "hang":
            self.release.wait(60)
        if self.rules.get(exam_id) == "poison":
            raise VendorFault(f"{exam_id}: onnxruntime failed", "error")
        out = self._output(exam_id)
        if isinstance(out, VendorFault):
            raise out
        return out

    def close(self) -> None:
        self.release.set()


def _outcomes(adapter, cases: Path, timeout_s: float | None = 30.0) -> list:
    manifest = load_manifest(cases)
    tasks = [ExamTask(ORIGINAL, e, e.exam_id) for e in manifest.exams]
    job = ExamJob(adapter, manifest, None, timeout_s)
    return list(LocalExecutor(workers=4, prefetch=2).run(job, tasks))


def test_groups_are_consecutive_tasks_whatever_finishes_preparing_first(cases):
    ids = [f"E{k:04d}" for k in range(8)]
    for _ in range(3):
        adapter = BatchedFake(3, {"E0004": "reject"})
        outcomes = _outcomes(adapter, cases)
        # E0004 is rejected in prepare: recorded in its place, left out of its group's call
        assert adapter.groups == [ids[0:3], ["E0003", "E0005"], ids[6:8]]
        assert adapter.singles == []
        assert [o.task.exam.exam_id for o in outcomes] == ids
        assert [o.prediction.status for o in outcomes] == ["ok"] * 4 + ["rejected"] + ["ok"] * 3
        assert [o.prediction.score for o in outcomes if o.prediction.status == "ok"] == [
            _score(e) for e in ids if e != "E0004"
        ]
        # one model call per group, counted on its first task
        assert [o.timing.model_calls for o in outcomes] == [1, 0, 0, 1, 0, 0, 1, 0]


def test_batch_one_is_one_call_per_exam(cases):
    adapter = BatchedFake(1)
    outcomes = _outcomes(adapter, cases)
    assert adapter.groups == [] and adapter.singles == [f"E{k:04d}" for k in range(8)]
    assert all(o.prediction.status == "ok" for o in outcomes)


def test_a_fault_in_one_exams_output_is_that_exams_alone(cases):
    adapter = BatchedFake(4, {"E0001": "fault", "E0002": "nan"})
    by_id = {o.task.exam.exam_id: o.prediction for o in _outcomes(adapter, cases)}
    assert adapter.singles == [] and len(adapter.groups) == 2
    assert (by_id["E0001"].status, by_id["E0001"].error) == ("rejected", "E0001: implant")
    assert by_id["E0002"].status == "error" and "non-finite score (nan)" in by_id["E0002"].error
    assert all(by_id[e].status == "ok" for e in by_id if e not in ("E0001", "E0002"))


def test_a_failing_group_call_is_followed_by_one_call_per_exam(cases):
    adapter = BatchedFake(4, {"E0005": "poison"})
    by_id = {o.task.exam.exam_id: o for o in _outcomes(adapter, cases)}
    assert adapter.groups == [[f"E{k:04d}" for k in range(4)], [f"E{k:04d}" for k in range(4, 8)]]
    assert adapter.singles == [f"E{k:04d}" for k in range(4, 8)]
    poisoned = by_id["E0005"].prediction
    assert (poisoned.status, poisoned.error) == ("error", "E0005: onnxruntime failed")
    assert all(
        by_id[e].prediction.status == "ok" and by_id[e].prediction.score == _score(e)
        for e in by_id
        if e != "E0005"
    )
    # the failed call and the four single calls: five model calls for that group
    assert sum(by_id[f"E{k:04d}"].timing.model_calls for k in range(4, 8)) == 5


def test_a_group_gets_the_deadline_of_its_exams_then_each_exam_its_own(cases):
    adapter = BatchedFake(3, {"E0001": "hang"})
    t0 = time.monotonic()
    try:
        outcomes = _outcomes(adapter, cases, timeout_s=0.4)
    finally:
        adapter.release.set()
    elapsed = time.monotonic() - t0
    by_id = {o.task.exam.exam_id: o.prediction for o in outcomes}
    assert (by_id["E0001"].status, by_id["E0001"].error) == ("error", "timeout after 0.4s")
    assert all(by_id[e].status == "ok" for e in by_id if e != "E0001")
    assert adapter.singles == ["E0000", "E0001", "E0002"]
    assert elapsed >= 3 * 0.4 + 0.4  # the group's deadline, then E0001's own


def test_latency_of_an_exam_in_a_group_is_its_share_of_the_call(cases):
    class Slow(BatchedFake):
        def infer_batch(self, exam_ids):
            time.sleep(0.3)
            return super().infer_batch(exam_ids)

    outcomes = _outcomes(Slow(4), cases)
    for group in (outcomes[:4], outcomes[4:]):
        latencies = {o.prediction.latency_s for o in group}
        assert len(latencies) == 1 and latencies.pop() >= 0.3 / 4


def _batched_copy(src: Path, dest: Path, batch_size: int) -> Path:
    shutil.copytree(src, dest)
    data = yaml.safe_load((dest / "vendor.yaml").read_text())
    data["onnx"]["batch_size"] = batch_size
    (dest / "vendor.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dest


def _without_latency(preds) -> list:
    return [replace(p, latency_s=None) for p in preds]


def test_the_reference_model_in_batches_predicts_as_one_exam_at_a_time(cases, tmp_path):
    """The reference package is untouched; a copy declares batch_size 3 (groups of 3 and 2)."""
    manifest = load_manifest(cases)
    ids = [e.exam_id for e in manifest.exams][:5]
    batched = load_vendor_package(_batched_copy(REFERENCE_VENDOR, tmp_path / "b3", 3))
    assert batched.onnx.batch_size == 3
    assert load_vendor_package(REFERENCE_VENDOR).onnx.batch_size == 1
    runs = []
    for pkg in (load_vendor_package(REFERENCE_VENDOR), batched):
        adapter = open_adapter(pkg)
        try:
            runs.append(
                run_predictions(adapter, manifest, progress=False, timeout_s=60, exam_ids=ids)
            )
        finally:
            adapter.close()
    assert len(runs[0]) == 5 and all(p.status == "ok" for p in runs[0])
    assert _without_latency(runs[1]) == _without_latency(runs[0])  # floats compared exactly


def test_a_hung_onnx_group_is_abandoned_and_each_exam_times_out_alone(tmp_path):
    cases = write_set(tmp_path / "cases", n=3)
    pkg = write_package(tmp_path / "pkg", heatmap=False)
    hanging_model(pkg / "model.onnx")
    data = yaml.safe_load((pkg / "vendor.yaml").read_text())
    data["onnx"]["batch_size"] = 2
    (pkg / "vendor.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    adapter = open_adapter(load_vendor_package(pkg))
    try:
        preds = run_predictions(adapter, load_manifest(cases), progress=False, timeout_s=0.5)
    finally:
        adapter.close()
    assert [(p.exam_id, p.status, p.error) for p in preds] == [
        (f"E000{k}", "error", "timeout after 0.5s") for k in range(3)
    ]
    assert not [t for t in threading.enumerate() if t.name == "mammocert-infer" and t.is_alive()]
    assert not [p for p in multiprocessing.active_children() if p.name == "mammocert-onnx"]
