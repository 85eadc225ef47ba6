"""Benchmark: exams per second through the REST interface against the ONNX adapter on the same
model, as ratios measured in one run.

Each path is one function ``(manifest, workdir, repeat) -> PathResult`` below, listed in :data:`PATHS`;
the ONNX adapter in-process is the baseline every other path is divided by:

* ``onnx``: the reference package run by the ONNX adapter in-process (the baseline);
* ``oip-json``: ``oip-v2`` with JSON tensors, Seldon MLServer serving the same model through
  harness/reference/oip/mlserver;
* ``oip-binary``: ``oip-v2`` with the binary tensor extension, KServe's Python model server
  through harness/reference/oip/kserve.

Every path runs the whole set through :func:`harness.runner.run_predictions` (prefetch and
preprocessing included) after one warm-up exam, ``--repeat`` times; the median is reported, and
whether each path's scores equal the baseline's bit for bit. The peers' environments are made
once by scripts/peers.sh (``.peers/``).

    python bench/bench_rest.py [--cases DIR | --exams N] [--repeat 2] [--paths onnx oip-json ...]

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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # oip_testkit: the real OIP peers, package writer

from oip_testkit import REFERENCE_VENDOR, kserve, mlserver, write_oip_package  # noqa: E402


@dataclass(frozen=True)
class PathResult:
    """One path: seconds per pass over the set, and its predictions of the last pass."""

    name: str
    seconds: list[float]
    predictions: list


def _timed(name: str, open_adapter: Callable[[], object], manifest, repeat: int) -> PathResult:
    from harness.runner import run_predictions

    adapter = open_adapter()
    try:
        warm = [manifest.exams[0].exam_id]
        run_predictions(adapter, manifest, progress=False, exam_ids=warm)  # warm-up exam
        seconds, preds = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            preds = run_predictions(adapter, manifest, progress=False, timeout_s=300)
            seconds.append(time.perf_counter() - t0)
    finally:
        adapter.close()  # type: ignore[attr-defined]
    return PathResult(name, seconds, preds)


def path_onnx(manifest, workdir: Path, repeat: int) -> PathResult:
    from harness.vendors import load_vendor_package, open_adapter

    return _timed(
        "onnx", lambda: open_adapter(load_vendor_package(REFERENCE_VENDOR)), manifest, repeat
    )


def _oip(
    name: str,
    peer: Callable[[Path], AbstractContextManager[int]],
    encoding: str,
    manifest,
    workdir: Path,
    repeat: int,
) -> PathResult:
    from harness.vendors import load_vendor_package, open_adapter

    with peer(workdir / name) as port:
        pkg = load_vendor_package(
            write_oip_package(
                workdir / f"{name}-pkg", port, timeout_s=300, oip={"encoding": encoding}
            )
        )
        return _timed(
            name,
            lambda: open_adapter(pkg, evidence_dir=workdir / f"{name}-evidence", manifest=manifest),
            manifest,
            repeat,
        )


def path_oip_json(manifest, workdir: Path, repeat: int) -> PathResult:
    return _oip("oip-json", mlserver, "json", manifest, workdir, repeat)


def path_oip_binary(manifest, workdir: Path, repeat: int) -> PathResult:
    return _oip("oip-binary", kserve, "binary", manifest, workdir, repeat)


PATHS: dict[str, Callable[..., PathResult]] = {
    "onnx": path_onnx,
    "oip-json": path_oip_json,
    "oip-binary": path_oip_binary,
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help="reference-set directory (default: build one)")
    ap.add_argument("--exams", type=int, default=12, help="exams to build without --cases")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    args = ap.parse_args()
    names = ["onnx"] + [p for p in args.paths if p != "onnx"]
    with tempfile.TemporaryDirectory(prefix="mammocert-bench-rest-") as tmp:
        work = Path(tmp)
        with _reference_set(args, work) as manifest:
            n = len(manifest.exams)
            results = [PATHS[name](manifest, work, args.repeat) for name in names]
    base = results[0]
    base_rate = n / statistics.median(base.seconds)
    print(f"{n} exams, reference model, median of {args.repeat} passes (after one warm-up exam)")
    for r in results:
        rate = n / statistics.median(r.seconds)
        same = sum(
            1
            for a, b in zip(r.predictions, base.predictions, strict=True)
            if a.status == b.status == "ok" and a.score == b.score and a.breasts == b.breasts
        )
        print(
            f"  {r.name:<11} {rate:6.2f} exams/s  {rate / base_rate:5.2f}x onnx  "
            f"passes {', '.join(f'{s:.1f}' for s in r.seconds)} s  "
            f"scores equal to onnx: {same}/{n}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
