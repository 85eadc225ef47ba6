"""Test kit for the ``oip-v2`` profile: the real Open Inference Protocol peers on 127.0.0.1 and
packages that point at them.

* :func:`peer_venv` makes (once, ``scripts/peers.sh``) the peer's own virtual environment under
  ``.peers/``: MLServer and KServe pin conflicting Starlette releases, so neither can live in
  mammocert's environment nor share one.
* :func:`mlserver` and :func:`kserve` serve an ONNX model through the runtimes a vendor would
  copy (``harness/reference/oip/``) and yield the HTTP port once the model is ready; the server's
  log goes to a file (a pipe nobody reads would stall a chatty server).
* :func:`write_oip_package` writes an ``interface: rest`` package with the reference vendor's
  input binding, score range and operating point.

Used by tests/vendors/test_rest_oip.py and bench/bench_rest.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml
from rest_testkit import free_port

ROOT = Path(__file__).resolve().parents[1]
OIP = ROOT / "harness" / "reference" / "oip"
REFERENCE_VENDOR = ROOT / "harness" / "reference" / "vendor"
MODEL = "mammo"
READY_S = 180.0  # MLServer imports pandas, grpc and opentelemetry before it listens


class PeerUnavailable(RuntimeError):
    """The peer's environment could not be made (e.g. no package index reachable)."""


def peer_venv(name: str) -> Path:
    """``.peers/<name>`` made by scripts/peers.sh (cached by its stamp file)."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "peers.sh"), name],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "is ignored" not in ln]
        raise PeerUnavailable(
            f"scripts/peers.sh {name} failed ({proc.returncode}): {' | '.join(lines[-3:])[:400]}"
        )
    return ROOT / ".peers" / name


@contextlib.contextmanager
def _serve(args: list[str], port: int, workdir: Path, path: str) -> Iterator[int]:
    """Start a server, wait until ``GET path`` answers 200, always stop it (by its own pid)."""
    log = workdir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline = time.monotonic() + READY_S
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{args[0]} exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} not ready after {READY_S} s; see {log}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def mlserver(
    workdir: Path, model: Path = REFERENCE_VENDOR / "model.onnx", settings: dict | None = None
) -> Iterator[int]:
    """Seldon MLServer serving ``model`` through harness/reference/oip/mlserver (JSON tensors)."""
    venv = peer_venv("mlserver")
    folder = workdir / MODEL
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(OIP / "mlserver" / "runtime.py", folder / "runtime.py")
    shutil.copy(model, folder / "model.onnx")
    model_settings = json.loads((OIP / "mlserver" / "model-settings.json").read_text("utf-8"))
    model_settings.update(settings or {})
    (folder / "model-settings.json").write_text(json.dumps(model_settings), encoding="utf-8")
    port = free_port()
    server = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,  # inference in the server process: fewer processes on 2 cores
        "debug": False,
    }
    (workdir / "settings.json").write_text(json.dumps(server), encoding="utf-8")
    with _serve(
        [str(venv / "bin" / "mlserver"), "start", str(workdir)],
        port,
        workdir,
        f"/v2/models/{MODEL}/ready",
    ) as ready:
        yield ready


@contextlib.contextmanager
def kserve(workdir: Path, model: Path = REFERENCE_VENDOR / "model.onnx") -> Iterator[int]:
    """KServe's Python model server serving ``model`` through harness/reference/oip/kserve."""
    venv = peer_venv("kserve")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [str(venv / "bin" / "python"), str(OIP / "kserve" / "server.py")]
    args += ["--model", str(model), "--name", MODEL, "--port", str(port)]
    with _serve(args, port, workdir, f"/v2/models/{MODEL}/ready") as ready:
        yield ready


def oip_section(port: int, **overrides) -> dict:
    """``rest`` for the reference model on a peer at 127.0.0.1:``port``."""
    ref = yaml.safe_load((REFERENCE_VENDOR / "vendor.yaml").read_text("utf-8"))
    oip = {
        "model": MODEL,
        "input": ref["onnx"]["input"],
        "output": {**ref["onnx"]["output"], "study_uid": "study_uid"},
        "aggregate": ref["onnx"]["aggregate"],
    }
    oip.update(overrides.pop("oip", {}))
    rest = {
        "url": f"http://127.0.0.1:{port}",
        "protocol": "oip-v2",
        "timeout_s": 60,
        "retries": 1,
        "oip": oip,
    }
    rest.update(overrides)
    return rest


def write_oip_package(root: Path, port: int, **overrides) -> Path:
    """The reference vendor as an ``interface: rest`` package (``oip-v2``) on ``port``."""
    ref = yaml.safe_load((REFERENCE_VENDOR / "vendor.yaml").read_text("utf-8"))
    spec = {k: v for k, v in ref.items() if k != "onnx"}
    spec["interface"] = "rest"
    spec["rest"] = oip_section(port, **overrides)
    root.mkdir(parents=True, exist_ok=True)
    (root / "vendor.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return root
