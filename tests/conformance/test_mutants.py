"""The suite proves itself: certify mode catches every kind of defective vendor, each with the
criterion that governs the defect, while the known-good base vendor passes those criteria.

The base is reference model 2.0.0 (``helpers.KNOWN_GOOD_VENDOR``), not the shipped reference
model: each mutant is that base with one defect, and the matrix needs a base that passes every
criterion a mutant must fail. The shipped model is chosen for detection, not for that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mutants
import pytest
from helpers import KNOWN_GOOD_VENDOR, certify_standard


def matrix_standard(d: Path, name: str, criteria: set[str]) -> Path:
    """The certify setup's standard cut to ``criteria``."""
    return certify_standard(
        d / "standard.yaml", d / "cases", lambda c: c["id"] in criteria, d / f"matrix-{name}.yaml"
    )


def certify(d: Path, name: str, spec, criteria: set[str]) -> dict:
    """A certify run of the base (``spec`` None) or a mutant under the certify setup's standard
    cut to ``criteria``: the engine with the mutant's adapter injected around the package's own."""
    std = matrix_standard(d, name, criteria)
    return mutants.mutant_bundle(spec, KNOWN_GOOD_VENDOR, std, d / "cases", d / name, "certify")


# Its 24 cold starts of 1.5 s are waiting, not work: its run goes on in a process of its own
# beside the other mutants' runs (started once the base's run, which DK-LAT-01 times, is done;
# its test comes last).
BESIDE = "sleeper"
MATRIX = sorted(mutants.MUTANTS, key=lambda m: m.name == BESIDE)


def start_beside(d: Path, spec, criteria: set[str]) -> subprocess.Popen:
    """The same certify run as ``certify``, through tests/mutants.py's command line."""
    std = matrix_standard(d, spec.name, criteria)
    cmd = [sys.executable, mutants.__file__, spec.name, str(KNOWN_GOOD_VENDOR), str(std)]
    cmd += [str(d / "cases"), str(d / spec.name), "certify"]
    with (d / f"{spec.name}.log").open("w") as log:  # a file: no pipe to fill while it runs
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def certified(certify_setup, request):
    """results.json of a certify run of the base (None) or a mutant, each run once per module.

    A mutant's run judges the criteria that must catch it, the base's every one of those: what
    the tests read. Each criterion's outcome is the one it has in a run of the whole standard:
    its examples come from its own streams (``seed ^ crc32(id)``, conformance/context.py;
    test_search_replay.py runs criteria in both orders), every certify run scores all originals
    before any criterion (all the mutants' state rests on those first reads), and a failed
    mandatory criterion is NOT CONFORMANT whatever else runs. The criteria no mutant is built to
    fail (DK-DEC-RESAMPLE's upsampling alone was a third of a run) are certified whole, twice, in
    test_certify.py."""
    done: dict[str, dict] = {}
    beside: dict[str, subprocess.Popen] = {}
    every = {cid for m in mutants.MUTANTS for cid in m.must_fail}
    selected = {
        item.callspec.params["spec"].name
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and "spec" in getattr(getattr(item, "callspec", None), "params", {})
    }

    def get(spec) -> dict:
        name = "base" if spec is None else spec.name
        if name in beside:
            code = beside[name].wait(timeout=900)
            del beside[name]
            assert code == 0, (certify_setup / f"{name}.log").read_text()[-2000:]
            done[name] = json.loads((certify_setup / name / "results.json").read_text())
        if name not in done:
            criteria = every if spec is None else set(spec.must_fail)
            done[name] = certify(certify_setup, name, spec, criteria)
            if spec is None and BESIDE in selected:
                m = mutants.by_name(BESIDE)
                beside[BESIDE] = start_beside(certify_setup, m, set(m.must_fail))
        return done[name]

    yield get
    for proc in beside.values():  # its test was not reached or timed out: leave no run behind
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def base_results(certified):
    return certified(None)


@pytest.mark.slow
@pytest.mark.parametrize("spec", MATRIX, ids=[m.name for m in MATRIX])
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
