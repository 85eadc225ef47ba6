"""Distributed runs: a Dask LocalCluster of worker processes gives the local runner's predictions,
survives a killed worker, and a killed coordinator resumes from its journal."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster
from vendors.mgfactory import write_package, write_set

from harness.cases.manifest import load_manifest
from harness.dask_executor import WORKER_CONFIG, DaskExecutor
from harness.errors import UsageError
from harness.journal import Journal, model_digest
from harness.perturb.registry import apply_condition
from harness.predictions import Prediction, read_predictions
from harness.profile import RunProfile
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter
from mammocert.cli import main

CONDITIONS = ("original", "mirror", "noise:dose=0.5,seed=1")


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("dask") / "cases", n=8)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return write_package(tmp_path_factory.mktemp("dask") / "pkg")


@pytest.fixture(scope="module")
def slow_package(tmp_path_factory) -> Path:
    # ~0.1 s per exam: a worker is killed with a task running on it
    return write_package(
        tmp_path_factory.mktemp("dask") / "slow", model_kwargs={"slow_matmuls": 120}
    )


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes with one thread each, allowed to start the model's process."""
    with (
        dask.config.set(WORKER_CONFIG),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as c,
    ):
        yield c


def _key(p: Prediction) -> str:
    """A prediction without its latency (wall time differs between runs)."""
    d = json.loads(p.to_json())
    d.pop("latency_s")
    return json.dumps(d, sort_keys=True)


def _run(
    package: Path,
    cases: Path,
    client: Client | None,
    journal: Journal | None = None,
    profile: RunProfile | None = None,
):
    """The set under CONDITIONS, locally (no client) or on the client's workers."""
    pkg = load_vendor_package(package)
    adapter = open_adapter(pkg, "cpu")
    executor = DaskExecutor(client, pkg, "cpu") if client is not None else None
    try:
        preds = run_predictions(
            adapter,
            load_manifest(cases),
            CONDITIONS,
            journal=journal,
            transform=apply_condition,
            progress=False,
            executor=executor,
            profile=profile,
        )
        opened = executor.close() if executor is not None else {}
    finally:
        adapter.close()
    return preds, opened


def test_a_local_cluster_gives_the_local_predictions_bit_for_bit(cases, package, cluster):
    local, _ = _run(package, cases, None)
    profile = RunProfile()
    with Client(cluster, set_as_default=False) as client, profile.phase("dask"):
        dist, opened = _run(package, cases, client, profile=profile)
    assert sum(opened.values()) >= 1  # the workers opened the model: it ran there
    # what each task cost on its worker travels back with its outcome (--profile)
    on_workers = profile.phases["dask"]
    assert on_workers.tasks == on_workers.model_calls == len(dist)
    assert on_workers.infer_s > 0 and on_workers.load_s > 0 and on_workers.prepare_s > 0
    assert len(local) == 3 * 8 and all(p.status == "ok" for p in local)
    assert [_key(p) for p in dist] == [_key(p) for p in local]
    assert len({p.score for p in local}) > 3  # the conditions change the scores


class _KillingJournal(Journal):
    """Kills ``victim`` (a worker's pid) once ``after`` results are committed."""

    def __init__(self, path: Path, digest: str, victim: int, after: int) -> None:
        super().__init__(path, digest)
        self.victim, self.after, self.puts = victim, after, 0

    def put(self, case_digest: str, prediction: Prediction) -> None:
        super().put(case_digest, prediction)
        self.puts += 1
        if self.puts == self.after:
            os.kill(self.victim, signal.SIGKILL)


def test_a_killed_worker_loses_nothing_and_repeats_nothing(cases, slow_package, cluster, tmp_path):
    package = slow_package
    local, _ = _run(package, cases, None)
    pkg = load_vendor_package(package)
    with Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        victim = sorted(client.run(os.getpid).values())[0]
        digest = model_digest(pkg.model_digests)
        with _KillingJournal(tmp_path / "j.sqlite", digest, victim, after=3) as journal:
            dist, _ = _run(package, cases, client, journal)
            assert journal.puts == len(dist) == 24 and journal.count() == 24
        assert victim not in client.run(os.getpid).values()  # the kill took: a new worker came
    assert len({(p.condition, p.exam_id) for p in dist}) == 24
    assert [_key(p) for p in dist] == [_key(p) for p in local]


