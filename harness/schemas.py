"""One-line messages for JSON Schema errors in the suite's YAML inputs (vendor packages, import
maps): the key path, the problem and the fix."""

from __future__ import annotations

from typing import Any

import jsonschema


def _key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        name = p if isinstance(p, str) and p.isprintable() and p else repr(p)
        out += f"[{p}]" if isinstance(p, int) else (f".{name}" if out else name)
    return out or "(top level)"


def schema_message(
    error: jsonschema.ValidationError, source: str, see: str = "docs/contracts.md §3.2"
) -> str:
    """One line for a jsonschema error: the key path, the problem and the fix."""
    where = f"{source}: {_key_path(error.absolute_path)}"
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = (
            sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        )
        key = f"{_key_path(list(error.absolute_path) + [extra[0]])}" if extra else where
        return f"{source}: {key}: unknown key; remove it (allowed here: {', '.join(allowed)})"
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{where}: missing key {missing!r}; add it (see {see})"
    if v == "enum":
        return f"{where}: {error.instance!r} is not allowed; use one of {', '.join(map(str, error.validator_value))}"
    if v == "exclusiveMinimum":
        return f"{where}: {error.instance!r} must be greater than {error.validator_value}; fix the value"
    if v == "const":
        return f"{where}: must be {error.validator_value!r}, got {error.instance!r}"
    if v == "type":
        return f"{where}: expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
    if v == "pattern" and isinstance(error.instance, str) and "://" not in error.validator_value:
        return f"{where}: {error.instance!r} must be a relative path inside the package (no '..', no leading '/')"
    if v in ("minItems", "maxItems"):
        return f"{where}: expected exactly 2 numbers [low, high], got {error.instance!r}"
    return f"{where}: {error.message}; fix the value"


def best_error(errors: list[jsonschema.ValidationError]) -> jsonschema.ValidationError:
    # Prefer unknown keys (the most actionable), then the deepest error: stable, not set-order.
    def rank(e: jsonschema.ValidationError) -> tuple[int, int, str]:
        return (
            0 if e.validator == "additionalProperties" else 1,
            -len(e.absolute_path),
            str(list(e.absolute_path)),
        )

    return sorted(errors, key=rank)[0]
