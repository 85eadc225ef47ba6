"""The conformance engine: one typed request in, one evidence bundle out.

Every entry point — ``mammocert run`` / ``evaluate`` / ``demo``, the pytest plugin, ``standard
bar``, ``verify --cases`` and the project's own tests — goes through this module. It parses each
input once (standard, reference set, vendor package), applies certify mode's locks before any
work, evaluates each criterion with the registry's evaluator and writes the bundle
(``results.json``, ``predictions.jsonl``, ``standard.yaml``, ``junit.xml``, ``report.html``,
attestation) as ``docs/contracts.md`` specifies.

``run(request)`` is the whole thing; the pytest plugin drives the same :class:`Session` one
criterion per test item (``open_session`` → ``Session.evaluate`` → ``Session.finish``).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from conformance import judging, redaction, resolution
from conformance.context import EvaluationContext, HypothesisProfile
from conformance.criteria import KIND_FACTS, KINDS, LIVE_KINDS, evaluate
from conformance.impact import ProgrammeImpact, programme_impact
from conformance.impact import store as store_programme
from conformance.outcome import error_result
from harness import __version__
from harness.cases.manifest import Manifest, load_manifest, verify_set
from harness.errors import HarnessFault, UsageError, VerificationError
from harness.executor_choice import ExecutorChoice
from harness.fsio import make_dir, write_atomic
from harness.jsonutil import sha256_file
from harness.predictions import ORIGINAL, Prediction, read_predictions, write_predictions
from harness.profile import RunProfile
from harness.results import (
    NOT_CONFORMANT,
    OUTCOMES,
    SELF_TEST_BANNER,
    CriterionResult,
    RunResults,
    read_results,
    verdict_of,
    write_results,
)
from harness.standard import CriterionSpec, Standard, load_standard
from harness.vendors import VendorPackage, load_vendor_package
from harness.vendors.adapter import VendorAdapter
from reports.verify import Recomputation

MODES = ("certify", "self-test", "demo")
NOT_SELECTED = "not selected in this self-test run"  # an unselected criterion's error reason
LOCKED_MODES = ("certify", "demo")  # certify's rules; demo adds the banner and the demo key
DEMO_NOTICE = (
    "DEMONSTRATION — synthetic reference set, demo standard and demo key; not a certificate"
)
PACKAGES = (
    "numpy",
    "scipy",
    "pydicom",
    "onnx",
    "onnxruntime",
    "pynetdicom",
    "pytest",
    "hypothesis",
    "jsonschema",
    "pyyaml",
)


@dataclass(frozen=True)
class RunRequest:
    """What one conformance run is asked to do (the CLI's and the plugin's options, typed).

    Exactly one of ``vendor`` (run the model) and ``predictions`` (judge a predictions file) is
    given; without a vendor, ``operating_point`` is the vendor-declared threshold. ``select`` is a
    pytest-style keyword expression over criterion ids, kinds and families (self-test only).
    """

    standard: Path
    cases: Path
    out: Path | None = None
    mode: str = "self-test"
    vendor: Path | None = None
    predictions: Path | None = None
    operating_point: float | None = None
    device: str = "cpu"
    key: Path | None = None
    resume: bool = False
    select: str = ""
    junit: bool = True  # write junit.xml into the bundle (the plugin leaves it to pytest)
    # who gets a copy: "vendor" adds the vendor's copy (vendor/, aggregate figures only) to the
    # bundle; "authority" writes the authority's full record alone (conformance.redaction)
    audience: str = "vendor"
    # where the model calls run: this machine, or Dask workers (docs/distributed.md)
    executor: ExecutorChoice = ExecutorChoice()


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def harness_provenance(execution_provider: str, batch_size: int | None = None) -> dict[str, Any]:
    """Harness version, git commit of the harness source (if it is a checkout), package versions,
    where the model ran and how many exams went into one model call (None: no live model)."""
    src = Path(__file__).resolve().parent.parent
    commit, dirty = None, None
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(src), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "packages": pkgs,
        "execution_provider": execution_provider,
        "batch_size": batch_size,
    }


def check_certify(standard: Standard, manifest: Manifest, today: dt.date) -> None:
    """The reference set is the standard's pin and the standard is in force (exit 2 otherwise)."""
    pin = standard.reference_set
    if not pin:
        raise UsageError(
            f"{standard.path}: status {standard.status} standard pins no reference_set; "
            "certify mode needs a pinned set (use --mode self-test, or pin one)"
        )
    if pin["digest"] != manifest.digest:
        raise UsageError(
            f"reference set digest {manifest.digest} is not the standard's pin {pin['digest']}; "
            "certify against the pinned set"
        )
    if not standard.in_force(today):
        raise UsageError(
            f"{standard.path}: standard {standard.id} {standard.version} is not in force on {today} "
            f"(effective {standard.effective}, expires {standard.expires}); use a current version"
        )


