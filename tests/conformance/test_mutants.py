"""The suite proves itself: certify mode catches every kind of defective vendor, each with the
criterion that governs the defect, while the known-good base vendor passes those criteria.

The base is reference model 2.0.0 (``helpers.KNOWN_GOOD_VENDOR``), not the shipped reference
model: each mutant is that base with one defect, and the matrix needs a base that passes every
criterion a mutant must fail. The shipped model is chosen for detection, not for that."""

from __future__ import annotations

from pathlib import Path

import mutants
import pytest
import yaml
from helpers import KNOWN_GOOD_VENDOR


def certify(d: Path, out: str, spec) -> dict:
    """A certify run of the base (``spec`` None) or a mutant: the engine with the mutant's adapter
    injected around the package's own."""
    return mutants.mutant_bundle(
        spec, KNOWN_GOOD_VENDOR, d / MATRIX_STANDARD, d / "cases", d / out, "certify"
    )


MATRIX_STANDARD = "matrix.yaml"


@pytest.fixture(scope="module")
def matrix_setup(certify_setup):
    """The certify setup with DK-DEC-RESAMPLE left out of its standard: no mutant is that
    relation's to catch, and upsampling every example 6-12x per axis made it a third of each
    certify run. test_certify.py keeps it in the certify runs it compares."""
    std = yaml.safe_load((certify_setup / "standard.yaml").read_text())
    std["criteria"] = [c for c in std["criteria"] if c.get("relation") != "resample"]
    assert not any("DK-DEC-RESAMPLE" in m.must_fail for m in mutants.MUTANTS)
    (certify_setup / MATRIX_STANDARD).write_text(yaml.safe_dump(std, sort_keys=False))
    return certify_setup


@pytest.fixture(scope="module")
def certified(matrix_setup):
    """results.json of a certify run of the base (None) or a mutant, each run once per module."""
    done: dict[str, dict] = {}

    def get(spec) -> dict:
        name = "base" if spec is None else spec.name
        if name not in done:
            done[name] = certify(matrix_setup, name, spec)
        return done[name]

    return get


@pytest.fixture(scope="module")
def base_results(certified):
    return certified(None)


@pytest.mark.slow
@pytest.mark.parametrize("spec", mutants.MUTANTS, ids=[m.name for m in mutants.MUTANTS])
def test_certify_catches_the_mutant(certified, base_results, spec):
    res = certified(spec)
    outcomes = {c["id"]: c for c in res["criteria"]}
    assert res["verdict"] == "NOT CONFORMANT" and res["mode"] == "certify"
    for cid in spec.must_fail:
        assert outcomes[cid]["outcome"] == "failed", (
            f"{spec.name}: {cid} {outcomes[cid]['outcome']}: {outcomes[cid]['explanation']}"
        )
        ref = next(c for c in base_results["criteria"] if c["id"] == cid)
        assert ref["outcome"] == "passed", (
            f"the known-good base fails {cid} too: {ref['explanation']}"
        )


@pytest.mark.slow
def test_failed_invariance_has_a_readable_minimal_counterexample(certified):
    res = certified(next(m for m in mutants.MUTANTS if m.name == "laterality-bias"))
    mirror = next(c for c in res["criteria"] if c["id"] == "DK-INV-MIRROR")
    ce = mirror["evidence"]["counterexample"]
    assert ce["relation"] == "mirror" and ce["exam_id"] and ce["score_before"] is not None
    assert ce["thumbnails"]["before"].startswith("data:image/png;base64,")
    assert ce["exam_id"] in mirror["explanation"] and "mirror" in mirror["explanation"]
