"""The reference AI node against dcmtk: storescu sends a study, the node's reports arrive at a
dcmtk storescp, and every report passes dciodvfy with 0 errors and parses to the ONNX scores."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dicom_testkit import DCMTK, free_port, make_exam, process, wait_port
from helpers import require_tool
from pydicom import dcmread
from vendors.mgfactory import write_package

from harness.dicomnet.sr import MAMMO_CAD_SR, parse_report
from harness.reference.dicom_node import ReferenceDicomNode, ReturnAddress
from harness.vendors import load_vendor_package, open_adapter

pytestmark = pytest.mark.external


def _dciodvfy_errors(path) -> list[str]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


def _wait_files(directory, n: int, proc) -> list:
    """Wait (bounded by the node's own work, not a timing threshold) until n files arrived."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = sorted(p for p in directory.iterdir() if p.is_file())
        if len(files) >= n:
            return files
        time.sleep(0.1)
    raise AssertionError(
        f"{len(list(directory.iterdir()))} of {n} reports arrived; storescp said: "
        f"{proc.stdout.read1().decode(errors='replace') if proc.poll() is not None else ''}"
    )


@pytest.mark.parametrize("tid1500", [False, True])
def test_storescu_study_gets_a_valid_report_at_storescp(tmp_path, tid1500):
    require_tool(f"{DCMTK}/storescu", "apt-get install dcmtk")
    require_tool("dciodvfy", "apt-get install dicom3tools")
    exam = make_exam(tmp_path / "study", "E1", seed=3)
    onnx = open_adapter(load_vendor_package(write_package(tmp_path / "pkg")))
    want = onnx.infer(onnx.prepare(exam))
    node_port, results_port = free_port(), free_port()
    out = tmp_path / "received"
    out.mkdir()
    try:
        with (
            process(
                [f"{DCMTK}/storescp", "-od", str(out), "-aet", "RESULTS", str(results_port)],
                port=results_port,
            ) as scp,
            ReferenceDicomNode(
                onnx, node_port, "REF_NODE", f"RESULTS@:{results_port}", tid1500=tid1500
            ),
        ):
            files = [str(tmp_path / "study" / r.file) for r, _ in exam.images]
            r = subprocess.run(
                [
                    f"{DCMTK}/storescu",
                    "-aet",
                    "MODALITY",
                    "-aec",
                    "REF_NODE",
                    "127.0.0.1",
                    str(node_port),
                    *files,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            reports = _wait_files(out, 2 if tid1500 else 1, scp)
    finally:
        onnx.close()
    by_class = {str(dcmread(p).SOPClassUID): p for p in reports}
    assert MAMMO_CAD_SR in by_class
    for p in reports:
        assert _dciodvfy_errors(p) == [], p
    sent = {str(ds.SOPInstanceUID): ref for ref, ds in exam.images}
    for p in reports:
        rep = parse_report(dcmread(p))
        assert rep.study_uid == str(exam.images[0][1].StudyInstanceUID)
        assert rep.complete
        assert rep.exam_score == pytest.approx(100 * want.score, abs=1e-7)
        marks = sorted(
            (sent[m.sop_instance_uid].file, m.x, m.y) for les in rep.lesions for m in les.marks
        )
        assert marks == sorted((f.file, f.x, f.y) for f in want.findings)


def test_failed_and_partial_reports_are_valid(tmp_path):
    """The node's reports for a model fault (111245) and for partial success (111244) pass dciodvfy."""
    require_tool("dciodvfy", "apt-get install dicom3tools")
    from harness.dicomnet.sr import MarkOut, ReportContent, write_mammo_cad_sr, write_tid1500_sr

    exam = make_exam(tmp_path / "study", "E1")
    images = [ds for _, ds in exam.images]
    uid = str(images[0].SOPInstanceUID)
    variants = {
        "failed": write_mammo_cad_sr(images, ReportContent(None, {}, complete=False)),
        "partial": write_mammo_cad_sr(
            images,
            ReportContent(
                40.0, {"L": 40.0, "R": 3.0}, {"L": [MarkOut(uid, 5.5, 6.5, 40.0)]}, complete=False
            ),
        ),
        "no-findings": write_mammo_cad_sr(images, ReportContent(1.0, {})),
        "tid1500": write_tid1500_sr(
            images, ReportContent(40.0, {"L": 40.0}, {"L": [MarkOut(uid, 5.5, 6.5, 40.0)]})
        ),
    }
    for name, ds in variants.items():
        path = tmp_path / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert _dciodvfy_errors(path) == [], name
    assert parse_report(variants["failed"]).summary.startswith("111245")
    assert not parse_report(variants["partial"]).complete


def test_return_address_syntax():
    assert ReturnAddress.parse("PACS@10.0.0.5:104") == ReturnAddress("PACS", "10.0.0.5", 104)
    assert ReturnAddress.parse("MAMMOCERT@:11113") == ReturnAddress("MAMMOCERT", "", 11113)
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="AE@host:port"):
        ReturnAddress.parse("PACS:104")


def test_serve_reference_cli_answers_echo_and_stops_on_sigterm(tmp_path):
    require_tool(f"{DCMTK}/echoscu", "apt-get install dcmtk")
    pkg = write_package(tmp_path / "pkg")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "serve-reference",
            "dicom",
            "--vendor",
            str(pkg),
            "--port",
            str(port),
            "--return-to",
            "RESULTS@:11113",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_port(port, timeout=60)
        r = subprocess.run(
            [f"{DCMTK}/echoscu", "-aec", "MAMMOCERT_REF", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 0, r.stderr
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "reference DICOM node MAMMOCERT_REF" in out
