"""Bad inputs end as one-line usage errors (exit 2), never "mammocert: internal error" (issue #35).

Item 3: 21 inputs that ended as exit 3 (non-UTF-8 standard/manifest, damaged vendor zips, an
--out that cannot be a directory, paths over the OS limit, non-UTF-8 paths, an empty or
truncated results.json). Item 10: `keys generate` never follows a planted symlink. Item 11:
an output that exists and is not a regular file is refused, never replaced.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from synthetic_set import manifest, predictions, write_set

from harness.errors import UsageError, VendorPackageError
from mammocert.cli import main

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "tests" / "assets" / "reference-2.0.0"
STANDARD = ROOT / "standards" / "demo.yaml"
LONG = "a" * 300
NON_UTF8 = os.fsdecode(b"dir-\xff")


def cli(capsys, *argv: str | Path) -> tuple[int, str]:
    """Run mammocert in-process; return (exit code, stderr), checking it is one error line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "internal error" not in err, err
    assert "Traceback" not in err, err
    if rc == 2:
        assert len(lines) == 1, err
        assert lines[0].startswith("mammocert: error: "), err
    return rc, err


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    cases = write_set(tmp_path / "cases", n_cancer=6, n_normal=14)
    m = manifest(n_cancer=6, n_normal=14)
    (tmp_path / "preds.jsonl").write_text(
        "".join(json.dumps(p.to_dict()) + "\n" for p in predictions(m))
    )
    (tmp_path / "afile").write_text("not a directory")
    assert cases.is_dir()
    return tmp_path


def evaluate(ws: Path, **over: str | Path) -> list[str]:
    opts = {
        "--predictions": ws / "preds.jsonl",
        "--cases": ws / "cases",
        "--standard": STANDARD,
        "--out": ws / "bundle",
        "--operating-point": "0.5",
        **{f"--{k.replace('_', '-')}": v for k, v in over.items()},
    }
    return ["evaluate", *[str(x) for kv in opts.items() for x in kv]]


# ----------------------------------------------------------------- non-UTF-8 file contents


def test_non_utf8_standard(workspace, capsys):
    bad = workspace / "bad.yaml"
    bad.write_bytes(b"schema: mammocert/standard/v1\nid: \xff\xfe\n")
    rc, err = cli(capsys, "standard", "lint", bad)
    assert rc == 2 and "bad.yaml:2: not UTF-8 text" in err
    rc, err = cli(capsys, *evaluate(workspace, standard=bad))
    assert rc == 2 and "not UTF-8" in err


def test_non_utf8_manifest(workspace, capsys):
    (workspace / "cases" / "manifest.json").write_bytes(b'{"schema": "\xff"}')
    rc, err = cli(capsys, "cases", "verify", workspace / "cases")
    assert rc == 2 and "manifest.json:1: not UTF-8 text" in err
    rc, err = cli(capsys, *evaluate(workspace))
    assert rc == 2 and "not UTF-8" in err


# ----------------------------------------------------------------- damaged vendor zips


