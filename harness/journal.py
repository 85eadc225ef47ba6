"""The run journal: every per-exam result is committed to SQLite before it counts.

One row per ``(model_digest, case_digest, condition, harness_version)`` holds the prediction
as JSON. ``--resume`` reuses rows whose whole key matches, so a different model, a changed case
(its digest covers ground truth and file hashes) or another harness version never reuses a
result. The database runs in WAL mode with ``synchronous=FULL``: once :meth:`Journal.put`
returns, the row survives a SIGKILL or a power cut.

The journal is used from one thread (the runner's main loop); it opens its own connection.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from harness import __version__
from harness.errors import UsageError
from harness.fsio import check_output_file
from harness.jsonutil import canonical_json, sha256_bytes
from harness.predictions import Prediction, prediction_from_dict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model_digest    TEXT NOT NULL,
    case_digest     TEXT NOT NULL,
    condition       TEXT NOT NULL,
    harness_version TEXT NOT NULL,
    exam_id         TEXT NOT NULL,
    record          TEXT NOT NULL,
    PRIMARY KEY (model_digest, case_digest, condition, harness_version)
)
"""


def model_digest(model_digests: dict[str, str] | object) -> str:
    """One digest for a model identity (artifact name -> sha256), as the journal keys it."""
    return "sha256:" + sha256_bytes(canonical_json(dict(model_digests)))  # type: ignore[call-overload]


class Journal:
    """A crash-safe store of per-exam predictions for one model identity."""

    def __init__(
        self, path: Path | str, model_digest: str, harness_version: str = __version__
    ) -> None:
        self.path = Path(path)
        self.model_digest = model_digest
        self.harness_version = harness_version
        check_output_file(self.path, "journal")
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UsageError(
                f"{self.path}: not a usable mammocert journal ({exc}); remove it or choose another --journal"
            ) from None

    def get(self, case_digest: str, condition: str) -> Prediction | None:
        """The journaled prediction for this model, case, condition and harness version, if any."""
        row = self._db.execute(
            "SELECT record FROM results WHERE model_digest=? AND case_digest=? AND condition=? AND harness_version=?",
            (self.model_digest, case_digest, condition, self.harness_version),
        ).fetchone()
        return None if row is None else prediction_from_dict(json.loads(row[0]), f"{self.path}")

    def put(self, case_digest: str, prediction: Prediction) -> None:
        """Commit one prediction (replacing an older row with the same key) before returning."""
        self._db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
            (
                self.model_digest,
                case_digest,
                prediction.condition,
                self.harness_version,
                prediction.exam_id,
                prediction.to_json(),
            ),
        )

    def count(self) -> int:
        """Rows for this model and harness version."""
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM results WHERE model_digest=? AND harness_version=?",
                (self.model_digest, self.harness_version),
            ).fetchone()[0]
        )

    def close(self) -> None:
        """Fold the write-ahead log into the database and leave WAL mode, then close: the journal
        is one file again, with no ``-wal``/``-shm`` beside it (a finished bundle seals every
        file, and empty SQLite side files are litter in it). Another process still holding the
        journal keeps WAL mode; SQLite then leaves the side files to the last one to close."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError:
            pass  # busy: another connection has it open, and cleans up when it closes
        finally:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
