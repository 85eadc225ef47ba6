"""The mammocert pytest plugin: the engine's criteria as pytest items, for a vendor's own CI.

Registered through the ``pytest11`` entry point so a vendor can run
``pytest --pyargs conformance --vendor PKG --standard FILE --cases DIR [--out DIR] --junitxml=...``.
It does nothing unless ``--standard`` is given. It opens one engine session
(:func:`conformance.engine.open_session`, which checks every input and certify mode's locks),
parametrizes each family module ``conformance/test_<family>.py`` with that family's criteria,
and lets the session write the bundle at the end.

What only pytest can break is checked here: every criterion is collected by exactly one item, and
certify mode allows no deselection or skip. Violations are usage errors (pytest exit 4), never a
pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

_SESSION = pytest.StashKey["Any"]()


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
    # Where the model calls run, as on the CLI (docs/distributed.md).
    group.addoption(
        "--executor", default="local", choices=["local", "dask"], help="local (default) or dask"
    )
    group.addoption(
        "--scheduler", default=None, help="with --executor dask: a running Dask scheduler address"
    )
    group.addoption(
        "--workers",
        type=int,
        default=None,
        help="with --executor dask: start a local Dask cluster of N worker processes",
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def pytest_configure(config: pytest.Config) -> None:
    opt = config.getoption
    if not opt("--standard", default=None):
        return
    from conformance.engine import LOCKED_MODES, RunRequest, open_session
    from harness.errors import MammocertError
    from harness.executor_choice import ExecutorChoice

    if not opt("--cases"):
        raise pytest.UsageError(
            "--cases is required: the reference-set directory the standard is evaluated on"
        )
    mode = opt("--mode")
    if mode in LOCKED_MODES and (opt("keyword") or opt("markexpr")):
        raise pytest.UsageError(
            "certify mode runs the standard's full criteria list; remove -k/-m "
            "(use --mode self-test to select)"
        )
    try:
        executor = ExecutorChoice(opt("--executor"), opt("--scheduler"), opt("--workers"))
    except MammocertError as exc:
        raise pytest.UsageError(str(exc)) from None
    request = RunRequest(
        standard=Path(opt("--standard")),
        cases=Path(opt("--cases")),
        out=_path(opt("--out")),
        mode=mode,
        vendor=_path(opt("--vendor")),
        predictions=_path(opt("--predictions")),
        operating_point=opt("--operating-point"),
        device=opt("--device"),
        key=_path(opt("--key")),
        resume=bool(opt("--resume")),
        executor=executor,
        junit=False,  # pytest writes it with --junitxml
    )
    try:
        config.stash[_SESSION] = open_session(request)
    except MammocertError as exc:
        raise pytest.UsageError(str(exc)) from None


def _session(config: pytest.Config) -> Any:
    return config.stash.get(_SESSION, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "criterion" not in metafunc.fixturenames:
        return
    session = _session(metafunc.config)
    if session is None:
        raise pytest.UsageError(
            "the conformance suite needs --standard (and --cases, --vendor or --predictions)"
        )
    from conformance.criteria import FAMILIES

    family = metafunc.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    kinds = FAMILIES.get(family)
    if kinds is None:
        raise pytest.UsageError(
            f"conformance module test_{family} is not a known family ({', '.join(FAMILIES)})"
        )
    specs = [c for c in session.standard.criteria if c.kind in kinds]
    metafunc.parametrize("criterion", specs, ids=[c.id for c in specs])


def check_complete(standard: Any, collected_ids: Sequence[str]) -> None:
    """Every criterion of the standard is collected by exactly one test item."""
    counts: dict[str, int] = {}
    for cid in collected_ids:
        counts[cid] = counts.get(cid, 0) + 1
    for c in standard.criteria:
        n = counts.get(c.id, 0)
        if n != 1:
            raise pytest.UsageError(
                f"{standard.path}:{c.line}: criterion {c.id} collected by {n} test items "
                "(must be exactly 1); run the whole suite with `pytest --pyargs conformance`"
            )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _session(config)
    if state is None:
        return
    # Families without criteria in this standard yield an empty-parameter item (a skip); drop them.
    items[:] = [it for it in items if _criterion_of(it) is not None]
    check_complete(state.standard, [_criterion_of(it).id for it in items])


def pytest_collection_finish(session: pytest.Session) -> None:
    state = _session(session.config)
    if state is None:
        return
    from conformance.engine import LOCKED_MODES

    selected = {c.id for c in map(_criterion_of, session.items) if c is not None}
    missing = [c.id for c in state.standard.criteria if c.id not in selected]
    if missing and state.request.mode in LOCKED_MODES:
        raise pytest.UsageError(
            f"certify mode runs every criterion; deselected: {', '.join(missing)}"
        )


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
    state = _session(item.config)
    spec = _criterion_of(item)
    if state is None or spec is None:
        return report
    if report.skipped and report.when in ("setup", "call"):
        item.config.stash.setdefault(_SKIPPED, []).append(item.nodeid)
    if call.excinfo is not None and spec.id not in state.results:
        from conformance.outcome import error_result

        exc = call.excinfo
        state.record(
            error_result(
                spec, f"the harness failed while evaluating it ({exc.typename}: {exc.value})"
            )
        )
    return report


_SKIPPED = pytest.StashKey["list[str]"]()


@pytest.fixture(scope="session")
def conformance_ctx(request: pytest.FixtureRequest) -> Any:
    """The evaluation context (predictions computed or loaded once per session)."""
    return _session(request.config).context()


@pytest.fixture
def record_criterion(request: pytest.FixtureRequest) -> Any:
    """Record a criterion result as evidence; returns it so the test can assert on the outcome."""
    session = _session(request.config)

    def record(res: Any) -> Any:
        session.record(res)
        if res.outcome == "not_applicable":  # the standard scoped it to other products
            pytest.skip(res.explanation)
        return res

    return record


# Last: `--junitxml` into the bundle is written by pytest's own sessionfinish, and the bundle is
# sealed whole when ours writes the attestation, so junit.xml must be there by then.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _session(session.config)
    if state is None or not state.started:
        return
    state.finish(skipped=session.config.stash.get(_SKIPPED, []))