def criterion_keywords(spec: CriterionSpec) -> tuple[str, ...]:
    """The names a selection expression matches: the criterion id, its kind and its family."""
    family = KINDS[spec.kind].family if spec.kind in KINDS else ""
    return (spec.id, spec.kind, family, f"test_{family}")


def select_criteria(criteria: Sequence[CriterionSpec], expression: str) -> list[CriterionSpec]:
    """The criteria a ``-k`` expression selects, with pytest's grammar (``and``/``or``/``not``,
    parentheses; a bare word matches case-insensitively inside an id, kind or family)."""
    if not expression:
        return list(criteria)
    from _pytest.mark import expression as grammar

    # pytest < 8.3 raises its own ParseError, later versions SyntaxError
    malformed = (getattr(grammar, "ParseError", SyntaxError), SyntaxError, RecursionError)
    try:
        compiled = grammar.Expression.compile(expression)
    except malformed as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(f"-k {expression[:60]!r}: not a selection expression ({why})") from None

    def matches(spec: CriterionSpec) -> bool:
        names = [n.lower() for n in criterion_keywords(spec)]
        try:
            return compiled.evaluate(lambda word, **_: any(word.lower() in n for n in names))
        except RecursionError:
            raise UsageError(f"-k {expression[:60]!r}: nested too deeply") from None

    return [c for c in criteria if matches(c)]


def _writable(out: Path) -> None:
    make_dir(out, "--out")
    try:
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"{out}: cannot write the evidence bundle here ({exc.strerror}); choose another --out"
        ) from None


