"""Benchmark: exams per second through the REST interface against the ONNX adapter on the same
model, as ratios measured in one run.

Each path is one function ``(stack, manifest, workdir) -> adapter`` below, listed in
:data:`PATHS` (it starts what the path needs on ``stack``); the ONNX adapter in-process is the
baseline every other path is divided by:

* ``onnx``: the reference package run by the ONNX adapter in-process (the baseline);
* ``oip-json``: ``oip-v2`` with JSON tensors, Seldon MLServer serving the same model through
  harness/reference/oip/mlserver;
* ``oip-binary``: ``oip-v2`` with the binary tensor extension, KServe's Python model server
  through harness/reference/oip/kserve;
* ``dicomweb``: STOW-RS to Orthanc (DICOMweb plugin), the reference DICOMweb node scoring with
  the same package and storing its CAD SR back, QIDO-RS/WADO-RS for the result.

Every path runs the whole set through :func:`harness.runner.run_predictions` (prefetch and
preprocessing included) after one warm-up exam, ``--repeat`` times, the passes alternating
between the paths (all peers are up at once); the median is reported, and whether each path's
scores equal the baseline's (bit for bit, and within 1e-9: a DICOM SR writes scores as decimal strings). The peers' environments are made
once by scripts/peers.sh (``.peers/``).

    python bench/bench_rest.py [--cases DIR | --exams N] [--repeat 3] [--paths onnx oip-json ...]

Without ``--cases`` a set of N exams is built from reference_cases/default.yaml into a temporary
directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the real peers: oip_testkit, dicom_testkit

from oip_testkit import REFERENCE_VENDOR, kserve, mlserver, write_oip_package  # noqa: E402


def path_onnx(stack: ExitStack, manifest, workdir: Path):
    """The baseline: the reference package by the ONNX adapter in-process."""
    from harness.vendors import load_vendor_package, open_adapter

    adapter = open_adapter(load_vendor_package(REFERENCE_VENDOR))
    stack.callback(adapter.close)
    return adapter


def _oip(
    stack: ExitStack,
    name: str,
    peer: Callable[[Path], AbstractContextManager[int]],
    encoding: str,
    manifest,
    workdir: Path,
):
    from harness.vendors import load_vendor_package, open_adapter

    port = stack.enter_context(peer(workdir / name))
    pkg = load_vendor_package(
        write_oip_package(workdir / f"{name}-pkg", port, timeout_s=300, oip={"encoding": encoding})
    )
    adapter = open_adapter(pkg, evidence_dir=workdir / f"{name}-evidence", manifest=manifest)
    stack.callback(adapter.close)
    return adapter


def path_oip_json(stack: ExitStack, manifest, workdir: Path):
    """oip-v2, JSON tensors, Seldon MLServer."""
    return _oip(stack, "oip-json", mlserver, "json", manifest, workdir)


def path_oip_binary(stack: ExitStack, manifest, workdir: Path):
    """oip-v2, the binary tensor extension, KServe."""
    return _oip(stack, "oip-binary", kserve, "binary", manifest, workdir)


def path_dicomweb(stack: ExitStack, manifest, workdir: Path):
    """dicomweb: STOW-RS to Orthanc with its DICOMweb plugin, the reference DICOMweb node
    (polling Orthanc, scoring with the same package) storing its CAD SR back, QIDO/WADO-RS."""
    import yaml
    from dicom_testkit import orthanc_dicomweb

    from harness.reference.dicomweb_node import ReferenceDicomwebNode
    from harness.vendors import load_vendor_package, open_adapter

    scorer = open_adapter(load_vendor_package(REFERENCE_VENDOR))
    stack.callback(scorer.close)
    root = stack.enter_context(orthanc_dicomweb(workdir / "orthanc"))
    stack.enter_context(ReferenceDicomwebNode(scorer, root, poll_interval_s=DICOMWEB_POLL_S))
    doc = {
        "schema": "mammocert/vendor/v1",
        "vendor": "Bench",
        "product": "DicomwebNode",
        "version": "1.0",
        "interface": "rest",
        "operating_point": 50.0,
        "score_range": [0.0, 100.0],
        "rest": {
            "url": root,
            "protocol": "dicomweb",
            "timeout_s": 120,
            "dicomweb": {
                "poll_interval_s": DICOMWEB_POLL_S,
                "results": {"format": "mammography-cad-sr"},
            },
        },
    }
    pkg_dir = workdir / "dicomweb-pkg"
    pkg_dir.mkdir(parents=True, exist_ok=True)
    (pkg_dir / "vendor.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    adapter = open_adapter(
        load_vendor_package(pkg_dir), evidence_dir=workdir / "dicomweb-evidence", manifest=manifest
    )
    stack.callback(adapter.close)
    return adapter


DICOMWEB_POLL_S = 0.1  # the node's and the harness's poll: a floor on the exam latency
PATHS: dict[str, Callable[..., object]] = {
    "onnx": path_onnx,
    "oip-json": path_oip_json,
    "oip-binary": path_oip_binary,
    "dicomweb": path_dicomweb,
}


@contextmanager
def _reference_set(args, work: Path) -> Iterator[object]:
    from harness.cases.manifest import load_manifest

    if args.cases:
        yield load_manifest(args.cases)
        return
    from harness.cases.build import build_reference_set

    yield build_reference_set(
        ROOT / "reference_cases" / "default.yaml", work / "set", exams=args.exams
    )


def main() -> int:
    from harness.runner import run_predictions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help="reference-set directory (default: build one)")
    ap.add_argument("--exams", type=int, default=12, help="exams to build without --cases")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    args = ap.parse_args()
    names = ["onnx"] + [p for p in args.paths if p != "onnx"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    preds: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="mammocert-bench-rest-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        manifest = stack.enter_context(_reference_set(args, work))
        n = len(manifest.exams)
        adapters = {name: PATHS[name](stack, manifest, work) for name in names}
        warm = [manifest.exams[0].exam_id]
        for adapter in adapters.values():
            run_predictions(adapter, manifest, progress=False, exam_ids=warm)
        # Passes alternate between the paths, so a change of load on a shared machine falls on
        # all of them alike.
        for _ in range(args.repeat):
            for name, adapter in adapters.items():
                t0 = time.perf_counter()
                preds[name] = run_predictions(adapter, manifest, progress=False, timeout_s=300)
                seconds[name].append(time.perf_counter() - t0)
    base_rate = n / statistics.median(seconds["onnx"])
    print(
        f"{n} exams, reference model, median of {args.repeat} passes per path, passes "
        "alternating between paths (after one warm-up exam each)"
    )
    for name in names:
        rate = n / statistics.median(seconds[name])
        pairs = [
            (a, b)
            for a, b in zip(preds[name], preds["onnx"], strict=True)
            if a.status == b.status == "ok"
        ]
        exact = sum(a.score == b.score and a.breasts == b.breasts for a, b in pairs)
        # an SR carries scores as decimal strings (DS, 16 characters): equal to 1e-9, not bitwise
        close = sum(abs(a.score - b.score) <= 1e-9 for a, b in pairs)
        print(
            f"  {name:<11} {rate:6.2f} exams/s  {rate / base_rate:5.2f}x onnx  "
            f"passes {', '.join(f'{s:.1f}' for s in seconds[name])} s  "
            f"scores equal to onnx: {exact}/{n} bit for bit, {close}/{n} within 1e-9"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
