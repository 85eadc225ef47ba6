"""Machine-readable standards (`docs/contracts.md` §3.5): load, validate with line numbers, lint
(the diff between two versions is ``harness.standard_diff``).

A standard is YAML validated against ``standards/schema/standard.schema.json``. Every problem
is reported as ``FILE:LINE: where: what; how to fix``. The standard's digest is the SHA-256 of
the file's bytes, so the evidence bundle can carry an exact copy and verify it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness import yamlio
from harness.attributes import subgroup_problems
from harness.errors import StandardError
from harness.jsonutil import sha256_bytes
from harness.programme.costs import SHIPPED, load_shipped
from harness.resources import STANDARD_SCHEMA

SCHEMA_PATH = STANDARD_SCHEMA
COMMON_KEYS = ("id", "title", "kind", "pass_if", "mandatory", "source", "description", "applies_to")

# What a product receives, the values of a criterion's ``applies_to: {inputs: [...]}``: a
# criterion the standard scopes to other products is not applicable to it (docs/contracts.md
# §3.5). An adapter whose model gets tensors it builds says so with ``harness_checks_input``.
PRODUCT_INPUTS = {
    "dicom": "the DICOM objects themselves",
    "tensors": "input tensors that the harness builds after its own intended-use check",
}


def product_inputs(harness_checks_input: bool) -> str:
    """The ``applies_to.inputs`` value that describes a product."""
    return "tensors" if harness_checks_input else "dicom"


def recorded_inputs(vendor: Mapping[str, Any]) -> str | None:
    """What a bundle's ``vendor`` record says the product receives; ``None`` when no model ran."""
    known = vendor.get("harness_checks_input")
    return None if known is None else product_inputs(bool(known))


@dataclass(frozen=True)
class CriterionSpec:
    """One acceptance criterion as the standard states it."""

    id: str
    title: str
    kind: str
    mandatory: bool
    source: str
    pass_if: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)  # the kind-specific keys
    line: int = 0
    applies_to: tuple[str, ...] | None = None  # the product inputs it is scoped to; None: all

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "mandatory": self.mandatory,
            "source": self.source,
            "pass_if": dict(self.pass_if),
            **({"applies_to": {"inputs": list(self.applies_to)}} if self.applies_to else {}),
            **dict(self.params),
        }


PROGRAMME_DRAWS = 4000  # probabilistic draws when the block gives none (as `mammocert programme`)


@dataclass(frozen=True)
class ProgrammeImpactSpec:
    """The standard's ``programme_impact`` block: every run's report shows the programme impact
    of the run's predictions (``harness.programme``) for these protocols and this region."""

    costs: str  # id of a shipped cost model (harness.programme.costs.SHIPPED)
    region: str | None  # None: the cost model's default region
    protocols: tuple[str, ...]  # () = every protocol of the cost model
    seed: int
    replicates: int
    level: float
    draws: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "costs": self.costs,
            "region": self.region,
            "protocols": list(self.protocols),
            "seed": self.seed,
            "bootstrap": {"replicates": self.replicates, "level": self.level},
            "draws": self.draws,
            "source": self.source,
        }


@dataclass(frozen=True)
class Standard:
    """A validated standard."""

    path: Path
    id: str
    version: str
    status: str
    title: str
    issuer: str
    effective: dt.date
    expires: dt.date
    reference_set: Mapping[str, str] | None
    prevalence_per_1000: float
    seed: int
    criteria: tuple[CriterionSpec, ...]
    digest: str  # "sha256:" + hex of the file bytes
    raw: Mapping[str, Any]
    programme_impact: ProgrammeImpactSpec | None = None  # the report's programme-impact section

    def in_force(self, on: dt.date) -> bool:
        return self.effective <= on < self.expires

    def identity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "status": self.status,
            "title": self.title,
            "issuer": self.issuer,
            "digest": self.digest,
            "effective": self.effective.isoformat(),
            "expires": self.expires.isoformat(),
            "reference_set": dict(self.reference_set) if self.reference_set else None,
        }


@dataclass(frozen=True)
class Problem:
    """One lint finding."""

    line: int
    where: str
    message: str

    def format(self, path: Path | str) -> str:
        return f"{path}:{self.line}: {self.where}: {self.message}"


class _LineLoader(yamlio.NoAliasLoader):
    """Safe loader (aliases refused) that keeps dates as ISO strings (the schema checks their form)."""


_LineLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def _where(path: Sequence, data: Any) -> str:
    parts: list[str] = []
    node = data
    for p in path:
        if isinstance(p, int):
            cid = (
                node[p].get("id")
                if isinstance(node, list) and isinstance(node[p], Mapping)
                else None
            )
            shown = cid if isinstance(cid, str) and cid.isprintable() else repr(cid)
            parts.append(f"[{p}]" + (f"({shown})" if cid else ""))
        else:
            name = p if isinstance(p, str) and p.isprintable() and p else repr(p)
            parts.append(("." if parts else "") + name)
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            node = None
    return "".join(parts) or "(top level)"


def _humanize(err: jsonschema.ValidationError) -> tuple[list, str]:
    """Turn a jsonschema error into (path, 'what; how to fix')."""
    path = list(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        key = extra[0] if extra else "?"
        return path + [key], f"unknown key {key!r}; remove it or use one of: {allowed}"
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return path, f"missing key {missing!r}; add it (see standards/README.md)"
    if v in ("enum", "const"):
        options = err.validator_value if v == "enum" else [err.validator_value]
        if path and path[-1] == "kind":
            return (
                path,
                f"unknown kind {err.instance!r}; known kinds: {', '.join(map(str, options))}",
            )
        return (
            path,
            f"value {err.instance!r} is not allowed; use one of: {', '.join(map(repr, options))}",
        )
    if v == "type":
        return (
            path,
            f"expected {err.validator_value}, got {type(err.instance).__name__} {err.instance!r}",
        )
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return (
            path,
            f"value {err.instance!r} is out of range ({v} {err.validator_value}); fix the number",
        )
    if v == "pattern":
        return (
            path,
            f"value {err.instance!r} does not match the required form {err.validator_value}",
        )
    if v == "minProperties":
        return path, "is empty; state at least one pass condition"
    return path, err.message


def _schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _leaf_errors(err: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    # if/then inside allOf reports at the item; the useful detail is in the context/children.
    if err.context:
        out: list[jsonschema.ValidationError] = []
        for sub in err.context:
            out.extend(_leaf_errors(sub))
        return out
    return [err]


def lint_text(text: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Validate a standard's YAML text; return the data and every problem with its line."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader, aliases refused
    except (yaml.YAMLError, RecursionError) as exc:
        return None, [
            Problem(
                yamlio.error_line(exc),
                "(yaml)",
                f"not valid YAML ({yamlio.error_problem(exc)}); fix the syntax",
            )
        ]
    if not isinstance(data, dict):
        return None, [
            Problem(1, "(top level)", "a standard is a YAML mapping; see standards/README.md")
        ]
    lines = yamlio.line_map(text, _LineLoader)

    def line_of(path: Sequence) -> int:
        p = tuple(path)
        while p and p not in lines:
            p = p[:-1]
        return lines.get(p, 1)

    problems: list[Problem] = []
    seen: set[tuple] = set()
    for err in _schema_validator().iter_errors(data):
        for leaf in _leaf_errors(err):
            path, msg = _humanize(leaf)
            key = (tuple(path), msg)
            if key in seen:
                continue
            seen.add(key)
            problems.append(Problem(line_of(path), _where(path, data), msg))
    crits = data.get("criteria")
    if isinstance(crits, list):
        first: dict[str, int] = {}
        for i, c in enumerate(crits):
            if isinstance(c, Mapping) and isinstance(c.get("id"), str):
                if c["id"] in first:
                    problems.append(
                        Problem(
                            line_of(("criteria", i, "id")),
                            _where(("criteria", i, "id"), data),
                            f"duplicate criterion id {c['id']!r} (first at item {first[c['id']]}); ids must be unique",
                        )
                    )
                else:
                    first[c["id"]] = i
    eff, exp = data.get("effective"), data.get("expires")
    if isinstance(eff, str) and isinstance(exp, str):
        try:
            if dt.date.fromisoformat(exp) <= dt.date.fromisoformat(eff):
                problems.append(
                    Problem(
                        line_of(("expires",)),
                        "expires",
                        f"{exp} is not after effective {eff}; fix the dates",
                    )
                )
        except ValueError as exc:
            problems.append(
                Problem(
                    line_of(("effective",)),
                    "effective/expires",
                    f"not a calendar date ({exc}); use YYYY-MM-DD",
                )
            )
    for i, c in enumerate(crits if isinstance(crits, list) else []):
        if isinstance(c, Mapping) and c.get("kind") == "subgroup":
            for sub, msg in subgroup_problems(c):
                path = ("criteria", i, *sub)
                problems.append(Problem(line_of(path), _where(path, data), msg))
    problems += _programme_problems(data.get("programme_impact"), data, line_of)
    if data.get("status") == "final" and not data.get("reference_set"):
        problems.append(
            Problem(
                line_of(("status",)),
                "status",
                "a final standard must pin a reference_set {id, digest}",
            )
        )
    problems.sort(key=lambda p: (p.line, p.where))
    return data, problems


def _programme_problems(block: Any, data: Any, line_of: Any) -> list[Problem]:
    """What the schema cannot check of ``programme_impact``: the cost model is shipped, and the
    region and protocols are the model's."""
    if not isinstance(block, Mapping) or not isinstance(block.get("costs"), str):
        return []

    def problem(key: str, msg: str) -> list[Problem]:
        path = ("programme_impact", key)
        return [Problem(line_of(path), _where(path, data), msg)]

    if block["costs"] not in SHIPPED:
        return problem(
            "costs",
            f"{block['costs']!r} is not a cost model shipped with the harness; use one of "
            f"{', '.join(SHIPPED)}",
        )
    model = load_shipped(block["costs"])
    region = block.get("region")
    if isinstance(region, str) and region not in model.regions:
        return problem(
            "region",
            f"{region!r} is not a region of cost model {block['costs']}; use one of "
            f"{', '.join(model.regions)}",
        )
    known = [p.name for p in model.protocols]
    names = block.get("protocols")
    bad = (
        [n for n in names if isinstance(n, str) and n not in known]
        if isinstance(names, list)
        else []
    )
    if bad:
        return problem(
            "protocols",
            f"{bad[0]!r} is not a protocol of cost model {block['costs']}; use one of "
            f"{', '.join(known)}",
        )
    return []


def _programme_spec(data: Mapping[str, Any]) -> ProgrammeImpactSpec | None:
    block = data.get("programme_impact")
    if block is None:
        return None
    boot = block["bootstrap"]
    return ProgrammeImpactSpec(
        costs=block["costs"],
        region=block.get("region"),
        protocols=tuple(block.get("protocols", ())),
        seed=int(block.get("seed", data["seed"])),
        replicates=int(boot["replicates"]),
        level=float(boot.get("level", 0.95)),
        draws=int(block.get("draws", PROGRAMME_DRAWS)),
        source=str(block.get("source", "")),
    )


def load_standard(path: Path | str) -> Standard:
    """Load and validate a standard; the first problem raises StandardError (exit 2)."""
    p = Path(path)
    if not p.is_file():
        raise StandardError(
            f"{p}: standard not found; pass a YAML file such as standards/demo.yaml"
        )
    raw_bytes = p.read_bytes()
    text = yamlio.decode(raw_bytes, str(p), StandardError)
    data, problems = lint_text(text)
    if problems:
        more = (
            f" (and {len(problems) - 1} more; run `mammocert standard lint {p}`)"
            if len(problems) > 1
            else ""
        )
        raise StandardError(problems[0].format(p) + more)
    assert data is not None
    lines = yamlio.line_map(text, _LineLoader)
    criteria = tuple(
        CriterionSpec(
            id=c["id"],
            title=c["title"],
            kind=c["kind"],
            mandatory=bool(c["mandatory"]),
            source=c["source"],
            pass_if=dict(c["pass_if"]),
            params={k: v for k, v in c.items() if k not in COMMON_KEYS},
            line=lines.get(("criteria", i), 0),
            applies_to=tuple(c["applies_to"]["inputs"]) if "applies_to" in c else None,
        )
        for i, c in enumerate(data["criteria"])
    )
    return Standard(
        path=p,
        id=data["id"],
        version=data["version"],
        status=data["status"],
        title=data["title"],
        issuer=data["issuer"],
        effective=dt.date.fromisoformat(data["effective"]),
        expires=dt.date.fromisoformat(data["expires"]),
        reference_set=data.get("reference_set"),
        prevalence_per_1000=float(data["population"]["prevalence_per_1000"]),
        seed=int(data["seed"]),
        criteria=criteria,
        digest="sha256:" + sha256_bytes(raw_bytes),
        raw=data,
        programme_impact=_programme_spec(data),
    )


def lint_cli(args: Any) -> int:
    p = Path(args.file)
    if not p.is_file():
        raise StandardError(f"{p}: file not found")
    _, problems = lint_text(yamlio.decode(p.read_bytes(), str(p), StandardError))
    for prob in problems:
        print(prob.format(p))
    if problems:
        print(f"{p}: {len(problems)} problem(s)")
        return 2
    std = load_standard(p)
    print(
        f"{p}: OK — {std.id} {std.version} ({std.status}), {len(std.criteria)} criteria, digest {std.digest}"
    )
    return 0
