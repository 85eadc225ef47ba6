"""json-job vendor packages for the reference REST node (harness/reference/rest_node.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# The node's job document, mapped with JMESPath (docs/contracts.md §3.2, "json-job").
RESULT: dict[str, Any] = {
    "state": "state",
    "exam_score": "result.exam_score",
    "breast_scores": {"L": "result.breast_scores.L", "R": "result.breast_scores.R"},
    "study_uid": "study_instance_uid",
    "findings": "result.findings",
    "finding": {
        "sop_instance_uid": "sop_instance_uid",
        "x": "x",
        "y": "y",
        "score": "score",
        "laterality": "laterality",
    },
}
SCALE_RANGE = {"0-1": [0.0, 1.0], "1-10": [1.0, 10.0], "0-100": [0.0, 100.0]}


def write_jsonjob_package(
    root: Path,
    url: str,
    *,
    scale: str = "1-10",
    body: str = "multipart",
    timeout_s: float = 10.0,
    poll_interval_s: float = 0.1,
    path: str = "/exams",
    result: dict[str, Any] | None = None,
    **rest: Any,
) -> Path:
    """A json-job vendor package (vendor.yaml only) for a node at ``url``; ``rest`` adds keys
    of the ``rest`` section (retries, read_timeout_s, auth, tls, ...)."""
    lo, hi = SCALE_RANGE[scale]
    doc = {
        "schema": "mammocert/vendor/v1",
        "vendor": "Test",
        "product": "JsonJobNode",
        "version": "1.0",
        "interface": "rest",
        "operating_point": lo + 0.5 * (hi - lo),
        "score_range": [lo, hi],
        "rest": {
            "url": url,
            "protocol": "json-job",
            "timeout_s": timeout_s,
            **rest,
            "json_job": {
                "submit": {"path": path, "body": body},
                "poll_interval_s": poll_interval_s,
                "result": RESULT if result is None else result,
            },
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "vendor.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root
