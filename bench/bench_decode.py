"""Benchmark: the runner on a JPEG 2000 set, decoding in-thread under the codec lock vs in a pool
of decoder processes, against the same set uncompressed.

The JPEG 2000 set is a lossless copy of ``--cases`` (every image re-encoded with
pylibjpeg-openjpeg, as the ``encoding`` relation does; made once under ``--work`` and reused).
Three modes, each run in a fresh subprocess and interleaved so drift hits all of them:

* ``plain``: the uncompressed set (what today's throughput figures measure);
* ``lock``: the JPEG 2000 set, decoded in the prefetch threads under ``CODEC_LOCK`` (before);
* ``pool``: the JPEG 2000 set, decoded in ``harness.decode.ProcessDecoder`` processes (after).

Fails unless the three give the same predictions. Then the decode step alone: every image of the
JPEG 2000 set through two threads, under the lock vs in the processes. Then what the pool's
transfer costs:
one image-sized array back from a decoder process, pickled through the pipe (what
``ProcessDecoder`` does) and through a shared-memory block, against one decode.

    python bench/bench_decode.py --cases DIR [--work DIR] [--repeat 1] [--processes N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE_VENDOR = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"
MODES = ("plain", "lock", "pool")


def image_sized_array(module):
    """In a decoder process: an array the size of the image, without decoding it (the trip back,
    pickled through the pipe, as ProcessDecoder returns a decode)."""
    return np.ones((int(module.Rows), int(module.Columns)), dtype=np.uint16)


def image_sized_shared(module):
    """The alternative: the array written into a shared-memory block; the caller copies it out."""
    from multiprocessing import resource_tracker, shared_memory

    arr = np.ones((int(module.Rows), int(module.Columns)), dtype=np.uint16)
    shm = shared_memory.SharedMemory(create=True, size=arr.nbytes)
    np.ndarray(arr.shape, arr.dtype, buffer=shm.buf)[:] = arr
    resource_tracker.unregister(shm._name, "shared_memory")  # the caller unlinks it
    shm.close()
    return shm.name, arr.shape


def _from_shared(reply) -> np.ndarray:
    from multiprocessing import shared_memory

    name, shape = reply
    shm = shared_memory.SharedMemory(name=name)
    try:
        return np.array(np.ndarray(shape, np.uint16, buffer=shm.buf))
    finally:
        shm.close()
        shm.unlink()


def jpeg2000_copy(cases: Path, work: Path) -> Path:
    """A lossless JPEG 2000 copy of the set (manifest re-sealed with the new file hashes)."""
    from pydicom import dcmread
    from pydicom.uid import JPEG2000Lossless

    from harness.cases.manifest import write_manifest
    from harness.jsonutil import sha256_file
    from harness.perturb.image import set_transfer_syntax

    source = json.loads((cases / "manifest.json").read_text())
    out = work / "j2k"
    stamp = out / ".source-digest"
    if stamp.is_file() and stamp.read_text() == source["digest"]:
        return out
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(cases, out)
    for exam in source["exams"]:
        for image in exam["images"]:
            path = out / image["file"]
            ds = dcmread(path)
            set_transfer_syntax(ds, JPEG2000Lossless)
            ds.save_as(path, enforce_file_format=True)
            image["sha256"] = sha256_file(path)
    write_manifest(out, {k: v for k, v in source.items() if k != "digest"})
    stamp.write_text(source["digest"])
    return out


def _child(mode: str, cases: str, vendor: str, processes: int | None) -> dict:
    from harness.cases.manifest import load_manifest
    from harness.decode import LockedDecoder, ProcessDecoder
    from harness.executor import LocalExecutor
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    manifest = load_manifest(cases)
    adapter = open_adapter(load_vendor_package(vendor))
    decoder = ProcessDecoder(processes) if mode == "pool" else LockedDecoder()
    try:
        t0 = time.perf_counter()
        preds = run_predictions(
            adapter,
            manifest,
            progress=False,
            timeout_s=None,
            executor=LocalExecutor(decoder=decoder),
        )
        wall = time.perf_counter() - t0
    finally:
        decoder.close()
        adapter.close()
    return {
        "mode": mode,
        "decoder": decoder.describe(),
        "exams": len(preds),
        "wall_s": round(wall, 3),
        "exams_per_s": round(len(preds) / wall, 4),
        "predictions": [[p.exam_id, p.status, p.score, dict(p.breasts)] for p in preds],
    }


def _trip(path: Path, decode, unpack, repeat: int) -> float:
    from pydicom import dcmread

    from harness.decode import ProcessDecoder

    pool = ProcessDecoder(1, decode=decode, min_pixels=0)
    try:
        unpack(pool(dcmread(path)))  # start the process
        trips = []
        for _ in range(repeat):
            ds = dcmread(path)
            t0 = time.perf_counter()
            unpack(pool(ds))
            trips.append(time.perf_counter() - t0)
    finally:
        pool.close()
    return min(trips)


def _transfer(j2k: Path, repeat: int) -> dict:
    """One image-sized array back from a decoder process, pickled and through shared memory (the
    compressed pixel data goes out the same way in both), vs one in-thread decode."""
    from pydicom import dcmread

    from harness.decode import LockedDecoder

    path = sorted(j2k.glob("*/*.dcm"))[0]
    pickled = _trip(path, image_sized_array, lambda a: a, repeat)
    shared = _trip(path, image_sized_shared, _from_shared, repeat)
    t0 = time.perf_counter()
    arr = LockedDecoder()(dcmread(path))
    decode = time.perf_counter() - t0
    return {
        "image": f"{arr.shape[0]}x{arr.shape[1]} {arr.dtype}",
        "decode_ms": round(1000 * decode, 1),
        "trip_pickled_ms": round(1000 * pickled, 1),
        "trip_shared_memory_ms": round(1000 * shared, 1),
        "pickled_share_of_decode": round(pickled / decode, 4),
    }


def _decode_only(j2k: Path, processes: int | None, repeat: int) -> dict:
    """Every image of the JPEG 2000 set through two prefetch-like threads, under the lock vs in
    the decoder processes (alternating): the decode step alone, without reading or the model."""
    from concurrent.futures import ThreadPoolExecutor

    from pydicom import dcmread

    from harness.decode import LockedDecoder, ProcessDecoder

    paths = sorted(j2k.glob("*/*.dcm"))
    pool = ProcessDecoder(processes, min_pixels=0)
    walls: dict[str, list[float]] = {"lock": [], "pool": []}
    try:
        pool(dcmread(paths[0]))  # start a process
        for _ in range(repeat):
            for name, decoder in (("lock", LockedDecoder()), ("pool", pool)):
                datasets = [dcmread(p) for p in paths]
                t0 = time.perf_counter()
                with ThreadPoolExecutor(2) as threads:
                    list(threads.map(decoder, datasets))
                walls[name].append(time.perf_counter() - t0)
    finally:
        pool.close()
    lock, proc = min(walls["lock"]), min(walls["pool"])
    return {
        "images": len(paths),
        "lock_s": round(lock, 2),
        "pool_s": round(proc, 2),
        "pool_over_lock_speed": round(lock / proc, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="an uncompressed set (mammocert cases build)")
    ap.add_argument("--work", help="where the JPEG 2000 copy is kept (default: a temporary dir)")
    ap.add_argument("--vendor", default=str(REFERENCE_VENDOR))
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode; the best is kept")
    ap.add_argument("--processes", type=int, help="decoder processes (default: one per core)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "CASES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.vendor, args.processes)))
        return 0
    cases = Path(args.cases)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-decode-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    j2k = jpeg2000_copy(cases, work)
    print(f"JPEG 2000 copy: {j2k} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--cases", str(cases), "--vendor", args.vendor]
            if args.processes:
                cmd += ["--processes", str(args.processes)]
            cmd += ["--child", mode, str(cases if mode == "plain" else j2k)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if mode not in best or r["wall_s"] < best[mode]["wall_s"]:
                best[mode] = r
    if (
        not best["plain"]["predictions"]
        == best["lock"]["predictions"]
        == best["pool"]["predictions"]
    ):
        print("FAIL: the three modes gave different predictions", file=sys.stderr)
        return 1
    for mode in MODES:
        r = {k: v for k, v in best[mode].items() if k != "predictions"}
        print(json.dumps(r))
    rate = {m: best[m]["exams_per_s"] for m in MODES}
    print(
        f"{best['pool']['exams']} exams, predictions identical in all modes; "
        f"JPEG 2000 pool/lock = {rate['pool'] / rate['lock']:.2f}x; "
        f"vs uncompressed: lock {rate['lock'] / rate['plain']:.2f}x, "
        f"pool {rate['pool'] / rate['plain']:.2f}x"
    )
    print(json.dumps({"decode_only": _decode_only(j2k, args.processes, args.repeat)}))
    print(json.dumps({"transfer": _transfer(j2k, 5)}))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
