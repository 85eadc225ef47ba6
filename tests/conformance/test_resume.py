"""A certify run killed (SIGKILL) in any phase and resumed with ``--resume`` writes the same
evidence as an uninterrupted run, and two uninterrupted runs agree, in certify and in self-test
mode — byte for byte apart from timestamps and timings (``stable``)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from helpers import small_demo_standard
from vendors.mgfactory import write_package, write_set

# the demo standard's criteria that exercise each phase, at the smallest counts that mean something
SMALL = {
    "invariance": {"examples": 3},
    "decision_stability": {"exams": 4, "hypothesis_examples": 2},
    "determinism": {"repeats": 1},
}
KINDS = {"auc", "degenerate_output", "localization", "technical_failure_rate", "latency", *SMALL}
N_EXAMS = 12
# bundle files compared (the journal is the run's scratch record, the report is rendered from
# results.json by a byte-for-byte deterministic renderer: tests/reports/test_render.py)
COMPARED = ("results.json", "vendor/results.json", "predictions.jsonl", "junit.xml")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A 12-exam set, a standard pinned to it (certify-ready) and a model slow enough (about
    0.1 s an exam) to be killed in each phase."""
    d = tmp_path_factory.mktemp("resume")
    write_set(d / "cases", n=N_EXAMS, spacing_mm=0.1)
    # one exam per model call (the slow layers reduce over the batch)
    write_package(d / "pkg", unit="exam", model_kwargs={"slow_matmuls": 150, "channels": 4})
    # live criteria first, then the prediction-only ones: judging is the last phase
    small_demo_standard(
        d / "cases", KINDS, SMALL, d / "standard.yaml", order=lambda c: c["kind"] not in SMALL
    )
    return d


def command(d: Path, out: str, mode: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mammocert.cli",
        "run",
        "--vendor",
        str(d / "pkg"),
        "--standard",
        str(d / "standard.yaml"),
        "--cases",
        str(d / "cases"),
        "--out",
        str(d / out),
        "--mode",
        mode,
        *extra,
    ]


def complete(d: Path, out: str, mode: str = "certify", *extra: str) -> Path:
    r = subprocess.run(
        command(d, out, mode, *extra), capture_output=True, text=True, timeout=600, cwd=d
    )
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return d / out


def stable(bundle: Path) -> dict[str, object]:
    """The compared files with only timestamps and timings dropped: ``started`` and
    ``finished``; every prediction's ``latency_s``; the latency criterion's ``value``, ``ci``,
    ``explanation`` and ``evidence`` (its outcome stays); junit's ``time`` attributes."""
    out: dict[str, object] = {}
    for name in ("results.json", "vendor/results.json"):
        res = json.loads((bundle / name).read_text())
        res.pop("started"), res.pop("finished")
        for c in res["criteria"]:
            if c["kind"] == "latency":
                for key in ("value", "ci", "explanation", "evidence"):
                    c.pop(key)
        out[name] = res
    rows = []
    for line in (bundle / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        row.pop("latency_s")
        rows.append(row)
    out["predictions.jsonl"] = rows
    root = ET.fromstring((bundle / "junit.xml").read_bytes())
    for el in root.iter():
        el.attrib.pop("time", None)
    out["junit.xml"] = ET.tostring(root)
    assert set(out) == set(COMPARED)
    return out


@pytest.fixture(scope="module")
def uninterrupted(setup) -> dict[str, object]:
    return stable(complete(setup, "whole"))


def _journal_rows(journal: Path) -> tuple[int, int]:
    """(original rows, rows of other conditions) in a run's journal; (0, 0) before it exists."""
    try:
        con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(
                "SELECT SUM(condition = 'original'), SUM(condition != 'original') FROM results"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0, 0


def _kill_in(d: Path, out: str, phase: str, last_criterion: str) -> None:
    """Start a certify run and SIGKILL it once it is in ``phase``."""
    journal = d / out / "journal.sqlite"
    proc = subprocess.Popen(
        command(d, out, "certify"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=d,
    )
    deadline = time.monotonic() + 300
    try:
        if phase == "writing":
            # the progress line of the last criterion: every criterion is judged, the bundle is
            # being written
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.split()[:1] == [last_criterion]:
                    break
        else:
            while time.monotonic() < deadline and proc.poll() is None:
                originals, others = (v or 0 for v in _journal_rows(journal))
                if phase == "originals" and 2 <= originals < N_EXAMS:
                    break
                if phase == "conditions" and others >= 1:
                    break
                time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed in {phase}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    if phase != "writing":
        assert not (d / out / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["originals", "conditions", "writing"])
def test_certify_killed_in_each_phase_resumes_to_the_uninterrupted_results(
    setup, uninterrupted, phase
):
    last = yaml.safe_load((setup / "standard.yaml").read_text())["criteria"][-1]["id"]
    out = f"killed-{phase}"
    _kill_in(setup, out, phase, last)
    originals, others = (v or 0 for v in _journal_rows(setup / out / "journal.sqlite"))
    if phase == "originals":
        assert 2 <= originals < N_EXAMS and others == 0
    else:
        assert originals == N_EXAMS and others >= 1
    resumed = complete(setup, out, "certify", "--resume")
    assert stable(resumed) == uninterrupted


@pytest.mark.slow
def test_two_uninterrupted_certify_runs_agree(setup, uninterrupted):
    assert stable(complete(setup, "again")) == uninterrupted


@pytest.mark.slow
def test_two_uninterrupted_self_test_runs_agree(setup):
    a = stable(complete(setup, "self-a", "self-test"))
    b = stable(complete(setup, "self-b", "self-test"))
    assert a == b
    assert a["results.json"]["mode"] == "self-test"
