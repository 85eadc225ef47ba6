"""What changed between two versions of a standard (`mammocert standard diff`), for committees.

Changes come in document order (header keys, then criteria in the order of the documents; a
removed criterion stays where it was), values are printed as YAML, and each change is tagged:
``stricter`` or ``looser`` where the direction is known — a ``pass_if`` bound, by the comparison
``harness.passif.PASS_KEYS`` gives it (the one table of thresholds); a condition added or
removed; ``mandatory`` switched — else ``changed``; a criterion is ``added`` (shown whole) or
``removed``. A content change without a version bump, and a version that goes down, are warnings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from harness.errors import UsageError
from harness.passif import PASS_KEYS
from harness.standard import CriterionSpec, Standard, load_standard

FORMATS = ("text", "markdown", "json")


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()  # a key one side does not have


@dataclass(frozen=True)
class Change:
    """One change: ``criterion`` is None for the header; ``key`` is dotted (``pass_if.x``), or
    None when a whole criterion is added or removed."""

    criterion: str | None
    key: str | None
    before: Any
    after: Any
    tag: str  # stricter | looser | changed | added | removed

    def to_dict(self) -> dict[str, Any]:
        """JSON: ``from``/``to`` are left out where that side has no such key (null is a value)."""
        out: dict[str, Any] = {"criterion": self.criterion, "key": self.key}
        if self.before is not ABSENT:
            out["from"] = self.before
        if self.after is not ABSENT:
            out["to"] = self.after
        return out | {"tag": self.tag}


@dataclass(frozen=True)
class StandardDiff:
    a: Standard
    b: Standard
    changes: tuple[Change, ...]
    warnings: tuple[str, ...]


def as_yaml(value: Any) -> str:
    """A value as YAML on one line (flow style): ``0.85``, ``{method: delong, level: 0.95}``."""
    if value is ABSENT:
        return "(absent)"
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True)
    text = text.strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys in document order; a mapping's leaves, lists kept whole."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _raw_criterion(std: Standard, c: CriterionSpec) -> dict[str, Any]:
    """The criterion as written (document key order)."""
    for raw in std.raw.get("criteria", []):
        if raw.get("id") == c.id:
            return dict(raw)
    return c.to_dict()


def direction(key: str, before: Any, after: Any) -> str:
    """``stricter``/``looser``/``changed`` for one dotted key of a criterion."""
    if key == "mandatory" and isinstance(before, bool) and isinstance(after, bool):
        return "stricter" if after else "looser"
    if not key.startswith("pass_if."):
        return "changed"
    pk = PASS_KEYS.get(key.removeprefix("pass_if."))
    if pk is None:
        return "changed"
    if before is ABSENT:
        return "stricter"  # one more condition to meet
    if after is ABSENT:
        return "looser"
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    if not numbers or pk.op not in (">=", ">", "<="):
        return "changed"
    raised = after > before
    return "stricter" if raised == (pk.op in (">=", ">")) else "looser"


def _order(a: list[str], b: list[str]) -> list[str]:
    """The ids of ``b`` in its order, each id only in ``a`` after its nearest predecessor in ``a``."""
    out = list(b)
    for i, cid in enumerate(a):
        if cid in out:
            continue
        before = next((p for p in reversed(a[:i]) if p in out), None)
        out.insert(0 if before is None else out.index(before) + 1, cid)
    return out


def _version(std: Standard) -> tuple[int, int, int] | None:
    """MAJOR.MINOR.PATCH as numbers (the schema requires semver; pre-release tags are ignored)."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", std.version)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def diff_standards(a: Standard, b: Standard) -> StandardDiff:
    changes: list[Change] = []
    header_keys = [k for k in b.raw if k != "criteria"]
    header_keys += [k for k in a.raw if k != "criteria" and k not in header_keys]
    for key in header_keys:
        fa = _flatten({key: a.raw[key]}) if key in a.raw else {key: ABSENT}
        fb = _flatten({key: b.raw[key]}) if key in b.raw else {key: ABSENT}
        for k in list(fb) + [k for k in fa if k not in fb]:
            va, vb = fa.get(k, ABSENT), fb.get(k, ABSENT)
            if va != vb:
                changes.append(Change(None, k, va, vb, "changed"))
    ca = {c.id: c for c in a.criteria}
    cb = {c.id: c for c in b.criteria}
    for cid in _order([c.id for c in a.criteria], [c.id for c in b.criteria]):
        if cid not in ca:
            changes.append(Change(cid, None, ABSENT, _raw_criterion(b, cb[cid]), "added"))
        elif cid not in cb:
            changes.append(Change(cid, None, _raw_criterion(a, ca[cid]), ABSENT, "removed"))
        else:
            fa = _flatten(_raw_criterion(a, ca[cid]))
            fb = _flatten(_raw_criterion(b, cb[cid]))
            for k in list(fb) + [k for k in fa if k not in fb]:
                va, vb = fa.get(k, ABSENT), fb.get(k, ABSENT)
                if va != vb:
                    changes.append(Change(cid, k, va, vb, direction(k, va, vb)))
    warnings = []
    content = [c for c in changes if c.key != "version"]
    va, vb = _version(a), _version(b)
    if content and a.version == b.version:
        warnings.append(
            f"the content changed but the version did not ({b.version}); bump the version"
        )
    if va is not None and vb is not None and vb < va:
        warnings.append(f"the version goes down ({a.version} -> {b.version})")
    return StandardDiff(a, b, tuple(changes), tuple(warnings))


