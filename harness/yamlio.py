"""Reading the project's YAML inputs (recipes, vendor.yaml) with one-line errors."""

from __future__ import annotations

from typing import Any

import yaml


def safe_load(text: str, source: str, error: type[Exception]) -> Any:
    """``yaml.safe_load`` that turns a syntax error into ``error("SOURCE:LINE: invalid YAML (...); fix the syntax")``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise error(
            f"{source}{line}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax"
        ) from None
