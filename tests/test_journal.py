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
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


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