def _label(c: Change) -> str:
    return f"{c.criterion} {c.key}" if c.criterion and c.key else c.criterion or c.key or ""


def _criterion_yaml(raw: Mapping[str, Any]) -> str:
    return yaml.safe_dump(
        [dict(raw)], default_flow_style=None, sort_keys=False, allow_unicode=True, width=100
    ).rstrip()


def render_text(d: StandardDiff) -> str:
    lines = [
        f"--- {d.a.path} ({d.a.id} {d.a.version})",
        f"+++ {d.b.path} ({d.b.id} {d.b.version})",
    ]
    lines += [f"warning: {w}" for w in d.warnings]
    for c in d.changes:
        if c.tag == "added":
            lines.append(f"+ {c.criterion} [added]")
            lines += ["    " + line for line in _criterion_yaml(c.after).splitlines()]
        elif c.tag == "removed":
            lines.append(
                f"- {c.criterion} ({c.before.get('kind')}): {c.before.get('title')} [removed]"
            )
        else:
            lines.append(f"~ {_label(c)}: {as_yaml(c.before)} -> {as_yaml(c.after)} [{c.tag}]")
    if not d.changes:
        lines.append("(no differences in content)")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_value(v: Any) -> str:
    return "*(absent)*" if v is ABSENT else f"`{as_yaml(v)}`"


def render_markdown(d: StandardDiff) -> str:
    lines = [f"## {d.a.id} {d.a.version} → {d.b.id} {d.b.version}", ""]
    lines += [f"> **Warning:** {w}" for w in d.warnings]
    if d.warnings:
        lines.append("")
    edits = [c for c in d.changes if c.tag not in ("added",)]
    if edits:
        lines += ["| criterion | key | from | to | change |", "|---|---|---|---|---|"]
        for c in edits:
            if c.tag == "removed":
                row = (
                    c.criterion or "",
                    "(whole criterion)",
                    c.before.get("title", ""),
                    "",
                    "removed",
                )
            else:
                row = (
                    c.criterion or "(header)",
                    c.key or "",
                    _md_value(c.before),
                    _md_value(c.after),
                    c.tag,
                )
            lines.append("| " + " | ".join(_cell(str(x)) for x in row) + " |")
        lines.append("")
    for c in d.changes:
        if c.tag == "added":
            lines += [
                f"**Added: {c.criterion}**",
                "",
                "```yaml",
                _criterion_yaml(c.after),
                "```",
                "",
            ]
    if not d.changes:
        lines.append("No differences in content.")
    return "\n".join(lines).rstrip() + "\n"


def render_json(d: StandardDiff) -> str:
    side = lambda s: {"path": str(s.path), "id": s.id, "version": s.version, "digest": s.digest}  # noqa: E731
    doc = {
        "a": side(d.a),
        "b": side(d.b),
        "warnings": list(d.warnings),
        "changes": [c.to_dict() for c in d.changes],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def diff_cli(args: Any) -> int:
    """``mammocert standard diff A B [--format text|markdown|json]``."""
    fmt = getattr(args, "format", "text")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    d = diff_standards(load_standard(args.a), load_standard(args.b))
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}[fmt]
    print(render(d).rstrip("\n"))
    return 0


__all__ = ["ABSENT", "Change", "StandardDiff", "as_yaml", "diff_cli", "diff_standards", "direction"]
