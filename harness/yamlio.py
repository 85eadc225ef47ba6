"""Reading the project's YAML inputs (standards, recipes, vendor.yaml, bundled standards) with
one-line errors. Every YAML file the suite reads goes through this module.

The loader is PyYAML's safe loader with **aliases refused**: a 300-byte "billion laughs" file
(anchors referencing anchors, seven levels deep) expands to gigabytes when an alias is resolved,
and no mammocert input needs one. An alias (``*name``, including a merge key ``<<: *name``) is a
YAML error at its line, like a syntax error; anchors alone are harmless and allowed. Nesting so
deep that the parser would recurse past Python's limit is refused the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

MAX_YAML_BYTES = 16 * 1024 * 1024  # far above any standard, recipe or vendor.yaml


class AliasRefused(yaml.composer.ComposerError):
    """An alias in an input file: refused, since expanding aliases is unbounded."""


class NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*anchor``) where they appear."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(
                None,
                None,
                f"alias *{event.anchor} is not allowed (mammocert inputs may not use YAML "
                "aliases or merge keys); write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _problem(exc: Exception) -> tuple[str, str]:
    """(":LINE" or "", the problem) of a YAML error or a too-deep nesting."""
    if isinstance(exc, RecursionError):
        return "", "nested too deeply"
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    return line, str(getattr(exc, "problem", None) or exc).splitlines()[0]


def error_line(exc: Exception) -> int:
    """The 1-based line a YAML error points at (1 when it has none)."""
    mark = getattr(exc, "problem_mark", None)
    return mark.line + 1 if mark is not None else 1


def error_problem(exc: Exception) -> str:
    """The one-line problem of a YAML error (or 'nested too deeply')."""
    return _problem(exc)[1]


def decode(data: bytes, source: str, error: type[Exception]) -> str:
    """UTF-8 text of a YAML file's bytes, or ``error("SOURCE: not UTF-8 ...")``."""
    if len(data) > MAX_YAML_BYTES:
        raise error(
            f"{source}: {len(data)} bytes, more than {MAX_YAML_BYTES}; not a mammocert YAML input"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def safe_load(
    text: str | bytes, source: str, error: type[Exception], loader: type = NoAliasLoader
) -> Any:
    """Parse YAML with aliases refused; a syntax error, an alias, non-UTF-8 bytes or too-deep
    nesting becomes ``error("SOURCE:LINE: invalid YAML (...); fix the syntax")``."""
    if isinstance(text, bytes):
        text = decode(text, source, error)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - loader is a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        line, problem = _problem(exc)
        raise error(f"{source}{line}: invalid YAML ({problem}); fix the syntax") from None


def compose(text: str, loader: type = NoAliasLoader) -> yaml.Node | None:
    """The node tree of a document (aliases refused), for line numbers."""
    return yaml.compose(text, Loader=loader)


def line_map(text: str, loader: type = NoAliasLoader) -> dict[tuple, int]:
    """Each JSON path (tuple of keys/indices) of a document -> its 1-based line in the text (a
    mapping entry's line is its key's)."""
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                walk(v, path + (k.value,))
                lines[path + (k.value,)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    root = compose(text, loader)
    if root is not None:
        walk(root, ())
    return lines


def line_of(lines: dict[tuple, int], path: Sequence[Any]) -> int | None:
    """The line of ``path``, or of its deepest parent that exists (a missing key's object)."""
    key = tuple(path)
    for n in range(len(key), -1, -1):
        if key[:n] in lines:
            return lines[key[:n]]
    return None
