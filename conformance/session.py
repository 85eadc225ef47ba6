"""One conformance session: inputs, certify-mode locks, evidence collection, the bundle; and the
``mammocert run`` / ``evaluate`` commands that drive the suite through ``pytest.main``."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.context import EvaluationContext
from conformance.criteria import FAMILIES, FAMILY_OF, KIND_FACTS, LIVE_KINDS
from harness import __version__
from harness.cases.manifest import Manifest, load_manifest, verify_set
from harness.errors import HarnessFault, StandardError, UsageError
from harness.predictions import Prediction, read_predictions, write_predictions
from harness.results import (
    NOT_CONFORMANT,
    SELF_TEST_BANNER,
    CriterionResult,
    RunResults,
    read_results,
    verdict_of,
    write_results,
)
from harness.standard import CriterionSpec, Standard, load_standard

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


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def harness_provenance(execution_provider: str) -> dict[str, Any]:
    """Harness version, git commit of the harness source (if it is a checkout), package versions."""
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
    }


def check_certify(
    standard: Standard,
    manifest: Manifest,
    today: dt.date,
    keyword: str = "",
    markexpr: str = "",
    has_vendor: bool = True,
    has_predictions: bool = False,
) -> None:
    """Refuse anything certify mode does not allow, with the reason (exit 2)."""
    if keyword or markexpr:
        raise StandardError(
            "certify mode runs the standard's full criteria list; remove -k/-m (use --mode self-test to select)"
        )
    if not has_vendor or has_predictions:
        raise StandardError(
            "certify mode runs the vendor's model itself; pass --vendor and no --predictions"
        )
    pin = standard.reference_set
    if not pin:
        raise StandardError(
            f"{standard.path}: status {standard.status} standard pins no reference_set; "
            "certify mode needs a pinned set (use --mode self-test, or pin one)"
        )
    if pin["digest"] != manifest.digest:
        raise StandardError(
            f"reference set digest {manifest.digest} is not the standard's pin {pin['digest']}; "
            "certify against the pinned set"
        )
    if not standard.in_force(today):
        raise StandardError(
            f"{standard.path}: standard {standard.id} {standard.version} is not in force on {today} "
            f"(effective {standard.effective}, expires {standard.expires}); use a current version"
        )


@dataclass
class SuiteState:
    """Everything one pytest session of the conformance suite shares."""

    standard: Standard
    manifest: Manifest
    mode: str
    out: Path | None
    vendor_path: str | None
    predictions_path: str | None
    device: str
    key: str | None
    operating_point_option: float | None
    resume: bool
    results: dict[str, CriterionResult] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    started: str | None = None
    _ctx: EvaluationContext | None = None
    _package: Any = None
    _adapter_info: Any = None

    @classmethod
    def from_options(cls, config: Any) -> SuiteState:
        opt = config.getoption
        standard = load_standard(opt("--standard"))
        cases = opt("--cases")
        if not cases:
            raise UsageError(
                "--cases is required: the reference-set directory the standard is evaluated on"
            )
        mode = opt("--mode")
        manifest = verify_set(cases) if mode in ("certify", "demo") else load_manifest(cases)
        vendor, preds = opt("--vendor"), opt("--predictions")
        if preds:
            _require_file(preds)
        if not vendor and not preds:
            raise UsageError(
                "pass --vendor PKG (run the model) or --predictions FILE (evaluate a predictions file)"
            )
        if mode in ("certify", "demo"):
            check_certify(
                standard,
                manifest,
                dt.date.today(),
                opt("keyword") or "",
                opt("markexpr") or "",
                bool(vendor),
                bool(preds),
            )
        out = Path(opt("--out")) if opt("--out") else None
        if out is not None:
            try:
                out.mkdir(parents=True, exist_ok=True)
                probe = out / ".write-test"
                probe.write_text("")
                probe.unlink()
            except OSError as exc:
                raise UsageError(
                    f"{out}: cannot write the evidence bundle here ({exc.strerror}); choose another --out"
                ) from None
        state = cls(
            standard,
            manifest,
            mode,
            out,
            vendor,
            preds,
            opt("--device"),
            opt("--key"),
            opt("--operating-point"),
            bool(opt("--resume")),
        )
        if vendor:
            from harness.vendors.package import load_vendor_package

            state._package = load_vendor_package(vendor)
        elif state.operating_point_option is None:
            raise UsageError(
                "without --vendor, pass --operating-point (the vendor-declared threshold)"
            )
        return state

    # -- collection --------------------------------------------------------------------------
    def criteria_for_family(self, family: str) -> list[CriterionSpec]:
        if family not in FAMILIES:
            raise UsageError(
                f"conformance module test_{family} is not a known family ({', '.join(FAMILIES)})"
            )
        return [c for c in self.standard.criteria if FAMILY_OF.get(c.kind) == family]

    def check_complete(self, collected_ids: Sequence[str]) -> None:
        """Every criterion collected by exactly one test item, before any deselection."""
        import pytest

        counts: dict[str, int] = {}
        for cid in collected_ids:
            counts[cid] = counts.get(cid, 0) + 1
        for c in self.standard.criteria:
            if c.kind not in FAMILY_OF:
                raise pytest.UsageError(
                    f"{self.standard.path}:{c.line}: criterion {c.id} has kind {c.kind!r} that no conformance test checks"
                )
            n = counts.get(c.id, 0)
            if n != 1:
                raise pytest.UsageError(
                    f"{self.standard.path}:{c.line}: criterion {c.id} collected by {n} test items (must be exactly 1); "
                    "run the whole suite with `pytest --pyargs conformance`"
                )

    def check_selection(self, selected_ids: Sequence[str]) -> None:
        import pytest

        missing = [c.id for c in self.standard.criteria if c.id not in set(selected_ids)]
        if missing and self.mode in ("certify", "demo"):
            raise pytest.UsageError(
                f"certify mode runs every criterion; deselected: {', '.join(missing)}"
            )

    # -- evaluation --------------------------------------------------------------------------
    def context(self) -> EvaluationContext:
        if self._ctx is not None:
            return self._ctx
        self.started = utcnow()
        live = None
        if self.predictions_path:
            predictions = read_predictions(self.predictions_path)
        else:
            from conformance.live import LiveModel

            live = LiveModel.start(
                self._package, self.manifest, self.out, self.device, self.resume, self.standard
            )
            predictions = live.original_predictions()
            self._adapter_info = live.info
        op = (
            self.operating_point_option
            if self._package is None
            else float(self._package.operating_point)
        )
        self._ctx = EvaluationContext(
            standard=self.standard,
            manifest=self.manifest,
            predictions=predictions,
            operating_point=op,
            vendor=self.vendor_identity(),
            mode=self.mode,
            live=live,
            hypothesis_database=self.mode == "self-test",
        )
        return self._ctx

    def record(self, res: CriterionResult) -> None:
        if res.id in self.results:
            raise HarnessFault(f"criterion {res.id} evaluated twice")
        self.results[res.id] = res

    def vendor_identity(self) -> dict[str, Any]:
        pkg = self._package
        if pkg is None:
            # No model artifact: the evaluated predictions file is the subject of the attestation.
            from harness.jsonutil import sha256_file

            assert self.predictions_path is not None
            return {
                "vendor": "(not given: predictions file only)",
                "product": Path(self.predictions_path).name,
                "version": "n/a",
                "interface": "predictions-file",
                "operating_point": self.operating_point_option,
                "package_digest": None,
                "model_digests": {
                    f"predictions:{Path(self.predictions_path).name}": sha256_file(
                        Path(self.predictions_path)
                    )
                },
            }
        return {
            "vendor": pkg.vendor,
            "product": pkg.product,
            "version": pkg.version,
            "interface": pkg.interface,
            "operating_point": float(pkg.operating_point),
            "score_range": list(pkg.score_range),
            "package_digest": pkg.package_digest,
            "model_digests": dict(pkg.model_digests),
        }

    # -- the bundle --------------------------------------------------------------------------
    def finish(self, skipped: Sequence[str] = ()) -> RunResults | None:
        criteria: list[CriterionResult] = []
        from conformance.outcome import error_result

        for spec in self.standard.criteria:
            res = self.results.get(spec.id)
            if res is None:
                why = (
                    "not selected in this self-test run"
                    if self.mode == "self-test"
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
        by_status: dict[str, int] = {}
        for p in predictions:
            if p.condition == "original":
                by_status[p.status] = by_status.get(p.status, 0) + 1
        faults = ctx.table().unreadable_list() if ctx is not None else []
        outcomes = {o: sum(c.outcome == o for c in criteria) for o in ("passed", "failed", "error")}
        verdict = verdict_of(criteria)
        if skipped and self.mode in ("certify", "demo"):
            verdict = NOT_CONFORMANT  # certify allows no skips
        notice = (
            SELF_TEST_BANNER
            if self.mode == "self-test"
            else (DEMO_NOTICE if self.mode == "demo" else "")
        )
        provider = (
            getattr(self._adapter_info, "execution_provider", "n/a")
            if self._adapter_info
            else "n/a"
        )
        seeds = {
            "seed": self.standard.seed,
            "criterion_rng": "numpy default_rng([seed, crc32(criterion id)])",
            "hypothesis": {
                "database": "on" if self.mode == "self-test" else "off",
                "derandomize": True,
                "examples_from": "the standard's `examples` per criterion",
            },
        }
        results = RunResults(
            verdict=verdict,
            mode=self.mode,
            standard=self.standard.identity(),
            reference_set={
                "id": self.manifest.id,
                "version": self.manifest.version,
                "digest": self.manifest.digest,
                "n_exams": len(self.manifest.exams),
                "n_cancers": sum(e.label for e in self.manifest.exams),
            },
            vendor=self.vendor_identity(),
            harness=harness_provenance(provider),
            seeds=seeds,
            started=self.started or utcnow(),
            finished=utcnow(),
            criteria=criteria,
            summary={
                "predictions": by_status,
                "criteria": outcomes,
                "faults": faults[:200],
                "n_faults": len(faults),
                "skipped_tests": list(skipped),
            },
            notice=notice,
            signing="key" if self.key else ("demo-key" if self.mode == "demo" else "unsigned"),
        )
        if self.out is not None:
            self.write_bundle(results, predictions)
        return results

    def write_bundle(self, results: RunResults, predictions: list[Prediction]) -> None:
        assert self.out is not None
        write_results(self.out / "results.json", results)
        write_predictions(self.out / "predictions.jsonl", predictions)
        shutil.copyfile(self.standard.path, self.out / "standard.yaml")
        try:
            from reports.render import render_report
        except ImportError:  # reports are optional for a bare evaluation
            return
        render_report(self.out, KIND_FACTS)
        from reports.signing import write_attestation

        write_attestation(
            self.out, key_path=Path(self.key) if self.key else None, demo_key=self.mode == "demo"
        )


# -- recomputation for `mammocert verify --cases` ------------------------------------------------
def recompute_criteria(bundle_dir: Path, cases_dir: Path) -> list[CriterionResult]:
    """Re-evaluate, from the bundle's predictions and a reference set, every criterion that needs only
    predictions; the caller compares them with results.json."""
    from conformance.criteria import evaluate

    bundle_dir = Path(bundle_dir)
    results = read_results(bundle_dir / "results.json")
    standard = load_standard(bundle_dir / "standard.yaml")
    manifest = verify_set(cases_dir)
    if manifest.digest != results.reference_set["digest"]:
        from harness.errors import VerificationError

        raise VerificationError(
            f"{cases_dir}: reference set digest {manifest.digest} is not the bundle's {results.reference_set['digest']}"
        )
    ctx = EvaluationContext(
        standard=standard,
        manifest=manifest,
        predictions=read_predictions(bundle_dir / "predictions.jsonl"),
        operating_point=float(results.vendor["operating_point"]),
        vendor=dict(results.vendor),
        mode=results.mode,
        live=None,
    )
    return [evaluate(spec, ctx) for spec in standard.criteria if spec.kind not in LIVE_KINDS]


# -- CLI -------------------------------------------------------------------------------------------
def _pytest_args(args: Any, out: Path, extra: Sequence[str]) -> list[str]:
    """pytest arguments for the installed suite. An explicit empty config keeps whatever
    pytest configuration lives near the inputs (pytest scans option values for a rootdir) out
    of a conformance run."""
    import tempfile

    import conformance

    ini = Path(tempfile.mkdtemp(prefix="mammocert-pytest-")) / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    argv = [
        str(Path(conformance.__file__).parent),
        "-c",
        str(ini),
        "--rootdir",
        str(ini.parent),
        "-p",
        "no:cacheprovider",
        "-q",
        "-s",
        "--no-header",
        "--standard",
        str(args.standard),
        "--cases",
        str(args.cases),
        "--out",
        str(out),
        f"--junitxml={out / 'junit.xml'}",
        "--tb=no",
        "-rN",
    ]
    return argv + list(extra)


def _require_file(predictions: str) -> None:
    if not Path(predictions).is_file():
        raise UsageError(
            f"{predictions}: predictions file not found; write one with `mammocert predict`"
        )


def _preflight(args: Any) -> None:
    """Check the inputs before pytest starts, so a bad file is one line from us (exit 2) rather
    than pytest's usage report; the plugin checks them again (and certify's locks) in its session."""
    load_standard(args.standard)
    load_manifest(args.cases)
    if getattr(args, "predictions", None):
        _require_file(args.predictions)
    if getattr(args, "vendor", None):
        from harness.vendors.package import load_vendor_package

        load_vendor_package(args.vendor)


def _run_suite(argv: list[str], out: Path) -> RunResults:
    import pytest

    from harness.errors import MammocertError

    try:
        code = pytest.main(argv)
    except MammocertError:
        raise
    if code == pytest.ExitCode.USAGE_ERROR:
        raise UsageError("the conformance suite refused the inputs (see the message above)")
    if (
        code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        or not (out / "results.json").is_file()
    ):
        raise HarnessFault(
            f"the conformance run did not complete (pytest exit {int(code)}); journaled results are kept, retry with --resume"
        )
    return read_results(out / "results.json")


def print_verdict(results: RunResults, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, width=160)
    table = Table(
        title=f"{results.standard['id']} {results.standard['version']} — {results.vendor.get('product') or 'predictions file'}"
    )
    for col in ("criterion", "kind", "value", "CI", "threshold", "n", "outcome"):
        table.add_column(col)
    from harness.passif import describe

    for c in results.criteria:
        style = {"passed": "green", "failed": "red", "error": "yellow"}[c.outcome]
        ci = f"{c.ci[0]:.3f}–{c.ci[1]:.3f}" if c.ci else ""
        val = f"{c.value:.4g}" if isinstance(c.value, float | int) else ""
        table.add_row(
            c.id + ("" if c.mandatory else " (opt)"),
            c.kind,
            val,
            ci,
            describe(c.threshold),
            str(c.n),
            f"[{style}]{c.outcome}[/{style}]",
        )
    console.print(table)
    banner = results.verdict + (f"  [{results.notice}]" if results.notice else "")
    console.print(f"[bold]{banner}[/bold]")
    for name in ("results.json", "report.html", "attestation.intoto.json", "predictions.jsonl"):
        if (out / name).exists():
            console.print(f"  {name}: {out / name}")


def run_cli(args: Any) -> int:
    out = Path(args.out)
    extra = ["--vendor", str(args.vendor), "--mode", args.mode, "--device", args.device]
    if args.resume:
        extra.append("--resume")
    if args.key:
        extra += ["--key", str(args.key)]
    if args.keyword:
        extra += ["-k", args.keyword]
    _preflight(args)
    results = _run_suite(_pytest_args(args, out, extra), out)
    print_verdict(results, out)
    return 0 if results.verdict == "CONFORMANT" else 1


def evaluate_cli(args: Any) -> int:
    out = Path(args.out)
    extra = ["--predictions", str(args.predictions), "--mode", "self-test"]
    if args.vendor:
        extra += ["--vendor", str(args.vendor)]
    if getattr(args, "operating_point", None) is not None:
        extra += ["--operating-point", str(args.operating_point)]
    _preflight(args)
    results = _run_suite(_pytest_args(args, out, extra), out)
    print_verdict(results, out)
    return 0 if results.verdict == "CONFORMANT" else 1