def test_a_task_that_keeps_killing_its_workers_is_an_error_left_for_resume(
    cases, package, tmp_path
):
    """Past ``allowed-failures`` worker deaths Dask gives up on a task: its record is an error
    that is not journaled, so --resume runs it again; the rest of the run is recorded."""

    def crash(exam, condition):  # a local function: cloudpickle sends it by value
        os._exit(1)

    pkg = load_vendor_package(package)
    adapter = open_adapter(pkg, "cpu")
    manifest = load_manifest(cases)
    try:
        with (
            dask.config.set({**WORKER_CONFIG, "distributed.scheduler.allowed-failures": 0}),
            LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as one,
            Client(one, set_as_default=False) as client,
            Journal(tmp_path / "j.sqlite", model_digest(pkg.model_digests)) as journal,
        ):
            preds = run_predictions(
                adapter,
                manifest,
                ["original", "crash"],
                journal=journal,
                transform=crash,
                progress=False,
                exam_ids=["E0000"],
                # one task at a time: the original is done before the crash takes its worker
                executor=DaskExecutor(client, pkg, "cpu", window=1),
            )
            journaled = journal.count()
    finally:
        adapter.close()
    by_condition = {p.condition: p for p in preds}
    assert by_condition["original"].status == "ok"
    crashed = by_condition["crash"]
    assert crashed.status == "error" and crashed.error.startswith("not run: the Dask workers")
    assert journaled == 1  # only the original: the crashed task is left for --resume


def test_workers_refuse_a_package_that_differs_from_the_coordinators(
    cases, package, cluster, tmp_path
):
    changed = tmp_path / "pkg"
    changed.mkdir()
    for f in package.iterdir():
        (changed / f.name).write_bytes(f.read_bytes())
    pkg = load_vendor_package(changed)
    with (changed / "vendor.yaml").open("a") as f:
        f.write("# edited after the coordinator loaded it\n")
    adapter = open_adapter(pkg, "cpu")
    try:
        with Client(cluster, set_as_default=False) as client:
            with pytest.raises(UsageError, match="has digest sha256:.* the coordinator's has") as e:
                run_predictions(
                    adapter,
                    load_manifest(cases),
                    progress=False,
                    executor=DaskExecutor(client, pkg, "cpu"),
                )
    finally:
        adapter.close()
    assert "\n" not in str(e.value) and "dask worker tcp://" in str(e.value)


def test_a_daemonic_worker_refuses_with_the_fix(cases, package):
    """Dask's default daemonic workers cannot start the model's process: one line says how."""
    pkg = load_vendor_package(package)
    adapter = open_adapter(pkg, "cpu")
    try:
        with (
            dask.config.set({"distributed.worker.daemon": True}),
            LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as one,
            Client(one, set_as_default=False) as client,
            pytest.raises(UsageError, match="DASK_DISTRIBUTED__WORKER__DAEMON=False") as e,
        ):
            run_predictions(
                adapter,
                load_manifest(cases),
                progress=False,
                executor=DaskExecutor(client, pkg, "cpu"),
            )
    finally:
        adapter.close()
    assert "\n" not in str(e.value)


def test_a_zip_package_reaches_the_workers_as_a_digest_checked_copy(
    cases, package, cluster, tmp_path
):
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(package.iterdir()):
            z.write(f, f.name)
    pkg = load_vendor_package(archive)
    adapter = open_adapter(pkg, "cpu")
    manifest = load_manifest(cases)
    try:
        local = run_predictions(adapter, manifest, progress=False)
        with Client(cluster, set_as_default=False) as client:
            executor = DaskExecutor(client, pkg, "cpu")  # uploads the archive
            archive.unlink()  # from now on the workers have only their copy
            dist = run_predictions(adapter, manifest, progress=False, executor=executor)
            assert sum(executor.close().values()) >= 1
    finally:
        adapter.close()
    assert [_key(p) for p in dist] == [_key(p) for p in local]


