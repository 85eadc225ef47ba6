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

RESULTS_SCHEMA = "mammocert/results/v1"
OUTCOMES = ("passed", "failed", "error")
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
    outcome: str  # passed | failed | error
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
    """CONFORMANT iff every mandatory criterion passed (an error counts as not passed)."""
    ok = all(c.outcome == "passed" for c in criteria if c.mandatory)
    return CONFORMANT if ok and criteria else NOT_CONFORMANT


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


def results_from_dict(d: Mapping[str, Any]) -> RunResults:
    """Rebuild the typed model from a results.json dict."""
    if d.get("schema") != RESULTS_SCHEMA:
        raise UsageError(
            f"results.json: schema {d.get('schema')!r} is not {RESULTS_SCHEMA!r}; re-run with this harness"
        )
    crit = [
        CriterionResult(**{**c, "ci": tuple(c["ci"]) if c.get("ci") is not None else None})
        for c in d["criteria"]
    ]
    fields = {k: v for k, v in d.items() if k not in ("criteria",)}
    return RunResults(**{**fields, "criteria": crit})


def write_results(path: Path | str, results: RunResults) -> None:
    Path(path).write_text(
        json.dumps(results.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )


def read_results(path: Path | str) -> RunResults:
    p = Path(path)
    if not p.is_file():
        raise UsageError(
            f"{p}: no results.json; point at an evidence bundle written by `mammocert run`"
        )
    return results_from_dict(json.loads(p.read_text(encoding="utf-8")))
