"""The mammocert pytest plugin: turns a standard into one collected test item per criterion.

Registered through the ``pytest11`` entry point so a vendor can run
``pytest --pyargs conformance --vendor PKG --standard FILE --cases DIR [--out DIR] --junitxml=...``.
It does nothing unless ``--standard`` is given.

Rules it enforces (DESIGN.md §2):
- completeness: every criterion of the standard is collected by exactly one test item;
- certify mode is locked: no ``-k``/``-m``/deselection, no skips, the reference set digest must
  equal the standard's pin, the standard must be in force, the Hypothesis database is off.
Violations are usage errors (pytest exit 4, ``mammocert`` exit 2), never a pass.
"""

from __future__ import annotations

from typing import Any

import pytest

_STATE = pytest.StashKey["Any"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mammocert", "mammocert conformance suite")
    group.addoption("--vendor", default=None, help="vendor package (directory or .zip)")
    group.addoption(
        "--predictions", default=None, help="predictions.jsonl (evaluate without running a model)"
    )
    group.addoption("--standard", default=None, help="standard YAML")
    group.addoption("--cases", default=None, help="reference-set directory")
    group.addoption(
        "--mode", default="self-test", choices=["certify", "self-test", "demo"], help="run mode"
    )
    group.addoption("--out", default=None, help="evidence bundle directory")
    group.addoption(
        "--device", default="cpu", choices=["cpu", "cuda"], help="ONNX execution device"
    )
    group.addoption("--key", default=None, help="Ed25519 private key (PEM) to sign the attestation")
    group.addoption(
        "--operating-point",
        type=float,
        default=None,
        help="operating point when no vendor package is given",
    )
    group.addoption(
        "--resume", action="store_true", default=False, help="reuse the journal in --out"
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--standard", default=None):
        return
    from conformance.session import SuiteState
    from harness.errors import MammocertError

    try:
        state = SuiteState.from_options(config)
    except MammocertError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_STATE] = state


def _state(config: pytest.Config) -> Any:
    return config.stash.get(_STATE, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "criterion" not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    if state is None:
        raise pytest.UsageError(
            "the conformance suite needs --standard (and --cases, --vendor or --predictions)"
        )
    family = metafunc.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    specs = state.criteria_for_family(family)
    metafunc.parametrize("criterion", specs, ids=[c.id for c in specs])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _state(config)
    if state is None:
        return
    # Families without criteria in this standard yield an empty-parameter item (a skip); drop them.
    keep = [it for it in items if _criterion_of(it) is not None]
    items[:] = keep
    state.check_complete([_criterion_of(it).id for it in items])


def pytest_collection_finish(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is None:
        return
    state.check_selection([c.id for c in map(_criterion_of, session.items) if c is not None])


def _criterion_of(item: pytest.Item) -> Any:
    from harness.standard import CriterionSpec

    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("criterion") if callspec is not None else None
    return spec if isinstance(spec, CriterionSpec) else None  # empty parametrization -> NOTSET


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A criterion whose evaluation raised (a harness fault, not a failed criterion) is recorded
    as ``error`` with the exception, so results.json says what went wrong."""
    report = yield
    state = _state(item.config)
    spec = _criterion_of(item)
    if state is not None and report.skipped:
        state.skipped.append(item.nodeid)
    if (
        state is not None
        and spec is not None
        and call.excinfo is not None
        and spec.id not in state.results
    ):
        from conformance.outcome import error_result

        exc = call.excinfo
        state.record(
            error_result(
                spec, f"the harness failed while evaluating it ({exc.typename}: {exc.value})"
            )
        )
    return report


@pytest.fixture(scope="session")
def conformance_ctx(request: pytest.FixtureRequest) -> Any:
    """The evaluation context (predictions computed or loaded once per session)."""
    return _state(request.config).context()


@pytest.fixture
def record_criterion(request: pytest.FixtureRequest) -> Any:
    """Record a criterion result as evidence; returns it so the test can assert on the outcome."""
    state = _state(request.config)

    def record(res: Any) -> Any:
        state.record(res)
        return res

    return record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None or not state.started:
        return
    state.finish(skipped=list(state.skipped))
