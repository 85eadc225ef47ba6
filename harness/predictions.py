"""Prediction records (`docs/contracts.md` §3.4) and their JSON Lines file."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.fsio import write_atomic

STATUSES = ("ok", "rejected", "error")
ORIGINAL = "original"


@dataclass(frozen=True)
class Finding:
    """One model mark, in stored-image pixel columns (x) / rows (y)."""

    laterality: str
    view: str
    file: str
    x: float
    y: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "laterality": self.laterality,
            "view": self.view,
            "file": self.file,
            "x": self.x,
            "y": self.y,
            "score": self.score,
        }


@dataclass(frozen=True)
class ExamOutput:
    """What a vendor adapter returns for one exam (scores already mapped to [0, 1]).

    ``native`` keeps the values as the vendor gave them on its own scale (``score_range``), for
    an adapter that maps a vendor's native scale (see :class:`Native`); None for one that does not.
    """

    score: float
    breasts: Mapping[str, float] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    native: Native | None = None


@dataclass(frozen=True)
class Native:
    """A vendor's raw scores before mapping to [0, 1]: the exam score, the breast scores and one
    score per finding (in the order of ``findings``)."""

    score: float
    breasts: Mapping[str, float] = field(default_factory=dict)
    findings: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "breasts": dict(sorted(self.breasts.items())),
            "findings": list(self.findings),
        }


@dataclass(frozen=True)
class Prediction:
    """One line of predictions.jsonl: one exam under one condition."""

    exam_id: str
    condition: str
    status: str
    score: float | None
    breasts: Mapping[str, float]
    findings: tuple[Finding, ...]
    latency_s: float | None
    error: str | None
    native: Native | None = None  # only where the adapter maps a native scale

    @classmethod
    def ok(cls, exam_id: str, condition: str, out: ExamOutput, latency_s: float) -> Prediction:
        return cls(
            exam_id,
            condition,
            "ok",
            out.score,
            dict(out.breasts),
            tuple(out.findings),
            latency_s,
            None,
            out.native,
        )

    @classmethod
    def failed(
        cls, exam_id: str, condition: str, status: str, reason: str, latency_s: float | None
    ) -> Prediction:
        return cls(exam_id, condition, status, None, {}, (), latency_s, reason)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "exam_id": self.exam_id,
            "condition": self.condition,
            "status": self.status,
            "score": self.score,
            "breasts": dict(sorted(self.breasts.items())),
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.native is not None:  # absent, not null: records without it stay as they were
            d["native"] = self.native.to_dict()
        d["latency_s"] = self.latency_s
        d["error"] = self.error
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(", ", ": "))


def _num(where: str, v: Any, allow_none: bool) -> float | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise UsageError(
            f"{where}: expected a number, got {str(v)[:40]!r}; fix the predictions file"
        )
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise UsageError(
            f"{where}: {str(v)[:40]} is not a finite number; a model that gave no usable score "
            "is recorded with status 'error' and a reason"
        )
    return f


def prediction_from_dict(d: Mapping[str, Any], where: str = "predictions") -> Prediction:
    """Parse one record; malformed records are a usage error naming the line and field."""
    if not isinstance(d, Mapping):
        raise UsageError(f"{where}: record is not a JSON object; one object per line")
    for key in ("exam_id", "condition", "status"):
        if not isinstance(d.get(key), str):
            raise UsageError(f"{where}.{key}: missing or not a string; see docs/contracts.md §3.4")
    if d["status"] not in STATUSES:
        raise UsageError(f"{where}.status: {d['status']!r} is not one of ok, rejected, error")
    score = _num(f"{where}.score", d.get("score"), allow_none=True)
    if d["status"] == "ok" and score is None:
        raise UsageError(
            f"{where}.score: an 'ok' record needs a score; use status 'error' with a reason instead"
        )
    breasts = d.get("breasts") or {}
    if not isinstance(breasts, Mapping):
        raise UsageError(f'{where}.breasts: expected an object like {{"L": 0.8, "R": 0.1}}')
    raw_findings = d.get("findings")
    if raw_findings is None:
        raw_findings = []
    if not isinstance(raw_findings, list):
        raise UsageError(
            f"{where}.findings: expected a list of marks, got {type(raw_findings).__name__}; "
            "use [] for none"
        )
    findings = []
    for k, f in enumerate(raw_findings):
        fw = f"{where}.findings[{k}]"
        if not isinstance(f, Mapping):
            raise UsageError(f"{fw}: not an object")
        findings.append(
            Finding(
                str(f.get("laterality")),
                str(f.get("view")),
                str(f.get("file")),
                _num(f"{fw}.x", f.get("x"), False),
                _num(f"{fw}.y", f.get("y"), False),
                _num(f"{fw}.score", f.get("score"), False),
            )
        )
    return Prediction(
        d["exam_id"],
        d["condition"],
        d["status"],
        score,
        {str(k): _num(f"{where}.breasts.{k}", v, False) for k, v in breasts.items()},
        tuple(findings),
        _num(f"{where}.latency_s", d.get("latency_s"), True),
        None if d.get("error") is None else str(d.get("error")),
        _native(d, where, len(findings)),
    )


def _native(d: Mapping[str, Any], where: str, n_findings: int) -> Native | None:
    """The optional ``native`` object: the vendor's unmapped score, breast and finding scores."""
    if "native" not in d:
        return None
    nw = f"{where}.native"
    raw = d["native"]
    if not isinstance(raw, Mapping):
        raise UsageError(
            f'{nw}: expected an object like {{"score": 7, "breasts": {{}}, "findings": []}}'
        )
    unknown = sorted(set(raw) - {"score", "breasts", "findings"})
    if unknown:
        raise UsageError(f"{nw}.{unknown[0]}: unknown key; allowed: score, breasts, findings")
    if d.get("status") != "ok":
        raise UsageError(f"{nw}: only an 'ok' record has native scores; remove it")
    breasts = raw.get("breasts") or {}
    if not isinstance(breasts, Mapping):
        raise UsageError(f'{nw}.breasts: expected an object like {{"L": 7, "R": 2}}')
    score = _num(f"{nw}.score", raw.get("score"), False)
    native_breasts = {str(k): _num(f"{nw}.breasts.{k}", v, False) for k, v in breasts.items()}
    scores = raw.get("findings") or []
    if not isinstance(scores, list) or len(scores) != n_findings:
        raise UsageError(f"{nw}.findings: expected a list of {n_findings} numbers, one per finding")
    return Native(
        score,
        native_breasts,
        tuple(_num(f"{nw}.findings[{k}]", v, False) for k, v in enumerate(scores)),
    )


