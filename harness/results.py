"""The typed, versioned results model of a conformance run (`docs/contracts.md` §3.6).

``results.json`` is the single source for the report and the attestation predicate. Do not
reorder or rename fields without bumping ``RESULTS_SCHEMA``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.fsio import write_atomic

RESULTS_SCHEMA = "mammocert/results/v1"
# not_applicable: the standard scopes the criterion (applies_to) to other products; it does not
# count towards the verdict (docs/contracts.md §3.5)
OUTCOMES = ("passed", "failed", "error", "not_applicable")
NOT_PASSED = ("failed", "error")  # the attestation's failedTests
CONFORMANT = "CONFORMANT"
NOT_CONFORMANT = "NOT CONFORMANT"
SELF_TEST_BANNER = "SELF-TEST — NOT A CERTIFICATE"
MODES = ("certify", "self-test", "demo")


@dataclass(frozen=True)
class CriterionResult:
    """The outcome of one criterion."""

    id: str
    title: str
    kind: str
    mandatory: bool
    outcome: str  # passed | failed | error | not_applicable
    value: float | None  # the headline number
    ci: tuple[float, float] | None
    threshold: Mapping[str, Any]  # the pass_if it was held to
    n: int  # cases it rests on
    explanation: str  # one sentence a procurement officer understands
    evidence: Mapping[str, Any] = field(default_factory=dict)  # kind-specific detail and plot data
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


@dataclass(frozen=True)
class KindFacts:
    """What the report shows about a criterion kind: the section it is grouped under and the
    plain-language method for the appendix. The suite declares them with each kind's evaluator
    (``conformance.registry.KindSpec.facts``); a report is given them, never imports them."""

    section: str
    method: str


def verdict_of(criteria: Sequence[CriterionResult]) -> str:
    """CONFORMANT iff every mandatory criterion that applies to the product passed (an error
    counts as not passed) and at least one criterion applied."""
    applicable = [c for c in criteria if c.outcome != "not_applicable"]
    ok = all(c.outcome == "passed" for c in applicable if c.mandatory)
    return CONFORMANT if ok and applicable else NOT_CONFORMANT


@dataclass(frozen=True)
class RunResults:
    """Everything a conformance run established, with identity and provenance."""

    verdict: str
    mode: str
    standard: Mapping[str, Any]  # id, version, status, title, digest, effective, expires
    reference_set: Mapping[str, Any]  # id, version, digest, n_exams
    vendor: Mapping[
        str, Any
    ]  # vendor, product, version, interface, operating_point, package_digest, model_digests
    harness: Mapping[
        str, Any
    ]  # version, git_commit, git_dirty, python, packages, execution_provider
    seeds: Mapping[str, Any]  # seed, hypothesis settings
    started: str
    finished: str
    criteria: Sequence[CriterionResult]
    summary: Mapping[str, Any]  # counts of predictions by status, criteria by outcome
    notice: str = ""  # e.g. SELF-TEST — NOT A CERTIFICATE
    signing: str = (
        ""  # how the attestation will be signed: key | demo-key | unsigned ("" = not recorded)
    )
    schema: str = RESULTS_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "criteria"}
        d["criteria"] = [c.to_dict() for c in self.criteria]
        return {"schema": d.pop("schema"), **d}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_RESULT_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {  # field: (type, required)
    "verdict": (str, True),
    "mode": (str, True),
    "standard": (Mapping, True),
    "reference_set": (Mapping, True),
    "vendor": (Mapping, True),
    "harness": (Mapping, True),
    "seeds": (Mapping, True),
    "started": (str, True),
    "finished": (str, True),
    "criteria": (list, True),
    "summary": (Mapping, True),
    "notice": (str, False),
    "signing": (str, False),
    "schema": (str, True),
}
_CRITERION_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "id": (str, True),
    "title": (str, True),
    "kind": (str, True),
    "mandatory": (bool, True),
    "outcome": (str, True),
    "threshold": (Mapping, True),
    "n": (int, True),
    "explanation": (str, True),
    "evidence": (Mapping, False),
    "source": (str, False),
}


def _check_fields(
    d: Mapping[str, Any], spec: Mapping[str, tuple[Any, bool]], where: str, also: tuple = ()
) -> None:
    for key in d:
        if key not in spec and key not in also:
            raise UsageError(
                f"{where}: unknown field {key!r}; the file was not written by this harness's `mammocert run`"
            )
    for key, (typ, required) in spec.items():
        if key not in d:
            if required:
                raise UsageError(f"{where}: missing field {key!r}; rerun `mammocert run`")
            continue
        v = d[key]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            name = getattr(typ, "__name__", str(typ)).replace("Mapping", "object")
            raise UsageError(
                f"{where}.{key}: expected {name}, got {type(v).__name__} {str(v)[:40]!r}"
            )


def _criterion_from_dict(c: Any, where: str) -> CriterionResult:
    if not isinstance(c, Mapping):
        raise UsageError(f"{where}: not an object")
    _check_fields(c, _CRITERION_FIELDS, where, also=("value", "ci"))
    for key in ("value", "ci"):  # required, null allowed
        if key not in c:
            raise UsageError(f"{where}: missing field {key!r}; rerun `mammocert run`")
    if c["outcome"] not in OUTCOMES:
        raise UsageError(f"{where}.outcome: {c['outcome']!r} is not one of {', '.join(OUTCOMES)}")
    value = c.get("value")
    if value is not None and not _number(value):
        raise UsageError(f"{where}.value: expected a number or null, got {str(value)[:40]!r}")
    ci = c.get("ci")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(map(_number, ci))):
        raise UsageError(f"{where}.ci: expected [low, high] or null, got {str(ci)[:40]!r}")
    return CriterionResult(**{**c, "ci": tuple(ci) if ci is not None else None})


def results_from_dict(d: Mapping[str, Any], source: str = "results.json") -> RunResults:
    """Rebuild the typed model from a results.json dict; a malformed one is a UsageError naming
    the field (``SOURCE: criteria[3].outcome: ...``)."""
    if not isinstance(d, Mapping):
        raise UsageError(f"{source}: not a JSON object; point at a results.json of `mammocert run`")
    if d.get("schema") != RESULTS_SCHEMA:
        raise UsageError(
            f"{source}: schema {str(d.get('schema'))[:60]!r} is not {RESULTS_SCHEMA!r}; re-run with this harness"
        )
    _check_fields(d, _RESULT_FIELDS, source)
    crit = [
        _criterion_from_dict(c, f"{source}: criteria[{i}]") for i, c in enumerate(d["criteria"])
    ]
    fields = {k: v for k, v in d.items() if k not in ("criteria",)}
    return RunResults(**{**fields, "criteria": crit})


def write_results(path: Path | str, results: RunResults) -> None:
    text = json.dumps(results.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomic(Path(path), text.encode("utf-8"), "results.json")


def read_results(path: Path | str) -> RunResults:
    p = Path(path)
    if not p.is_file():
        raise UsageError(
            f"{p}: no results.json; point at an evidence bundle written by `mammocert run`"
        )
    raw = p.read_bytes()
    if not raw.strip():
        raise UsageError(
            f"{p}: empty; the run that wrote it did not finish: rerun `mammocert run` (or --resume)"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p}: not UTF-8 (byte {exc.start}); the file is damaged: rerun") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{p}:{exc.lineno}: not valid JSON ({exc.msg}); the file is truncated or edited: "
            "rerun `mammocert run`"
        ) from None
    except RecursionError:
        raise UsageError(f"{p}: JSON nested too deeply; not a results.json") from None
    return results_from_dict(data, str(p))
