"""An in-memory reference set and predictions with known properties, for evaluator tests.

No pixels: the manifest lists files that the prediction-only criteria never open.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from harness.cases.manifest import parse_manifest, seal
from harness.predictions import Finding, Prediction
from harness.standard import Standard

DENSITIES = ("a", "b", "c", "d")
MAKERS = ("HOLOGIC", "GE", "SIEMENS")


def manifest_dict(n_cancer: int = 60, n_normal: int = 140, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    exams = []
    for i in range(n_cancer + n_normal):
        cancer = i < n_cancer
        eid = f"E{i + 1:04d}"
        side = "L" if rng.random() < 0.5 else "R"
        images = [
            {"file": f"{eid}/{lat}{view}.dcm", "laterality": lat, "view": view, "sha256": "0" * 64}
            for lat in ("L", "R")
            for view in ("CC", "MLO")
        ]
        r1 = int(rng.random() < (0.65 if cancer else 0.022))
        r2 = int(rng.random() < (0.65 if cancer else 0.022))
        exams.append(
            {
                "exam_id": eid,
                "label": int(cancer),
                "truth": "screen_detected" if cancer else "normal",
                "attributes": {
                    "age": int(rng.integers(50, 80)),
                    "density": DENSITIES[i % 4],
                    "manufacturer": MAKERS[i % 3],
                },
                "readers": {"reader1": r1, "reader2": r2, "consensus": int(r1 or r2)},
                "images": images,
                "lesions": (
                    [
                        {
                            "laterality": side,
                            "type": "mass",
                            "marks": [{"file": f"{eid}/{side}CC.dcm", "box": [100, 200, 140, 240]}],
                        }
                    ]
                    if cancer
                    else []
                ),
            }
        )
    return seal(
        {
            "schema": "mammocert/reference-set/v1",
            "id": "synthetic-test",
            "version": "1.0.0",
            "description": "in-memory test set",
            "exams": exams,
        }
    )


def write_set(directory: Path, **kw) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(manifest_dict(**kw)))
    return directory


def manifest(**kw):
    return parse_manifest(manifest_dict(**kw), Path("/nonexistent"))


def predictions(
    m, separation: float = 2.5, seed: int = 2, condition: str = "original"
) -> list[Prediction]:
    """Scores from a binormal model: cancers shifted by ``separation`` SDs, squashed to (0, 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for e in m.exams:
        z = rng.normal(separation if e.label else 0.0, 1.0)
        s = float(1 / (1 + np.exp(-(z - 2.0))))
        side = e.lesions[0].laterality if e.lesions else "L"
        other = "R" if side == "L" else "L"
        breasts = {side: s, other: float(s * 0.3)}
        findings = (
            (Finding(side, "CC", f"{e.exam_id}/{side}CC.dcm", 120.0, 220.0, s),)
            if e.lesions
            else ()
        )
        out.append(
            Prediction(
                e.exam_id,
                condition,
                "ok",
                s,
                breasts,
                findings,
                0.1 + 0.01 * (hash(e.exam_id) % 7),
                None,
            )
        )
    return out


def standard(prevalence: float = 6.0) -> Standard:
    """A bare standard for evaluator tests: in force 2026-2030, seed 11, no criteria of its own."""
    return Standard(
        Path("x.yaml"), "T", "1.0.0", "draft", "t", "i", dt.date(2026, 1, 1),
        dt.date(2030, 1, 1), None, prevalence, 11, (), "sha256:" + "0" * 64, {},
    )  # fmt: skip
