"""Certify mode is locked; self-test is flexible and says so; certify results are reproducible."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import KNOWN_GOOD_VENDOR


def command(
    out: str, *extra: str, standard: str = "standard.yaml", cases: str = "cases"
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mammocert.cli",
        "run",
        "--vendor",
        str(KNOWN_GOOD_VENDOR),
        "--standard",
        standard,
        "--cases",
        cases,
        "--out",
        out,
        *extra,
    ]


def run(d: Path, out: str, *extra: str, **where: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(out, *extra, **where), capture_output=True, text=True, timeout=900, cwd=d
    )


def side_by_side(d: Path, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Independent runs started together, each its own process: on two cores they take about
    one run's time."""
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d)
        for cmd in commands
    ]
    done = []
    try:
        for cmd, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=900)
            done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    finally:
        for proc in procs:  # one timed out: leave no run behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def variant(d: Path, name: str, **changes) -> str:
    std = yaml.safe_load((d / "standard.yaml").read_text())
    std.update(changes)
    (d / name).write_text(yaml.safe_dump(std, sort_keys=False))
    return name


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reference_set": None}, "pins no reference_set"),
        (
            {"reference_set": {"id": "x", "digest": "sha256:" + "1" * 64}},
            "is not the standard's pin",
        ),
        ({"effective": "2020-01-01", "expires": "2021-01-01"}, "is not in force"),
    ],
)
def test_certify_refuses_with_the_reason(certify_setup, change, message):
    changes = {k: v for k, v in change.items() if v is not None}
    name = variant(certify_setup, f"std-{abs(hash(message))}.yaml", **changes)
    if change.get("reference_set", 0) is None:
        std = yaml.safe_load((certify_setup / name).read_text())
        std.pop("reference_set")
        (certify_setup / name).write_text(yaml.safe_dump(std, sort_keys=False))
    r = run(certify_setup, "refused", "--mode", "certify", standard=name)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_certify_refuses_selection(certify_setup):
    r = run(certify_setup, "refused-k", "--mode", "certify", "-k", "AUC")
    assert r.returncode == 2 and "remove -k" in r.stderr


def test_certify_refuses_a_tampered_set(certify_setup, tmp_path):
    cases = tmp_path / "cases"
    shutil.copytree(certify_setup / "cases", cases)
    victim = sorted(cases.glob("E0003/*.dcm"))[0]
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0x01
    victim.write_bytes(bytes(data))
    r = run(certify_setup, "refused-t", "--mode", "certify", cases=str(cases))
    assert r.returncode == 2 and victim.name in r.stderr and "sha256 differs" in r.stderr


def _stable(res: dict) -> dict:
    """results.json without timestamps and timings. Latency is wall-clock time, which another
    load on the machine changes: its criterion (and so the counts and the verdict it enters) is
    compared only for its presence, and the rest must be identical."""
    res = json.loads(json.dumps(res))
    for key in ("started", "finished"):
        res.pop(key)
    latency = [c["id"] for c in res["criteria"] if c["kind"] == "latency"]
    res["criteria"] = [c for c in res["criteria"] if c["kind"] != "latency"]
    if latency:
        res.pop("verdict")
        res["summary"].pop("criteria")
    res["latency_criteria"] = latency
    return res


def cli(d: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=d,
    )


@pytest.mark.slow
def test_certify_twice_gives_identical_results_that_verify(certify_setup):
    assert cli(certify_setup, "keys", "generate", "--out", "keys").returncode == 0
    # two independent certify processes, side by side (nothing is shared but the inputs)
    a, b = side_by_side(
        certify_setup,
        command("twice-a", "--mode", "certify", "--key", "keys/signing-key.pem"),
        command("twice-b", "--mode", "certify", "--key", "keys/signing-key.pem"),
    )
    assert a.returncode in (0, 1) and b.returncode == a.returncode, a.stderr + b.stderr
    ra = json.loads((certify_setup / "twice-a" / "results.json").read_text())
    rb = json.loads((certify_setup / "twice-b" / "results.json").read_text())
    assert ra["mode"] == "certify" and ra["notice"] == ""
    assert ra["vendor"]["model_digests"] and ra["vendor"]["package_digest"].startswith("sha256:")
    assert _stable(ra) == _stable(rb)
    junit = (certify_setup / "twice-a" / "junit.xml").read_text()
    assert junit.count("<testcase") == len(ra["criteria"])
    # anyone can verify the signature and recompute every statistic from the bundle
    v = cli(
        certify_setup, "verify", "twice-a", "--key", "keys/signing-key.pub.pem", "--cases", "cases"
    )
    assert v.returncode == 0 and "verified" in v.stdout, v.stdout + v.stderr
    # a prediction changed after the run (and re-signed by someone holding the key) is caught by recomputation
    preds = (certify_setup / "twice-a" / "predictions.jsonl").read_text().splitlines()
    first = json.loads(preds[0])
    first["score"] = 1.0 - first["score"]
    preds[0] = json.dumps(first)
    (certify_setup / "twice-a" / "predictions.jsonl").write_text("\n".join(preds) + "\n")
    from reports.signing import write_attestation

    write_attestation(
        certify_setup / "twice-a", key_path=certify_setup / "keys" / "signing-key.pem"
    )
    assert (
        cli(certify_setup, "verify", "twice-a", "--key", "keys/signing-key.pub.pem").returncode == 0
    )
    v = cli(
        certify_setup, "verify", "twice-a", "--key", "keys/signing-key.pub.pem", "--cases", "cases"
    )
    assert v.returncode == 1 and "recomput" in (v.stdout + v.stderr).lower(), v.stdout + v.stderr


def test_self_test_says_so_everywhere(certify_setup):
    r = run(certify_setup, "selftest", "--mode", "self-test", "-k", "AUC-01 or DEGEN")
    assert r.returncode in (0, 1), r.stderr
    out = certify_setup / "selftest"
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == "self-test" and res["notice"] == "SELF-TEST — NOT A CERTIFICATE"
    assert "SELF-TEST — NOT A CERTIFICATE" in (out / "report.html").read_text()
    assert "SELF-TEST — NOT A CERTIFICATE" in r.stdout
    assert (out / "statement.unsigned.json").is_file() and not (
        out / "attestation.intoto.json"
    ).exists()
