"""A criterion's Hypothesis search is a function of the standard's seed, the criterion and the
model's answers alone: the same examples in any process, in any order of criteria, with or
without others before it; and ``verify --cases`` replays it exactly from the bundle.

Hypothesis draws about one value in twenty from constants it collects from the source of every
local module imported so far, so a search used to change with what the process had imported (a
CLI versus a script, a vendor's adapter, the criteria run before it). These tests import such a
module between a search and its repetition, as a verifying process does.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import KNOWN_GOOD_VENDOR

from conformance.context import HypothesisProfile
from conformance.engine import RunRequest, recompute_criteria, run
from harness.predictions import ExamOutput
from harness.vendors.adapter import FakeAdapter
from reports.signing import generate_keypair

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "standards" / "demo.yaml"
SEARCHES = ("DK-INV-MIRROR", "DK-INV-METADATA", "DK-INV-ENCODING")
_planted = itertools.count()


def import_local_module(where: Path) -> None:
    """Import a new module, outside site-packages, whose source holds integers across the
    ranges the searches draw from (exam indices, metadata seeds, date shifts)."""
    name = f"planted_constants_{next(_planted)}"
    values = [*range(1, 400, 7), *range(-3643, 3650, 97), *range(10**5 + 3, 2**32, 2**26 + 11)]
    path = where / f"{name}.py"
    path.write_text(f"TABLE = {values!r}\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def _draws(profile: HypothesisProfile) -> list[tuple[str, int, int]]:
    from hypothesis import given, seed
    from hypothesis import strategies as st

    from harness.perturb.metadata import metadata_params

    ids = [f"E{i:04d}" for i in range(1, 201)]
    seen: list[tuple[str, int, int]] = []

    @seed(20261127)
    @profile.settings(80, None)
    @given(exam_id=st.sampled_from(ids), params=metadata_params())
    def search(exam_id: str, params: Any) -> None:
        seen.append((exam_id, params.seed, params.date_shift_days))

    profile.run(search)
    return seen


def test_a_search_draws_the_same_examples_whatever_the_process_imported(tmp_path):
    from hypothesis.internal.conjecture import providers

    hook = providers._get_local_constants
    profile = HypothesisProfile(derandomize=True, deadline_ms=None, database=False)
    first = _draws(profile)
    import_local_module(tmp_path)
    assert _draws(profile) == first
    # Hypothesis's own behaviour outside a criterion's search is left as it was
    assert providers._get_local_constants is hook


def test_a_hypothesis_whose_pool_cannot_be_pinned_is_refused(monkeypatch):
    """A Hypothesis that collects constants through another hook would make searches depend on
    the process again: a harness fault (the criterion's error), never a silent search."""
    from hypothesis.internal.conjecture import providers

    from harness.errors import HarnessFault

    monkeypatch.delattr(providers, "_get_local_constants")
    ran = []
    profile = HypothesisProfile(derandomize=True, deadline_ms=None, database=False)
    with pytest.raises(HarnessFault, match="cannot pin"):
        profile.run(lambda: ran.append(1))
    assert ran == []


@pytest.fixture(scope="module")
def ws(tmp_path_factory, default_set) -> Path:
    d = tmp_path_factory.mktemp("search-replay")
    shutil.copytree(default_set(6).root, d / "cases")
    raw = yaml.safe_load(DEMO.read_text())
    raw.pop("reference_set", None)
    by_id = {c["id"]: c | {"examples": 20} for c in raw["criteria"] if c["id"] in SEARCHES}
    for name, order in (("forward", list(SEARCHES)), ("reversed", list(reversed(SEARCHES)))):
        std = dict(raw, criteria=[by_id[i] for i in order])
        (d / f"{name}.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    generate_keypair(d / "keys")
    return d


def model() -> FakeAdapter:
    """A model that scores the mean stored pixel value: a mirror or new metadata keep it (those
    searches run all their examples), an inverted photometric interpretation does not (the
    encoding search fails and is shrunk)."""

    def score(exam) -> ExamOutput:
        v = float(np.mean([ds.pixel_array.mean() for _ref, ds in exam.images])) / 2**16
        return ExamOutput(score=v, breasts={"L": v, "R": v})

    return FakeAdapter(score)


def _run(ws: Path, standard: str, out: str) -> Path:
    run(
        RunRequest(
            standard=ws / f"{standard}.yaml",
            cases=ws / "cases",
            out=ws / out,
            vendor=KNOWN_GOOD_VENDOR,
            key=ws / "keys" / "signing-key.pem",
            audience="authority",
        ),
        adapter=model(),
    )
    return ws / out


def _asked(bundle: Path, relation: str) -> list[tuple[str, str]]:
    rows = (bundle / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted(
        (r["exam_id"], r["condition"])
        for r in map(json.loads, rows)
        if r["condition"].split(":")[0] == relation
    )


@pytest.fixture()
def constants_often(monkeypatch):
    """Hypothesis consults its constant pool on one draw in twenty, and a run of a few dozen
    examples mostly mutates earlier ones, so a small run may never reach it: consulted on every
    other draw here, so a search that depends on the pool shows it on a small set."""
    from hypothesis.internal.conjecture.providers import HypothesisProvider

    draw = HypothesisProvider._maybe_draw_constant

    def often(self, choice_type, constraints, *, p=0.05):
        return draw(self, choice_type, constraints, p=max(p, 0.5))

    monkeypatch.setattr(HypothesisProvider, "_maybe_draw_constant", often)


@pytest.mark.slow
def test_searches_do_not_depend_on_the_order_or_what_ran_before(ws, constants_often, tmp_path):
    """Two runs, the second in the other order after more modules were imported, ask the model
    for the same inputs; the replay, after yet more, re-judges every search from the records."""
    forward = _run(ws, "forward", "often-forward")
    outcomes = {
        c["id"]: c["outcome"]
        for c in json.loads((forward / "results.json").read_text())["criteria"]
    }
    assert outcomes == {
        "DK-INV-MIRROR": "passed",
        "DK-INV-METADATA": "passed",
        "DK-INV-ENCODING": "failed",
    }
    import_local_module(tmp_path)
    other = _run(ws, "reversed", "often-reversed")
    for relation in ("mirror", "metadata", "encoding"):
        assert _asked(forward, relation), relation
        assert _asked(other, relation) == _asked(forward, relation), relation
    import_local_module(tmp_path)
    again = recompute_criteria(forward, ws / "cases")
    assert again.not_rejudged == {}
    assert {r.id: r.outcome for r in again.results} == outcomes


@pytest.mark.slow
def test_verify_replays_a_run_in_a_fresh_process(ws, tmp_path):
    """The run in this process, ``mammocert verify --cases`` in another (other modules loaded,
    as a verifier's CLI has): every search is re-judged, none named as not re-judged."""
    forward = _run(ws, "forward", "forward")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "verify",
            str(forward),
            "--key",
            str(ws / "keys" / "signing-key.pub.pem"),
            "--cases",
            str(ws / "cases"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "re-judged 3 criteria" in cli.stdout and "not re-judged" not in cli.stdout
