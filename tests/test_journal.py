"""The SQLite journal: committed rows survive, keys never mix models or harness versions."""

from __future__ import annotations

import sqlite3

from harness.journal import Journal, model_digest
from harness.predictions import ExamOutput, Finding, Prediction


def _pred(exam="E1", cond="original", score=0.5):
    out = ExamOutput(
        score, {"L": score, "R": 0.1}, (Finding("L", "CC", "E1/LCC.dcm", 1.5, 2.25, score),)
    )
    return Prediction.ok(exam, cond, out, 0.123)


def test_round_trip_is_exact_and_survives_reopen(tmp_path):
    path = tmp_path / "j.sqlite"
    md = model_digest({"model.onnx": "a" * 64})
    with Journal(path, md) as j:
        j.put("case1", _pred(score=0.1 + 0.2))
    with Journal(path, md) as j:
        got = j.get("case1", "original")
        assert got == _pred(score=0.1 + 0.2) and got.to_json() == _pred(score=0.1 + 0.2).to_json()
        assert j.get("case1", "blur-1") is None and j.count() == 1
        # crash safety while it is open: write-ahead log
        other = sqlite3.connect(path)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        other.close()


def test_a_closed_journal_is_one_file_and_stays_one(tmp_path):
    """Closing folds the WAL in and leaves WAL mode: no -wal/-shm beside a finished journal, and
    none appear when someone inspects it later (a read-only integrity check of a journal still in
    WAL mode left empty -wal/-shm files in the evidence bundle, breaking its seal)."""
    path = tmp_path / "journal.sqlite"
    with Journal(path, model_digest({"m": "a" * 64})) as j:
        j.put("case1", _pred())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite"]
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert ro.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert ro.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    ro.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite"]
    with Journal(path, model_digest({"m": "a" * 64})) as j:  # reopened: WAL again, row kept
        assert j.count() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.sqlite"]


def test_other_model_or_harness_version_never_reuses(tmp_path):
    path = tmp_path / "j.sqlite"
    a, b = model_digest({"m": "a" * 64}), model_digest({"m": "b" * 64})
    with Journal(path, a, harness_version="1.0") as j:
        j.put("case1", _pred())
    with Journal(path, b, harness_version="1.0") as j:
        assert j.get("case1", "original") is None
    with Journal(path, a, harness_version="1.1") as j:
        assert j.get("case1", "original") is None
    with Journal(path, a, harness_version="1.0") as j:
        assert j.get("case1", "original") is not None


def test_put_replaces_the_row(tmp_path):
    with Journal(tmp_path / "j.sqlite", "m") as j:
        j.put("c", _pred(score=0.2))
        j.put("c", Prediction.failed("E1", "original", "error", "timeout after 1s", 1.0))
        assert j.get("c", "original").status == "error" and j.count() == 1
