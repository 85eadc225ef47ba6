"""Project-wide pytest configuration; shared helpers live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.cases.manifest import Manifest


@pytest.fixture(scope="session")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Manifest]:
    """``default_set(n)``: the default recipe's set of ``n`` exams, built once per session for
    every module that needs that set (a build's digest does not depend on its worker count:
    tests/cases/test_build.py). Read it in place, or copy it (``shutil.copytree``) to change it."""
    from harness.cases import DEFAULT_RECIPE
    from harness.cases.build import build_reference_set

    built: dict[int, Manifest] = {}

    def get(exams: int) -> Manifest:
        if exams not in built:
            out = tmp_path_factory.mktemp(f"default-{exams}") / "cases"
            # two workers: test_build.py compares this build with a one-worker one
            built[exams] = build_reference_set(DEFAULT_RECIPE, out, exams=exams, workers=2)
        return built[exams]

    return get
