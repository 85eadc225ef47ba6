"""Benchmark: the harness's DICOM send path against dcmtk, and exams per minute end to end.

1. Send throughput. dcmtk ``storescp --ignore`` (receives every byte, stores nothing) is the
   peer for both senders, in the same run: dcmtk ``storescu`` sends all files of the set on one
   association; the harness reads the same files, re-randomises their UIDs and sends each exam on
   its own association (:func:`harness.dicomnet.scu.send_study`), as a run does. Target: the
   harness reaches >= 0.8x storescu's throughput.
2. End to end. The runner drives the :class:`DicomAdapter` (direct mode) against the reference
   node scoring with an ONNX package; exams per minute, next to the same package run by the ONNX
   adapter in-process.

    python bench/bench_dicom.py [--cases DIR | --exams N] [--vendor PKG] [--repeat 3]

Without ``--cases`` a set of N exams is built from reference_cases/default.yaml into a temporary
directory. Without ``--vendor`` the bundled reference package (harness/reference/vendor) is used.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(ROOT / "tests")
)  # dicom_testkit: free ports, process control, package writer

from dicom_testkit import DCMTK, free_port, process, write_dicom_package  # noqa: E402

REFERENCE_VENDOR = ROOT / "harness" / "reference" / "vendor"


def _files(manifest) -> list[Path]:
    return [
        manifest.path(im)
        for exam in sorted(manifest.exams, key=lambda e: e.exam_id)
        for im in exam.images
    ]


def bench_send(manifest, repeat: int) -> dict:
    import pydicom

    from harness.dicomnet.deid import pseudonymise_exam
    from harness.dicomnet.scu import Peer, send_study

    files = _files(manifest)
    nbytes = sum(p.stat().st_size for p in files)
    port = free_port()
    dcmtk_s, ours_s = [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        process(
            [f"{DCMTK}/storescp", "--ignore", "-pdu", "131072", "-aet", "NODE", str(port)],
            port=port,
            cwd=tmp,
        ),
    ):
        peer = Peer("NODE", "127.0.0.1", port)
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = subprocess.run(
                [
                    f"{DCMTK}/storescu",
                    "-aec",
                    "NODE",
                    "-pdu",
                    "131072",
                    "127.0.0.1",
                    str(port),
                    *map(str, files),
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            dcmtk_s.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise SystemExit(f"storescu failed: {r.stderr.strip()}")
            t0 = time.perf_counter()
            for exam in sorted(manifest.exams, key=lambda e: e.exam_id):
                items = [(im.file, pydicom.dcmread(manifest.path(im))) for im in exam.images]
                pseudo = pseudonymise_exam(exam.exam_id, items)
                send_study(peer, "MAMMOCERT", list(pseudo.datasets), timeout_s=120)
            ours_s.append(time.perf_counter() - t0)
    d, o = statistics.median(dcmtk_s), statistics.median(ours_s)
    return {
        "files": len(files),
        "mb": nbytes / 1e6,
        "storescu_s": d,
        "harness_s": o,
        "storescu_mb_s": nbytes / 1e6 / d,
        "harness_mb_s": nbytes / 1e6 / o,
        "ratio": d / o,
    }


def bench_end_to_end(manifest, vendor: Path, workdir: Path) -> dict:
    from harness.reference.dicom_node import ReferenceDicomNode
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter
    from harness.vendors.dicom_adapter import DicomAdapter

    onnx_pkg = load_vendor_package(vendor)
    scorer = open_adapter(onnx_pkg)
    n = len(manifest.exams)
    try:
        t0 = time.perf_counter()
        direct = run_predictions(scorer, manifest, progress=False)
        onnx_s = time.perf_counter() - t0
        node_port, listen = free_port(), free_port()
        pkg = load_vendor_package(
            write_dicom_package(
                workdir / "dicom_pkg", node_port=node_port, listen_port=listen, timeout_s=120
            )
        )
        with ReferenceDicomNode(scorer, node_port, "REF_NODE", f"MAMMOCERT@:{listen}"):
            adapter = DicomAdapter(pkg, evidence_dir=workdir / "evidence")
            try:
                t0 = time.perf_counter()
                preds = run_predictions(adapter, manifest, progress=False, timeout_s=150)
                dicom_s = time.perf_counter() - t0
            finally:
                adapter.close()
    finally:
        scorer.close()
    ok = sum(p.status == "ok" for p in preds)
    same = sum(
        1
        for a, b in zip(preds, direct, strict=True)
        if a.status == b.status == "ok" and abs(a.score - b.score) < 1e-9
    )
    return {
        "exams": n,
        "ok": ok,
        "scores_equal": same,
        "onnx_exams_min": 60 * n / onnx_s,
        "dicom_exams_min": 60 * n / dicom_s,
        "median_latency_s": statistics.median(
            p.latency_s for p in preds if p.latency_s is not None
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help="reference-set directory (default: build one)")
    ap.add_argument(
        "--exams", type=int, default=24, help="exams to build when --cases is not given"
    )
    ap.add_argument(
        "--vendor",
        default=str(REFERENCE_VENDOR),
        help="ONNX package the reference node scores with",
    )
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from harness.cases.manifest import load_manifest

    with tempfile.TemporaryDirectory(prefix="mammocert-bench-dicom-") as tmp:
        work = Path(tmp)
        if args.cases:
            manifest = load_manifest(args.cases)
        else:
            from harness.cases.build import build_reference_set

            manifest = build_reference_set(
                ROOT / "reference_cases" / "default.yaml", work / "set", exams=args.exams
            )
        s = bench_send(manifest, args.repeat)
        print(
            f"send: {s['files']} files, {s['mb']:.1f} MB to dcmtk storescp --ignore (loopback), median of {args.repeat}: "
            f"storescu {s['storescu_s']:.2f} s ({s['storescu_mb_s']:.0f} MB/s), harness {s['harness_s']:.2f} s "
            f"({s['harness_mb_s']:.0f} MB/s, read + re-randomise + one association per exam): "
            f"{s['ratio']:.2f}x storescu (target >= 0.80x)"
        )
        vendor = Path(args.vendor)
        if not (vendor / "vendor.yaml").is_file():
            print(f"end to end: skipped, no ONNX package at {vendor} (pass --vendor)")
            return 0
        e = bench_end_to_end(manifest, vendor, work)
        print(
            f"end to end: {e['exams']} exams through the reference node, {e['ok']} ok, {e['scores_equal']} with the "
            f"in-process ONNX score: {e['dicom_exams_min']:.0f} exams/min over DICOM "
            f"(median latency {e['median_latency_s']:.2f} s) vs {e['onnx_exams_min']:.0f} exams/min in-process"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
