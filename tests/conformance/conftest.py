"""Fixtures shared by the suite-level tests: a small certify-ready reference set and standard."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import build_reference_set

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def certify_setup(tmp_path_factory):
    """A small set and a certify-ready standard pinned to it (the demo criteria, small counts)."""
    d = tmp_path_factory.mktemp("mutants")
    manifest = build_reference_set(DEFAULT_RECIPE, d / "cases", exams=24, workers=2)
    std = yaml.safe_load((ROOT / "standards" / "demo.yaml").read_text())
    std["id"] = "DK-MAMMO-AI-MUTANTS"
    std["reference_set"] = {"id": manifest.id, "digest": manifest.digest}
    keep = []
    for c in std["criteria"]:
        if c["kind"] == "invariance":
            c["examples"] = 6
        elif c["kind"] == "decision_stability":
            # every exam: the decisions near the operating point are what a mutant moves (only 3
            # of the base's 24 are recalls); resampling upsamples 6-12x per axis, so 8 there
            c["exams"] = 8 if c["relation"] == "resample" else 24
            c["hypothesis_examples"] = 3
        elif c["kind"] == "insertion_response":
            c["exams"] = 6
            c["hypothesis_examples"] = 2
        elif c["kind"] in ("input_rejection", "caching"):
            c["examples"] = 2
        elif c["kind"] == "determinism":
            c["repeats"] = 1
        elif c["kind"] == "robustness_sweep":
            continue  # a whole-set sweep adds nothing to what the mutants test
        elif c["kind"] == "latency":
            c["pass_if"] = {"p50_lte_s": 1.0, "p95_lte_s": 4.0}
        elif c["kind"] == "subgroup":
            c["min_n"] = 2
        elif c["kind"] == "technical_failure_rate":
            c["pass_if"] = {"value_lte": 0.05}  # 24 exams: no CI bound can reach 2 %
        elif c["kind"] == "auc":
            c["pass_if"] = {"value_gte": 0.6}  # 6 cancers: a CI bound would say nothing
        keep.append(c)
    std["criteria"] = keep
    (d / "standard.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    return d