def _zip(path: Path, extra: dict[str, bytes] | None = None, method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as z:
        z.write(VENDOR / "vendor.yaml", "vendor.yaml")
        z.write(VENDOR / "model.onnx", "model.onnx")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def _patch_headers(path: Path, local_off: int, central_off: int, fn) -> None:
    """Apply ``fn(bytearray, offset)`` at every local and central directory header."""
    b = bytearray(path.read_bytes())
    for sig, off in ((b"PK\x03\x04", local_off), (b"PK\x01\x02", central_off)):
        j = b.find(sig)
        while j >= 0:
            fn(b, j + off)
            j = b.find(sig, j + 4)
    path.write_bytes(bytes(b))


def _clash(p: Path) -> Path:
    return _zip(p, {"a": b"x", "a/b": b"y"})


def _bad_crc(p: Path) -> Path:
    _zip(p, method=zipfile.ZIP_STORED)
    b = bytearray(p.read_bytes())
    b[b.find(b"schema")] ^= 1
    p.write_bytes(bytes(b))
    return p


def _encrypted(p: Path) -> Path:
    _zip(p)

    def flag(b: bytearray, i: int) -> None:
        b[i] |= 1

    _patch_headers(p, 6, 8, flag)
    return p


def _unknown_method(p: Path) -> Path:
    _zip(p)

    def method(b: bytearray, i: int) -> None:
        b[i : i + 2] = struct.pack("<H", 99)

    _patch_headers(p, 8, 10, method)
    return p


@pytest.mark.parametrize(
    "make, message",
    [
        (_clash, "both a file and a directory"),
        (_bad_crc, "is damaged \\(Bad CRC-32"),
        (_encrypted, "is encrypted"),
        (_unknown_method, "compression method 99"),
    ],
    ids=["file-dir-clash", "bad-crc", "encrypted", "unknown-method"],
)
def test_damaged_vendor_zip(workspace, capsys, make, message):
    from harness.vendors import load_vendor_package

    z = make(workspace / "pkg.zip")
    with pytest.raises(VendorPackageError, match=message):
        load_vendor_package(z)
    rc, err = cli(
        capsys, "predict", "--vendor", z, "--cases", workspace / "cases", "--out", workspace / "p"
    )
    assert rc == 2 and message.replace("\\", "") in err


def test_zip_with_duplicate_or_nameless_members(tmp_path):
    from harness.vendors import load_vendor_package

    with pytest.warns(UserWarning):  # zipfile itself warns about the duplicate name
        _zip(tmp_path / "dup.zip", {"vendor.yaml": b"schema: x\n"})
    with pytest.raises(VendorPackageError, match="appears twice"):
        load_vendor_package(tmp_path / "dup.zip")
    _zip(tmp_path / "dot.zip", {"./": b"", ".": b"x"})
    with pytest.raises(VendorPackageError, match="has no name"):
        load_vendor_package(tmp_path / "dot.zip")


# ----------------------------------------------------------------- outputs that cannot be made


@pytest.mark.parametrize("where", ["proc", "parent-is-file"])
def test_out_that_cannot_be_a_directory(workspace, capsys, where):
    base = Path("/proc/mammocert-test") if where == "proc" else workspace / "afile"
    cases = workspace / "cases"
    for argv in (
        evaluate(workspace, out=base / "bundle"),
        ["keys", "generate", "--out", base / "keys"],
        ["predict", "--vendor", VENDOR, "--cases", cases, "--out", base / "p.jsonl"],
        ["predict", "--vendor", VENDOR, "--cases", cases, "--out", workspace / "p.jsonl"]
        + ["--journal", base / "j.sqlite"],
        ["cases", "build", "--recipe", ROOT / "reference_cases" / "default.yaml"]
        + ["--out", base / "set", "--exams", "2"],
    ):
        rc, err = cli(capsys, *argv)
        assert rc == 2, (argv, err)
        assert str(base) in err


# ----------------------------------------------------------------- paths over the OS limit


@pytest.mark.parametrize(
    "argv",
    [
        ["standard", "lint", f"{LONG}.yaml"],
        ["standard", "diff", f"{LONG}.yaml", STANDARD],
        ["cases", "verify", LONG],
        ["cases", "build", "--recipe", LONG, "--out", "x"],
        ["predict", "--vendor", LONG, "--cases", "c", "--out", "p"],
        ["predict", "--vendor", VENDOR, "--cases", "c", "--out", LONG],
        ["run", "--vendor", VENDOR, "--cases", "c", "--standard", STANDARD, "--out", LONG],
        ["report", LONG],
        ["keys", "generate", "--out", LONG],
        ["verify", LONG, "--key", "k"],
        ["standard", "bar", "--standard", STANDARD, "--recipe", LONG],
        ["grid", "--vendor", VENDOR, "--cases", LONG],
        ["evaluate", "--predictions", "/" + "b/" * 2100, "--cases", "c", "--standard", "s"]
        + ["--out", "o"],
    ],
    ids=lambda a: "-".join(str(x) for x in a[:2]) if isinstance(a, list) else None,
)
def test_path_over_the_os_limit(capsys, argv):
    rc, err = cli(capsys, *argv)
    assert rc == 2
    assert "over the system limit" in err


# ----------------------------------------------------------------- non-UTF-8 paths


def test_non_utf8_predictions_path_writes_nothing(workspace, capsys):
    """The predictions path went into results.json: UnicodeEncodeError, 0-byte results.json."""
    preds = workspace / NON_UTF8
    preds.write_bytes((workspace / "preds.jsonl").read_bytes())
    rc, err = cli(capsys, *evaluate(workspace, predictions=preds))
    assert rc == 2 and "not valid UTF-8" in err and "\\xff" in err
    assert not (workspace / "bundle").exists()


@pytest.mark.parametrize("option", ["out", "cases", "standard"])
def test_non_utf8_paths_in_run(workspace, capsys, option):
    rc, err = cli(
        capsys,
        "run",
        "--vendor",
        VENDOR,
        "--cases",
        workspace / (NON_UTF8 if option == "cases" else "cases"),
        "--standard",
        workspace / NON_UTF8 if option == "standard" else STANDARD,
        "--out",
        workspace / (NON_UTF8 if option == "out" else "bundle"),
        "-k",
        "AUC",
    )
    assert rc == 2 and f"--{option}" in err and "not valid UTF-8" in err


class _Results:
    def to_dict(self) -> dict:
        return {}


def test_results_json_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A failure while encoding results leaves no partial results.json (was 0 bytes)."""
    from harness import results as results_mod

    monkeypatch.setattr(results_mod.json, "dumps", lambda *a, **k: "\udcff")
    with pytest.raises(UnicodeEncodeError):
        results_mod.write_results(tmp_path / "results.json", _Results())  # type: ignore[arg-type]
    assert not (tmp_path / "results.json").exists()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- results.json given to report


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty; the run that wrote it did not finish"),
        (b'{"schema": "mammocert/res', "not valid JSON"),
        (b'{"schema": "mammocert/results/v1"}', "missing field 'verdict'"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100000, "not valid JSON|nested too deeply"),
    ],
    ids=["empty", "truncated", "incomplete", "non-utf8", "deep"],
)
def test_report_on_a_broken_results_json(tmp_path, capsys, content, message):
    (tmp_path / "results.json").write_bytes(content)
    rc, err = cli(capsys, "report", tmp_path)
    assert rc == 2
    assert any(m in err for m in message.split("|")), err


def test_truncated_real_results_json(workspace, capsys):
    assert main(evaluate(workspace)) in (0, 1)
    bundle = workspace / "bundle"
    text = (bundle / "results.json").read_text()
    capsys.readouterr()
    for cut in (len(text) // 3, len(text) - 5):
        (bundle / "results.json").write_text(text[:cut])
        rc, err = cli(capsys, "report", bundle)
        assert rc == 2 and "results.json" in err


# ----------------------------------------------------------------- item 10: keys and symlinks


def test_keys_generate_does_not_follow_a_planted_symlink(tmp_path, capsys):
    out = tmp_path / "keys"
    out.mkdir()
    target = tmp_path / "stolen.pem"
    (out / "signing-key.pem").symlink_to(target)  # dangling: exists() is False
    rc, err = cli(capsys, "keys", "generate", "--out", out)
    assert rc == 2 and "already exists" in err
    assert not target.exists()


def test_keys_generate_public_key_link_is_refused_too(tmp_path, capsys):
    out = tmp_path / "keys"
    out.mkdir()
    (out / "signing-key.pub.pem").symlink_to(tmp_path / "elsewhere.pem")
    rc, err = cli(capsys, "keys", "generate", "--out", out)
    assert rc == 2 and "already exists" in err
    assert not (tmp_path / "elsewhere.pem").exists()
    assert not (out / "signing-key.pem").exists()


def test_private_key_created_0600_even_with_a_lax_umask(tmp_path):
    from reports.signing import generate_keypair

    old = os.umask(0)
    try:
        priv, pub = generate_keypair(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644


# ----------------------------------------------------------------- item 11: non-regular outputs


def test_write_predictions_never_replaces_a_fifo(tmp_path):
    from harness.predictions import write_predictions

    fifo = tmp_path / "preds.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        write_predictions(fifo, predictions(manifest(n_cancer=2, n_normal=2)))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["preds.jsonl"]  # no temp file left


@pytest.mark.parametrize("kind", ["fifo", "directory", "dev-full"])
def test_predict_refuses_an_out_that_is_not_a_regular_file(workspace, capsys, kind):
    if kind == "dev-full":
        out = Path("/dev/full")
        if not out.exists() or os.geteuid() == 0:
            pytest.skip("as root a regression would replace the device node; FIFO covers it")
    else:
        out = workspace / "out"
        os.mkfifo(out) if kind == "fifo" else out.mkdir()
    before = os.lstat(out).st_mode
    rc, err = cli(
        capsys, "predict", "--vendor", VENDOR, "--cases", workspace / "cases", "--out", out
    )
    assert rc == 2 and str(out) in err
    assert os.lstat(out).st_mode == before  # still the device node / FIFO / directory


def test_grid_refuses_a_fifo_out_before_running(workspace, capsys):
    fifo = workspace / "grid.json"
    os.mkfifo(fifo)
    rc, err = cli(capsys, "grid", "--vendor", VENDOR, "--cases", workspace / "cases", "--out", fifo)
    assert rc == 2 and "not a regular file" in err


def test_write_atomic_replaces_regular_files_only(tmp_path):
    from harness.fsio import write_atomic

    f = tmp_path / "x.json"
    f.write_text("old")
    write_atomic(f, b"new")
    assert f.read_bytes() == b"new"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing")  # a dangling link is replaced by the file, not followed
    write_atomic(link, b"data")
    assert not (tmp_path / "missing").exists() and link.read_bytes() == b"data"


# ----------------------------------------------------------------- item 4: garbage predictions


def _first_record(ws: Path) -> str:
    return (ws / "preds.jsonl").read_text().splitlines()[0]


@pytest.mark.parametrize(
    "content, message",
    [
        (
            lambda ws: _first_record(ws).replace('"score": 0.', '"score": "high", "x": 0.', 1),
            ":1.score: expected a number, got 'high'",
        ),
        (lambda ws: b"\xff\xfe\n", ":1: not UTF-8 text"),
        (lambda ws: b"", "no prediction records (the file is empty)"),
        (lambda ws: b"\n \n", "no prediction records"),
        (
            lambda ws: _first_record(ws).replace('"score": 0.', '"score": NaN, "x": 0.', 1),
            ":1: NaN is not a number JSON allows",
        ),
        (
            lambda ws: _first_record(ws).replace('"score": 0.', '"score": 1e400, "x": 0.', 1),
            ":1.score: inf is not a finite number",
        ),
        (lambda ws: _first_record(ws) + "\n" + "[" * 100000, ":2: "),
        (
            lambda ws: _first_record(ws).replace('"findings": [', '"findings": 0.5, "x": [', 1),
            ":1.findings: expected a list of marks, got float",
        ),
    ],
    ids=["string-score", "non-utf8", "empty", "blank-lines", "nan", "overflow", "deep", "findings"],
)
def test_evaluate_refuses_garbage_predictions_up_front(workspace, capsys, content, message):
    data = content(workspace)
    bad = workspace / "bad.jsonl"
    bad.write_bytes(data if isinstance(data, bytes) else data.encode())
    rc, err = cli(capsys, *evaluate(workspace, predictions=bad))
    assert rc == 2, err
    assert f"{bad}{message}" in err or (message.startswith("no") and message in err), err
    assert not (workspace / "bundle" / "results.json").exists()  # refused before any criterion


# ----------------------------------------------------------------- item 5: -k far too deep


def test_run_k_with_a_very_deep_expression_is_one_line(workspace, capsys):
    expression = "(" * 5000 + "A" + ")" * 5000
    rc, err = cli(
        capsys,
        "run",
        "--vendor",
        VENDOR,
        "--standard",
        STANDARD,
        "--cases",
        workspace / "cases",
        "--out",
        workspace / "bundle",
        "-k",
        expression,
    )
    assert rc == 2
    assert "-k '((((" in err and "nested too deeply" in err


def test_run_k_deep_expression_in_a_subprocess(workspace):
    """The same through the installed entry point: one line on stderr, exit 2, no INTERNALERROR."""
    import subprocess
    import sys

    expression = "(" * 5000 + "A" + ")" * 5000
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "run",
            "--vendor",
            str(VENDOR),
            "--standard",
            str(STANDARD),
            "--cases",
            str(workspace / "cases"),
            "--out",
            str(workspace / "b"),
            "-k",
            expression,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "INTERNALERROR" not in proc.stdout + proc.stderr


def test_report_refuses_a_fifo_in_place_of_report_html(workspace, capsys):
    """The renderer opened report.html for writing: a FIFO there blocked forever."""
    assert main(evaluate(workspace)) in (0, 1)
    capsys.readouterr()
    report = workspace / "bundle" / "report.html"
    report.unlink()
    os.mkfifo(report)
    rc, err = cli(capsys, "report", workspace / "bundle")
    assert rc == 2 and "report.html" in err and "not a regular file" in err
    assert stat.S_ISFIFO(os.lstat(report).st_mode)