@dataclass
class Session:
    """One conformance run in progress: parsed inputs, the results so far, the running model."""

    request: RunRequest
    standard: Standard
    manifest: Manifest
    package: VendorPackage | None
    criteria: tuple[CriterionSpec, ...]  # the selected criteria, in the standard's order
    adapter: VendorAdapter | None = None  # injected (tests); otherwise opened from the package
    predictions_file: list[Prediction] | None = None  # read (and checked) by open_session
    results: dict[str, CriterionResult] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    started: str | None = None
    profile: RunProfile | None = None  # --profile: where the time goes (never in the results)
    _ctx: EvaluationContext | None = None
    _adapter_info: Any = None
    _harness_checks_input: bool | None = None  # known once the model ran

    @property
    def hypothesis(self) -> HypothesisProfile:
        return HypothesisProfile.of(self.standard, self.request.mode)

    @property
    def set_note(self) -> str:
        """In self-test on a set the standard does not pin: its thresholds were set for another
        set, so a criterion may be not resolvable here (said before any work and in the report)."""
        if self.request.mode != "self-test":
            return ""
        pin = self.standard.reference_set
        if pin and pin.get("digest") == self.manifest.digest:
            return ""
        size = f"{self.manifest.id} ({len(self.manifest.exams)} exams)"
        if not pin:
            return (
                f"{self.standard.id} {self.standard.version} pins no reference set: its thresholds "
                f"were not set for {size}, so a criterion may not be resolvable on it."
            )
        return (
            f"The thresholds of {self.standard.id} {self.standard.version} were set for its "
            f"pinned reference set {pin.get('id', '')} ({pin.get('digest', '')}); this self-test "
            f"runs on {size}, so a criterion may not be resolvable here and the outcome does not "
            "predict a certify run."
        )

    # -- evaluation --------------------------------------------------------------------------
    def context(self) -> EvaluationContext:
        """The evaluation context; the first call runs the model over the set (or reads the
        predictions file)."""
        if self._ctx is not None:
            return self._ctx
        self.started = utcnow()
        req = self.request
        live = None
        if req.predictions is not None:
            if self.predictions_file is None:
                self.predictions_file = read_predictions(req.predictions)
            predictions = self.predictions_file
        else:
            from conformance.live import LiveModel

            assert self.package is not None
            live = LiveModel.start(
                self.package,
                self.manifest,
                req.out,
                req.device,
                req.resume,
                adapter=self.adapter,
                executor=req.executor,
                profile=self.profile,
            )
            predictions = live.original_predictions()
            self._adapter_info = live.info
            self._harness_checks_input = live.harness_checks_input
        self._ctx = EvaluationContext(
            standard=self.standard,
            manifest=self.manifest,
            predictions=predictions,
            operating_point=self.operating_point,
            vendor=self.vendor_identity(),
            mode=req.mode,
            live=live,
            hypothesis=self.hypothesis,
        )
        return self._ctx

    @property
    def operating_point(self) -> float:
        if self.package is not None:
            return float(self.package.operating_point)
        assert self.request.operating_point is not None
        return float(self.request.operating_point)

    def evaluate(self, spec: CriterionSpec) -> CriterionResult:
        """Evaluate one criterion and record it as evidence."""
        t0 = time.perf_counter()
        with self.profile.phase(spec.id) if self.profile is not None else nullcontext():
            ctx = self.context()
            res = resolution.settle(self.standard, self.manifest, spec, evaluate(spec, ctx))
        self.record(res, time.perf_counter() - t0)
        return res

    def record(self, res: CriterionResult, seconds: float = 0.0) -> None:
        if res.id in self.results:
            raise HarnessFault(f"criterion {res.id} evaluated twice")
        self.results[res.id] = res
        self.timings[res.id] = seconds

    def vendor_identity(self) -> dict[str, Any]:
        pkg = self.package
        if pkg is None:
            # No model artifact: the evaluated predictions file is the subject of the attestation.
            path = self.request.predictions
            assert path is not None
            return {
                "vendor": "(not given: predictions file only)",
                "product": path.name,
                "version": "n/a",
                "interface": "predictions-file",
                "operating_point": self.request.operating_point,
                "package_digest": None,
                "model_digests": {f"predictions:{path.name}": sha256_file(path)},
            }
        return {
            "vendor": pkg.vendor,
            "product": pkg.product,
            "version": pkg.version,
            "interface": pkg.interface,
            "operating_point": float(pkg.operating_point),  # on the mapped [0, 1] scores
            "operating_point_native": float(pkg.native_operating_point),  # on score_range
            "score_range": list(pkg.score_range),
            "package_digest": pkg.package_digest,
            "model_digests": dict(pkg.model_digests),
            # whether the model's input is built by the harness after its own intended-use
            # check (ONNX, oip-v2): recorded so `verify --cases` replays input rejection alike
            **(
                {"harness_checks_input": self._harness_checks_input}
                if self._harness_checks_input is not None
                else {}
            ),
        }

    # -- the bundle --------------------------------------------------------------------------
    def finish(self, skipped: Sequence[str] = ()) -> RunResults:
        """Close the model, assemble the results and write the bundle (when ``out`` is set)."""
        mode = self.request.mode
        criteria: list[CriterionResult] = []
        for spec in self.standard.criteria:
            res = self.results.get(spec.id)
            if res is None:
                why = (
                    NOT_SELECTED
                    if mode == "self-test"
                    else "the conformance test for it did not run to completion"
                )
                res = error_result(spec, why)
            criteria.append(res)
        ctx = self._ctx
        predictions: list[Prediction] = []
        if ctx is not None:
            predictions = list(ctx.predictions) + (ctx.live.extra_predictions() if ctx.live else [])
            if ctx.live is not None:
                ctx.live.close()  # ends the session/sockets and checkpoints the journal
        # the report's programme-impact section, when the standard asks for one (change 24)
        programme = programme_impact(
            self.standard, self.manifest, predictions, self.operating_point, self.vendor_identity()
        )
        by_status: dict[str, int] = {}
        for p in predictions:
            if p.condition == ORIGINAL:
                by_status[p.status] = by_status.get(p.status, 0) + 1
        faults = ctx.table().unreadable_list() if ctx is not None else []
        outcomes = {o: sum(c.outcome == o for c in criteria) for o in OUTCOMES}
        verdict = verdict_of(criteria)
        if skipped and mode in LOCKED_MODES:
            verdict = NOT_CONFORMANT  # certify allows no skips
        notice = {"self-test": SELF_TEST_BANNER, "demo": DEMO_NOTICE}.get(mode, "")
        provider = getattr(self._adapter_info, "execution_provider", "n/a")
        batch_size = None
        if self._adapter_info is not None:
            # the local executor groups exams per call (onnx.batch_size); Dask calls one by one
            local = self.request.executor.kind == "local"
            batch_size = getattr(self._adapter_info, "batch_size", 1) if local else 1
        results = RunResults(
            verdict=verdict,
            mode=mode,
            standard=self.standard.identity(),
            reference_set={
                "id": self.manifest.id,
                "version": self.manifest.version,
                "digest": self.manifest.digest,
                "n_exams": len(self.manifest.exams),
                "n_cancers": sum(e.label for e in self.manifest.exams),
            },
            vendor=self.vendor_identity(),
            harness=harness_provenance(provider, batch_size),
            seeds={
                "seed": self.standard.seed,
                "criterion_rng": "numpy default_rng([seed, crc32(criterion id)])",
                "hypothesis": self.hypothesis.record(),
            },
            started=self.started or utcnow(),
            finished=utcnow(),
            criteria=criteria,
            summary={
                "predictions": by_status,
                "criteria": outcomes,
                "faults": faults[:200],
                "n_faults": len(faults),
                "skipped_tests": list(skipped),
                **({"set_note": self.set_note} if self.set_note else {}),
                **({"programme_impact": programme.summary()} if programme is not None else {}),
            },
            notice=notice,
            signing="key" if self.request.key else ("demo-key" if mode == "demo" else "unsigned"),
        )
        if self.request.out is not None:
            self._write_bundle(results, predictions, programme)
        return results

    def _write_bundle(
        self,
        results: RunResults,
        predictions: list[Prediction],
        programme: ProgrammeImpact | None = None,
    ) -> None:
        out = self.request.out
        assert out is not None
        write_results(out / "results.json", results)
        store_programme(programme, out)
        write_predictions(out / "predictions.jsonl", predictions)
        write_atomic(out / "standard.yaml", self.standard.path.read_bytes(), "standard.yaml")
        if self.request.junit:
            write_junit(out / "junit.xml", results, self.timings)
        from reports.render import render_report
        from reports.signing import write_attestation

        render_report(out, KIND_FACTS)
        vendor_dir = out / redaction.VENDOR_DIR
        if self.request.audience == "vendor":
            # written before the attestation, so it covers the vendor's copy too
            copy = redaction.vendor_copy(results)
            make_dir(vendor_dir, "--out")
            write_results(vendor_dir / "results.json", copy)
            store_programme(programme, vendor_dir)  # aggregates over the set only
            if self.request.junit:
                write_junit(vendor_dir / "junit.xml", copy, self.timings)
            render_report(vendor_dir, KIND_FACTS)
        else:  # a copy left by an earlier run into this directory is not this run's
            for name in redaction.VENDOR_FILES:
                (vendor_dir / name).unlink(missing_ok=True)
            store_programme(None, vendor_dir)
        write_attestation(
            out,
            key_path=self.request.key,
            demo_key=self.request.mode == "demo",
        )