def read_predictions(path: Path | str) -> list[Prediction]:
    """Read a predictions.jsonl file; errors name file:line."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: predictions file not found; write one with `mammocert predict`")
    out: list[Prediction] = []
    seen: set[tuple[str, str]] = set()
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(
                    f"{p}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); write the predictions as UTF-8 JSON Lines"
                ) from None
            if not line.strip():
                continue
            try:
                d = json.loads(line, parse_constant=_refuse_constant)
            except _NonFinite as exc:
                raise UsageError(
                    f"{p}:{lineno}: {exc} is not a number JSON allows; a model that gave no "
                    "usable score is recorded with status 'error' and a reason"
                ) from None
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{p}:{lineno}: invalid JSON ({exc.msg}); one JSON object per line"
                ) from None
            except RecursionError:
                raise UsageError(
                    f"{p}:{lineno}: JSON nested too deeply; not a prediction"
                ) from None
            rec = prediction_from_dict(d, f"{p}:{lineno}")
            key = (rec.exam_id, rec.condition)
            if key in seen:
                raise UsageError(
                    f"{p}:{lineno}: duplicate record for exam {rec.exam_id} condition {rec.condition}; keep one"
                )
            seen.add(key)
            out.append(rec)
    if not out:
        raise UsageError(
            f"{p}: no prediction records (the file is empty); write one with `mammocert predict`"
        )
    return out


class _NonFinite(ValueError):
    """NaN / Infinity / -Infinity in a predictions line (Python's json accepts them)."""


def _refuse_constant(name: str) -> None:
    raise _NonFinite(name)


def write_predictions(path: Path | str, records: Iterable[Prediction]) -> None:
    """Write records sorted by (condition, exam_id) so the file is deterministic."""
    recs = sorted(records, key=lambda r: (r.condition != ORIGINAL, r.condition, r.exam_id))
    data = "".join(r.to_json() + "\n" for r in recs).encode("utf-8")
    write_atomic(Path(path), data, "predictions file")


def is_valid_score(v: float | None) -> bool:
    return v is not None and math.isfinite(v) and 0.0 <= v <= 1.0


def by_condition(records: Iterable[Prediction]) -> Iterator[tuple[str, dict[str, Prediction]]]:
    groups: dict[str, dict[str, Prediction]] = {}
    for r in records:
        groups.setdefault(r.condition, {})[r.exam_id] = r
    yield from sorted(groups.items())
