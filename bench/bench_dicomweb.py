"""Benchmark: exams/s through the ``dicomweb`` REST profile vs the ONNX adapter, same model,
same run.

The ONNX package scores the set in-process (the baseline); then the harness STOW-RSes each exam
to Orthanc with its DICOMweb plugin, the reference DICOMweb node (polling Orthanc's QIDO-RS)
scores it with the same package and STOW-RSes its CAD SR back, and the harness finds it
(QIDO-RS) and fetches it (WADO-RS). Reported: exams/s of each, their ratio, the median exam
latency over DICOMweb, and how many exams got the in-process score.

    python bench/bench_dicomweb.py [--cases DIR | --exams N] [--vendor PKG] [--poll 0.1]

Without ``--cases`` a set of N exams is built from reference_cases/default.yaml into a temporary
directory. Without ``--vendor`` the bundled reference package (harness/reference/vendor) is used.
The exam latency is bounded below by the node's and the harness's poll intervals (``--poll``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # dicom_testkit: Orthanc with the DICOMweb plugin

import yaml  # noqa: E402
from dicom_testkit import orthanc_dicomweb  # noqa: E402

REFERENCE_VENDOR = ROOT / "harness" / "reference" / "vendor"


def _package(root: Path, url: str, poll_s: float) -> Path:
    doc = {
        "schema": "mammocert/vendor/v1",
        "vendor": "Bench",
        "product": "DicomwebNode",
        "version": "1.0",
        "interface": "rest",
        "operating_point": 50.0,
        "score_range": [0.0, 100.0],
        "rest": {
            "url": url,
            "protocol": "dicomweb",
            "timeout_s": 120,
            "dicomweb": {"poll_interval_s": poll_s, "results": {"format": "mammography-cad-sr"}},
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "vendor.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


def bench_dicomweb(manifest, vendor: Path, workdir: Path, poll_s: float) -> dict:
    """Exams/s through the dicomweb profile and in-process, on one set, in one run."""
    from harness.reference.dicomweb_node import ReferenceDicomwebNode
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter
    from harness.vendors.rest import RestAdapter

    scorer = open_adapter(load_vendor_package(vendor))
    n = len(manifest.exams)
    try:
        t0 = time.perf_counter()
        direct = run_predictions(scorer, manifest, progress=False)
        onnx_s = time.perf_counter() - t0
        with (
            orthanc_dicomweb(workdir / "orthanc") as root,
            ReferenceDicomwebNode(scorer, root, poll_interval_s=poll_s),
        ):
            pkg = load_vendor_package(_package(workdir / "pkg", root, poll_s))
            adapter = RestAdapter(pkg, evidence_dir=workdir / "evidence")
            try:
                t0 = time.perf_counter()
                preds = run_predictions(adapter, manifest, progress=False, timeout_s=150)
                web_s = time.perf_counter() - t0
            finally:
                adapter.close()
    finally:
        scorer.close()
    same = sum(
        1
        for a, b in zip(preds, direct, strict=True)
        if a.status == b.status == "ok" and abs(a.score - b.score) < 1e-9
    )
    return {
        "exams": n,
        "ok": sum(p.status == "ok" for p in preds),
        "scores_equal": same,
        "onnx_exams_s": n / onnx_s,
        "dicomweb_exams_s": n / web_s,
        "ratio": onnx_s / web_s,
        "median_latency_s": statistics.median(
            p.latency_s for p in preds if p.latency_s is not None
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help="reference-set directory (default: build one)")
    ap.add_argument("--exams", type=int, default=24, help="exams to build without --cases")
    ap.add_argument("--vendor", default=str(REFERENCE_VENDOR), help="ONNX package to score with")
    ap.add_argument("--poll", type=float, default=0.1, help="poll interval (s), node and harness")
    args = ap.parse_args()
    from harness.cases.manifest import load_manifest

    with tempfile.TemporaryDirectory(prefix="mammocert-bench-dicomweb-") as tmp:
        work = Path(tmp)
        if args.cases:
            manifest = load_manifest(args.cases)
        else:
            from harness.cases.build import build_reference_set

            manifest = build_reference_set(
                ROOT / "reference_cases" / "default.yaml", work / "set", exams=args.exams
            )
        e = bench_dicomweb(manifest, Path(args.vendor), work, args.poll)
    print(
        f"dicomweb: {e['exams']} exams, {e['ok']} ok, {e['scores_equal']} with the in-process "
        f"score: {e['dicomweb_exams_s']:.2f} exams/s via STOW/QIDO/WADO-RS (Orthanc + reference "
        f"DICOMweb node, poll {args.poll:g} s; median latency {e['median_latency_s']:.2f} s) vs "
        f"{e['onnx_exams_s']:.2f} exams/s in-process ONNX: {e['ratio']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