def open_session(request: RunRequest, adapter: VendorAdapter | None = None) -> Session:
    """Parse and check every input once, before any work; a bad input is a one-line UsageError.

    ``adapter`` replaces the adapter the vendor package would open (tests inject a wrapped or
    fake model this way); the package still gives the vendor's identity and operating point.
    """
    req = request
    if req.mode not in MODES:
        raise UsageError(f"--mode {req.mode!r}: use one of {', '.join(MODES)}")
    if req.audience not in redaction.AUDIENCES:
        raise UsageError(
            f"--audience {req.audience!r}: use one of {', '.join(redaction.AUDIENCES)}"
        )
    if req.vendor is None and req.predictions is None:
        raise UsageError(
            "pass --vendor PKG (run the model) or --predictions FILE (evaluate a predictions file)"
        )
    if req.mode in LOCKED_MODES:
        if req.select:
            raise UsageError(
                "certify mode runs the standard's full criteria list; remove -k "
                "(use --mode self-test to select)"
            )
        if req.vendor is None or req.predictions is not None:
            raise UsageError(
                "certify mode runs the vendor's model itself; pass --vendor and no --predictions"
            )
    standard = load_standard(req.standard)
    for c in standard.criteria:
        if c.kind not in KINDS:
            raise UsageError(
                f"{standard.path}:{c.line}: criterion {c.id} has kind {c.kind!r} that this "
                f"harness cannot check (known kinds: {', '.join(KINDS)})"
            )
    if req.mode in LOCKED_MODES:
        try:
            manifest = verify_set(req.cases)
        except VerificationError as exc:  # for this run the set is a bad input (exit 2)
            raise UsageError(f"{exc}; certify runs only on the reference set as built") from None
    else:
        manifest = load_manifest(req.cases)
    # the whole predictions file is checked before any criterion: a bad record is exit 2
    predictions = read_predictions(req.predictions) if req.predictions is not None else None
    package = load_vendor_package(req.vendor) if req.vendor is not None else None
    if package is None and req.operating_point is None:
        raise UsageError("without --vendor, pass --operating-point (the vendor-declared threshold)")
    if req.mode in LOCKED_MODES:
        check_certify(standard, manifest, dt.date.today())
    if req.key is not None:
        from reports.signing import load_private_key

        load_private_key(Path(req.key))
    if req.out is not None:
        _writable(req.out)
    criteria = tuple(select_criteria(standard.criteria, req.select))
    if not criteria:
        raise UsageError(f"-k {req.select!r} selects no criterion of {standard.path}")
    return Session(
        req, standard, manifest, package, criteria, adapter=adapter, predictions_file=predictions
    )


