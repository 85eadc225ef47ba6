"""How a call's input tensor reaches the ONNX session's process: three transports, one run.

    python bench/bench_session_feed.py [--batch 8] [--calls 40] [--repeat 3]

The ONNX adapter runs its session in a worker process (harness/vendors/onnx_adapter.py), so
every call's input crosses a process boundary: ``batch`` exams of the reference model's input
(4 x 512 x 416 float32, 3.4 MB each) are stacked along N and sent. The same child loop answers
three ways of sending them, alternated in the same run:

* ``pickle``: ``Connection.send((names, feeds))`` with the stacked array (pickled into a bytes
  object, written to the socket, read and unpickled: four copies);
* ``bytes``: a small header, then ``Connection.send_bytes`` of the array's own memory and
  ``recv_bytes_into`` a buffer the child keeps (two copies, through the kernel);
* ``shm``: the parts stacked straight into a ``multiprocessing.shared_memory`` block the child
  keeps mapped, and a small header (one copy).

The child touches every input byte (a sum, as a model reads its input) and replies with a small
array, so what is timed is the transport and nothing else. For scale, the reference model's own
``session.run`` on one exam is timed in the same run (CPU provider, this process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

REFERENCE_MODEL = Path(__file__).resolve().parents[1] / "harness" / "reference" / "vendor"
EXAM = (1, 4, 512, 416)


def child(conn) -> None:
    keep = bytearray()
    mapped: shared_memory.SharedMemory | None = None
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kind, payload = msg
        if kind == "pickle":
            x = payload
        elif kind == "bytes":
            shape = payload
            n = int(np.prod(shape)) * 4
            if len(keep) < n:
                keep = bytearray(n)
            conn.recv_bytes_into(keep)
            x = np.frombuffer(keep, np.float32, int(np.prod(shape))).reshape(shape)
        else:
            name, shape = payload
            if mapped is None or mapped.name != name:
                mapped = shared_memory.SharedMemory(name=name)
            x = np.ndarray(shape, np.float32, buffer=mapped.buf)
        conn.send(np.array([x.sum(dtype=np.float64)]))
        del x


def timed_calls(conn, kind: str, parts: list[np.ndarray], calls: int, shm) -> float:
    """Seconds per call of sending ``parts`` stacked, and the reply."""
    shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
    t0 = time.perf_counter()
    for _ in range(calls):
        if kind == "pickle":
            conn.send(("pickle", np.concatenate(parts)))
        elif kind == "bytes":
            x = np.concatenate(parts)
            conn.send(("bytes", shape))
            conn.send_bytes(memoryview(x).cast("B"))
        else:
            view = np.ndarray(shape, np.float32, buffer=shm.buf)
            np.concatenate(parts, out=view)
            del view
            conn.send(("shm", (shm.name, shape)))
        conn.recv()
    return (time.perf_counter() - t0) / calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    ctx = multiprocessing.get_context("forkserver")
    report: dict = {"exam_tensor_mb": round(np.prod(EXAM) * 4 / 1e6, 2)}
    for batch in sorted({1, a.batch}):
        parts = [rng.random(EXAM, dtype=np.float32) for _ in range(batch)]
        nbytes = batch * int(np.prod(EXAM)) * 4
        shm = shared_memory.SharedMemory(create=True, size=nbytes)
        parent, kid = ctx.Pipe()
        proc = ctx.Process(target=child, args=(kid,), daemon=True)
        proc.start()
        kid.close()
        try:
            times: dict[str, list[float]] = {"pickle": [], "bytes": [], "shm": []}
            for kind in times:  # warm-up: buffers, page faults
                timed_calls(parent, kind, parts, 3, shm)
            for _ in range(a.repeat):
                for kind in times:  # alternated, so load on the machine hits all three alike
                    times[kind].append(timed_calls(parent, kind, parts, a.calls, shm))
        finally:
            parent.send(None)
            proc.join(5)
            shm.close()
            shm.unlink()
        best = {k: statistics.median(v) for k, v in times.items()}
        report[f"batch{batch}"] = {
            **{f"{k}_ms_per_exam": round(v * 1e3 / batch, 3) for k, v in best.items()},
            "bytes_vs_pickle": round(best["pickle"] / best["bytes"], 2),
            "shm_vs_pickle": round(best["pickle"] / best["shm"], 2),
        }
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(REFERENCE_MODEL / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    x = rng.random(EXAM, dtype=np.float32)
    session.run(None, {"image": x})
    t0 = time.perf_counter()
    for _ in range(5):
        session.run(None, {"image": x})
    report["reference_model_cpu_ms_per_exam"] = round((time.perf_counter() - t0) / 5 * 1e3, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