BAD_OPTIONS = [
    (["--workers", "2"], "--workers needs --executor dask"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --executor dask"),
    (["--executor", "dask"], "needs exactly one of --scheduler ADDRESS"),
    (
        ["--executor", "dask", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
        "needs exactly one of --scheduler ADDRESS",
    ),
    (["--executor", "dask", "--workers", "0"], "--workers 0: must be at least 1"),
    (["--executor", "dask", "--scheduler", "my cluster"], "not a Dask scheduler address"),
]
UNREACHABLE = (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"], "no Dask scheduler")


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [(c, f, m) for c in ("predict", "run") for f, m in BAD_OPTIONS] + [("predict", *UNREACHABLE)],
)
def test_bad_executor_options_are_one_line_usage_errors(
    command, flags, message, cases, package, tmp_path, capsys
):
    argv = [command, "--vendor", str(package), "--cases", str(cases), "--out"]
    argv += [str(tmp_path / "out.jsonl")] if command == "predict" else [str(tmp_path / "bundle")]
    if command == "run":
        argv += ["--standard", "standards/demo.yaml"]
    assert main(argv + flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mammocert: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "bundle").exists()


def _rows(journal: Path) -> int:
    try:
        return (
            sqlite3.connect(journal, timeout=1)
            .execute("SELECT COUNT(*) FROM results")
            .fetchone()[0]
        )
    except sqlite3.OperationalError:
        return 0  # not created yet


@pytest.mark.slow
def test_a_killed_coordinator_resumes_with_identical_output(tmp_path):
    cases = write_set(tmp_path / "cases", n=16)
    pkg = write_package(tmp_path / "pkg", model_kwargs={"slow_matmuls": 120})
    cmd = [sys.executable, "-m", "mammocert.cli", "predict", "--vendor", str(pkg)]
    cmd += ["--cases", str(cases)]
    dask_flags = ["--executor", "dask", "--workers", "2"]
    ref = tmp_path / "ref.jsonl"
    subprocess.run(cmd + ["--out", str(ref)], check=True, capture_output=True, timeout=300)

    out, journal = tmp_path / "run.jsonl", tmp_path / "run.journal.sqlite"
    proc = subprocess.Popen(
        cmd + ["--out", str(out), "--journal", str(journal)] + dask_flags,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: its workers are ended with it below
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and _rows(journal) < 3:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed; slow the model"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the cluster's processes, if still there
        except ProcessLookupError:
            pass
    assert not out.exists()
    done = _rows(journal)
    assert 3 <= done < 16

    r = subprocess.run(
        cmd + ["--out", str(out), "--journal", str(journal), "--resume"] + dask_flags,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert f"{done} reused from the journal" in r.stderr and "on dask tcp://" in r.stderr
    strip = lambda path: [_key(p) for p in read_predictions(path)]  # noqa: E731
    assert strip(out) == strip(ref) and len(strip(out)) == 16


@pytest.mark.slow
def test_mammocert_run_on_dask_gives_the_local_bundle(cases, package, tmp_path):
    """The live criteria's conditions (closures over the criterion's transform) reach the workers;
    predictions and every figure but latency equal a local run's."""
    cmd = [sys.executable, "-m", "mammocert.cli", "run", "--vendor", str(package)]
    cmd += ["--cases", str(cases), "--standard", "standards/demo.yaml"]
    chosen = ("DK-INV-MIRROR", "DK-DEC-NOISE", "DK-DET-01", "DK-CACHE-01")
    cmd += ["-k", " or ".join(chosen)]
    bundles = {}
    for name, flags in (("local", []), ("dask", ["--executor", "dask", "--workers", "2"])):
        out = tmp_path / name
        r = subprocess.run(
            cmd + ["--out", str(out)] + flags, capture_output=True, text=True, timeout=600
        )
        assert r.returncode in (0, 1), r.stderr
        bundles[name] = out
    assert "on dask tcp://" in r.stderr
    local, dist = (
        [_key(p) for p in read_predictions(bundles[n] / "predictions.jsonl")]
        for n in ("local", "dask")
    )
    assert dist == local and len(local) > 8  # the originals and the criteria's conditions
    figures = {
        n: [
            (c["id"], c["outcome"], c["value"], c["n"])
            for c in json.loads((bundles[n] / "results.json").read_text())["criteria"]
            if c["id"] in chosen
        ]
        for n in bundles
    }
    assert figures["dask"] == figures["local"] and len(figures["local"]) == 4
    assert all(outcome in ("passed", "failed") for _, outcome, *_ in figures["local"])


def _plugin(package: Path, cases: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    """The suite as a vendor's CI runs it: plain pytest with the mammocert plugin."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance", "-p", "no:cacheprovider"]
    cmd += ["-q", "--vendor", str(package), "--cases", str(cases), "--out", str(out)]
    cmd += ["--standard", str(Path("standards/demo.yaml").resolve()), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("flags", "message"), BAD_OPTIONS[:3])
def test_the_pytest_plugin_refuses_bad_executor_options_in_one_line(
    flags, message, cases, package, tmp_path
):
    r = _plugin(package, cases, tmp_path / "bundle", *flags)
    assert r.returncode == 4  # pytest's usage error
    lines = [ln for ln in r.stderr.splitlines() if message in ln]
    assert lines and "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
def test_the_pytest_plugin_runs_on_dask_with_the_local_figures(cases, package, tmp_path):
    """A vendor's CI can use its Dask cluster too: the plugin passes the executor to the engine."""
    chosen = ("DK-INV-MIRROR", "DK-DET-01")
    select = ("-k", " or ".join(chosen))
    runs = {
        "local": _plugin(package, cases, tmp_path / "local", *select),
        "dask": _plugin(
            package, cases, tmp_path / "dask", *select, "-s", "--executor", "dask", "--workers", "2"
        ),
    }
    for r in runs.values():
        assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    local, dist = (
        [_key(p) for p in read_predictions(tmp_path / n / "predictions.jsonl")] for n in runs
    )
    assert dist == local and len(local) > 8
    figures = {
        n: [
            (c["id"], c["outcome"], c["value"])
            for c in json.loads((tmp_path / n / "results.json").read_text())["criteria"]
            if c["id"] in chosen
        ]
        for n in runs
    }
    assert figures["dask"] == figures["local"] and len(figures["local"]) == 2
    assert "on dask tcp://" in runs["dask"].stderr  # the runner's progress line (-s shows it)