def run(
    request: RunRequest,
    adapter: VendorAdapter | None = None,
    on_result: Callable[[CriterionResult], None] | None = None,
    on_start: Callable[[EvaluationContext], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    profile: RunProfile | None = None,
) -> RunResults:
    """The whole run: open, evaluate every selected criterion, write the bundle. ``on_note``
    hears, before any work, what the reader must know first (``Session.set_note``);
    ``on_start`` sees the context once the original predictions are in, before any criterion.
    ``profile`` times the phases: setup, the original pass, each criterion, the bundle."""

    def phase(name: str) -> AbstractContextManager[Any]:
        return profile.phase(name) if profile is not None else nullcontext()

    with phase("setup"):
        session = open_session(request, adapter)
    session.profile = profile
    if on_note is not None and session.set_note:
        on_note(session.set_note)
    try:
        # The model runs over the set first, outside any one criterion: a refusal there (a set
        # that is not de-identified for a remote vendor, a journal of another model) is the
        # run's input error, not every criterion's.
        with phase("original"):
            ctx = session.context()
        if on_start is not None:
            on_start(ctx)
        for spec in session.criteria:
            try:
                res = session.evaluate(spec)
            except Exception as exc:  # a harness fault in one evaluator is that criterion's error
                res = harness_error(spec, exc)
                session.record(res)
            if on_result is not None:
                on_result(res)
    except BaseException:
        ctx = session._ctx
        if ctx is not None and ctx.live is not None:
            ctx.live.close()  # keep the journal consistent for --resume
        raise
    with phase("bundle"):
        return session.finish()


def harness_error(spec: CriterionSpec, exc: Exception) -> CriterionResult:
    """A harness fault in one evaluator is that criterion's error (in a run and in a replay)."""
    return error_result(
        spec, f"the harness failed while evaluating it ({type(exc).__name__}: {exc})"
    )


_context = judging.context


def judge(
    standard: Standard,
    manifest: Manifest,
    predictions: Iterable[Prediction],
    operating_point: float,
    criteria: Iterable[CriterionSpec],
    vendor: Mapping[str, Any] | None = None,
    mode: str = "self-test",
) -> list[CriterionResult]:
    """Judge criteria that need only predictions (no model), as a run does: ``verify --cases``
    uses this (``standard bar`` judges idealised models with the raw ``conformance.judging``)."""
    specs = list(criteria)
    raw = judging.judge(standard, manifest, predictions, operating_point, specs, vendor, mode)
    return resolution.settle_all(standard, manifest, specs, raw)


# Why a criterion of a bundle is not re-judged from the bundle's records.
NEEDS_MODEL = "needs the model again: its kind {kind} is not judged from the predictions alone"
SEARCH_NOT_RECORDED = (
    "needs the model again: its Hypothesis search reused examples that earlier runs saved "
    "(self-test without derandomize), which the bundle does not record"
)
NOT_RUN = "not evaluated in this run (not selected by -k in self-test): nothing to re-judge"


def recompute_criteria(bundle_dir: Path, cases_dir: Path) -> Recomputation:
    """Re-judge, from a bundle's own records and its reference set, every criterion that does not
    need the model again; ``mammocert verify --cases`` compares them with results.json.

    A kind judged from the original predictions is evaluated on them. A live kind that is
    ``replayable`` (its verdict is a function of the predictions it asked the model for) is
    re-run against the bundle's ``predictions.jsonl`` in the model's place
    (:class:`conformance.live.RecordedModel`): the same seeded draws and Hypothesis search ask for
    the same perturbed, repeated or invalid inputs and get the recorded answers, so an outcome
    edited in results.json and re-signed no longer matches. A request the bundle does not record
    fails verification. The rest is listed with the reason it needs the model."""
    from conformance.live import NotRecorded, RecordedModel

    bundle_dir = Path(bundle_dir)
    results = read_results(bundle_dir / "results.json")
    standard = load_standard(bundle_dir / "standard.yaml")
    manifest = verify_set(cases_dir)
    if manifest.digest != results.reference_set["digest"]:
        raise VerificationError(
            f"{cases_dir}: reference set digest {manifest.digest} is not the bundle's "
            f"{results.reference_set['digest']}"
        )
    records = read_predictions(bundle_dir / "predictions.jsonl")
    database_on = results.seeds.get("hypothesis", {}).get("database") == "on"
    # a predictions-file run had no model: its live criteria were judged without one, as here
    model_ran = results.vendor.get("interface") != "predictions-file"
    ctx = _context(
        standard,
        manifest,
        [p for p in records if p.condition == ORIGINAL],
        float(results.vendor["operating_point"]),
        results.vendor,
        results.mode,
        live=RecordedModel(manifest, records, results.vendor) if model_ran else None,
    )
    attested = {c.id: c for c in results.criteria}
    rejudged: list[CriterionResult] = []
    not_rejudged: dict[str, str] = {}
    for spec in standard.criteria:
        kind = KINDS.get(spec.kind)
        if kind is None:
            raise VerificationError(
                f"{spec.id}: kind {spec.kind!r} is unknown to this harness ({__version__}); "
                "verify with the harness version that ran it"
            )
        was = attested.get(spec.id)
        if (
            results.mode == "self-test"  # the only mode that selects; certify runs everything
            and was is not None
            and was.outcome == "error"
            and was.evidence.get("error") == NOT_SELECTED
        ):
            not_rejudged[spec.id] = NOT_RUN
            continue
        if model_ran and kind.needs_live:
            if not kind.replayable:
                not_rejudged[spec.id] = NEEDS_MODEL.format(kind=spec.kind)
                continue
            if kind.searches and database_on:
                not_rejudged[spec.id] = SEARCH_NOT_RECORDED
                continue
        try:
            rejudged.append(resolution.settle(standard, manifest, spec, evaluate(spec, ctx)))
        except NotRecorded as exc:
            raise VerificationError(
                f"{spec.id}: cannot be recomputed from the bundle's records: {exc} "
                "(removed from the bundle, or the run was not reproducible)"
            ) from None
        except Exception as exc:  # as in a run: a harness fault is that criterion's error
            rejudged.append(harness_error(spec, exc))
    return Recomputation(results=tuple(rejudged), not_rejudged=not_rejudged)


def write_junit(path: Path, results: RunResults, timings: Mapping[str, float]) -> None:
    """A JUnit XML report, one test case per criterion (what a vendor's CI server reads)."""
    by_kind = {k: spec.family for k, spec in KINDS.items()}
    suite = ET.Element(
        "testsuite",
        name="mammocert",
        tests=str(len(results.criteria)),
        failures=str(sum(c.outcome == "failed" for c in results.criteria)),
        errors=str(sum(c.outcome == "error" for c in results.criteria)),
        skipped=str(sum(c.outcome == "not_applicable" for c in results.criteria)),
        time=f"{sum(timings.values()):.3f}",
    )
    for c in results.criteria:
        family = by_kind.get(c.kind, c.kind)
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"conformance.test_{family}",
            name=f"test_{family}[{c.id}]",
            time=f"{timings.get(c.id, 0.0):.3f}",
        )
        if c.outcome == "failed":
            ET.SubElement(case, "failure", message=c.explanation[:500]).text = c.explanation
        elif c.outcome == "error":
            ET.SubElement(case, "error", message=c.explanation[:500]).text = c.explanation
        elif c.outcome == "not_applicable":
            ET.SubElement(case, "skipped", message=c.explanation[:500])
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    write_atomic(path, ET.tostring(root, encoding="utf-8", xml_declaration=True), "junit.xml")


__all__ = [
    "LIVE_KINDS",
    "MODES",
    "RunRequest",
    "Session",
    "harness_error",
    "judge",
    "open_session",
    "recompute_criteria",
    "run",
]
