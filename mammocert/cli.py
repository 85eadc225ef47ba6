"""The thin ``mammocert`` command line (``docs/contracts.md``, "CLI").

Every subcommand is parsed here and handed to one function ``fn(args) -> int`` in the module
that owns the work, imported lazily so ``mammocert --help`` stays fast. Errors derived from
:class:`harness.errors.MammocertError` print one line and exit with their code; nothing else
prints a traceback unless ``MAMMOCERT_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.errors import MammocertError

AUDIENCE_HELP = (
    "who gets a copy of this run: vendor (default) adds the vendor's copy, vendor/results.json "
    "and vendor/report.html with aggregate figures only (no exam ids, no per-exam evidence, no "
    "images of the sequestered set), next to the authority's full record; authority writes the "
    "full record alone"
)


def _add_executor(p: argparse.ArgumentParser) -> None:
    """Where the model calls run (docs/distributed.md)."""
    p.add_argument(
        "--executor",
        choices=["local", "dask"],
        default="local",
        help="local: this machine (default); dask: Dask workers (needs --scheduler or --workers)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="with --executor dask: a running Dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="with --executor dask: start a local Dask cluster of N worker processes",
    )


def _add_profile(p: argparse.ArgumentParser) -> None:
    """Where the time goes: a per-phase breakdown on stderr, optionally also as JSON."""
    p.add_argument(
        "--profile",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="print where the time went, per phase (original pass, each criterion), on stderr; "
        "with FILE also write it as JSON (outside the bundle)",
    )


def _add(sub, name: str, target: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(_target=target)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammocert", description="Conformance test suite for AI in screening mammography."
    )
    parser.add_argument("--version", action="version", version=f"mammocert {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _add(
        sub,
        "demo",
        "mammocert.demo:demo_cli",
        "build the default reference set, run the reference vendor, write a signed demo report",
    )
    p.add_argument(
        "--out", default="mammocert-demo", help="output directory (default: ./mammocert-demo)"
    )
    p.add_argument(
        "--exams", type=int, default=None, help="number of exams (default: the recipe's)"
    )
    p.add_argument(
        "--audience", choices=["vendor", "authority"], default="vendor", help=AUDIENCE_HELP
    )
    _add_profile(p)

    cases = sub.add_parser("cases", help="build and verify reference sets").add_subparsers(
        dest="cases_command", required=True, metavar="ACTION"
    )
    p = _add(
        cases,
        "build",
        "harness.cases.build:build_cli",
        "materialize a synthetic reference set from a recipe",
    )
    p.add_argument(
        "--recipe", required=True, help="recipe YAML (e.g. reference_cases/default.yaml)"
    )
    p.add_argument(
        "--out", required=True, help="output directory (created; must be empty or absent)"
    )
    p.add_argument("--exams", type=int, default=None, help="override the recipe's number of exams")
    p.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: all cores)"
    )
    p = _add(
        cases,
        "import",
        "harness.cases.importer:import_cli",
        "turn a folder of DICOM files and a labels table into a reference set",
    )
    p.add_argument(
        "--dicom", required=True, help="folder of the set's DICOM files (searched recursively)"
    )
    p.add_argument(
        "--labels", required=True, action="append", help="labels CSV (repeat for several tables)"
    )
    p.add_argument(
        "--map",
        required=True,
        help="import map YAML, or a shipped one: vindr-mammo, rsna-screening, cmmd, cbis-ddsm",
    )
    p.add_argument(
        "--out", required=True, help="output directory (created; must be empty or absent)"
    )
    p.add_argument("--id", default=None, help="set id (default: imported-<map name>)")
    p.add_argument("--version", default="1.0.0", help="set version (default 1.0.0)")
    p.add_argument(
        "--deidentify",
        action="store_true",
        help="apply the PS3.15 Basic Profile while copying (age band and device kept)",
    )
    p.add_argument(
        "--deid-key",
        default=None,
        help="file of >= 32 random bytes: the same key makes a repeated import byte-identical",
    )
    p = _add(
        cases,
        "verify",
        "harness.cases.build:verify_cli",
        "re-hash every file against the manifest and print the set digest",
    )
    p.add_argument("dir", help="reference-set directory")

    p = _add(
        sub,
        "predict",
        "harness.runner:predict_cli",
        "run a vendor model over a reference set and write predictions.jsonl",
    )
    p.add_argument("--vendor", required=True, help="vendor package directory or .zip")
    p.add_argument("--cases", required=True, help="reference-set directory")
    p.add_argument("--out", required=True, help="predictions file to write (.jsonl)")
    p.add_argument(
        "--journal", default=None, help="SQLite journal (default: OUT + .journal.sqlite)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its journal"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="ONNX execution device")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="per-exam timeout in seconds (default: the package's)",
    )
    _add_executor(p)
    _add_profile(p)

    for name, target, help_ in (
        (
            "run",
            "mammocert.runs:run_cli",
            "the full conformance run: predict, evaluate every criterion, write the evidence bundle",
        ),
        (
            "evaluate",
            "mammocert.runs:run_cli",
            "evaluate the criteria that need only predictions",
        ),
    ):
        p = _add(sub, name, target, help_)
        if name == "run":
            p.add_argument("--vendor", required=True, help="vendor package directory or .zip")
            p.add_argument("--mode", choices=["certify", "self-test"], default="self-test")
            p.add_argument(
                "--resume", action="store_true", help="continue an interrupted run from its journal"
            )
            p.add_argument(
                "--key", default=None, help="Ed25519 private key (PEM) to sign the attestation"
            )
            p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
            _add_executor(p)
            _add_profile(p)
            p.add_argument(
                "-k", dest="keyword", default=None, help="select criteria (self-test only)"
            )
        else:
            p.add_argument("--predictions", required=True, help="predictions.jsonl")
            p.add_argument(
                "--vendor",
                default=None,
                help="vendor package (for its operating point and identity)",
            )
            p.add_argument(
                "--operating-point",
                type=float,
                default=None,
                help="the vendor-declared threshold, when no --vendor is given",
            )
        p.add_argument("--standard", required=True, help="standard YAML")
        p.add_argument("--cases", required=True, help="reference-set directory")
        p.add_argument("--out", required=True, help="evidence bundle directory")
        p.add_argument(
            "--audience", choices=["vendor", "authority"], default="vendor", help=AUDIENCE_HELP
        )

    p = _add(
        sub,
        "report",
        "mammocert.commands:report_cli",
        "re-render report.html from an evidence bundle",
    )
    p.add_argument("dir", help="evidence bundle directory")
    p.add_argument(
        "--out",
        default=None,
        help="write the report here instead (outside the bundle, whose files are sealed)",
    )

    p = _add(
        sub, "verify", "mammocert.cli:verify_cli", "verify an attestation and its evidence bundle"
    )
    p.add_argument("path", help="evidence bundle directory or attestation.intoto.json")
    p.add_argument("--key", required=True, help="trusted Ed25519 public key (PEM)")
    p.add_argument(
        "--cases", default=None, help="reference set: recompute every statistical result"
    )

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    p = _add(
        keys,
        "generate",
        "reports.signing:keys_cli",
        "generate an Ed25519 key pair (private key mode 0600)",
    )
    p.add_argument(
        "--out", required=True, help="directory for signing-key.pem and signing-key.pub.pem"
    )

    std = sub.add_parser("standard", help="lint, diff, bar and power standards").add_subparsers(
        dest="standard_command", required=True, metavar="ACTION"
    )
    p = _add(
        std,
        "lint",
        "harness.standard:lint_cli",
        "validate a standard against the schema, with line numbers",
    )
    p.add_argument("file")
    p = _add(
        std,
        "diff",
        "harness.standard_diff:diff_cli",
        "show added, removed and changed criteria between two standards",
    )
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="output format"
    )
    p = _add(
        std,
        "explore",
        "conformance.explore:explore_cli",
        "which vendors a candidate standard would pass, from their bundles, without a model",
    )
    p.add_argument("candidate", help="candidate standard YAML")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="evidence bundle directories")
    p.add_argument("--cases", default=None, help="the reference set, to recompute changed criteria")
    p.add_argument("--key", default=None, help="public key: verify each bundle first")
    p.add_argument(
        "--sweep",
        action="append",
        default=None,
        metavar="ID.KEY=A:B:STEP",
        help="sweep one pass_if key, e.g. DK-AUC-01.ci_lower_gte=0.80:0.95:0.01 (repeatable)",
    )
    p.add_argument("--out", default=None, help="write explore.json here")
    p = _add(
        std,
        "bar",
        "conformance.bar:bar_cli",
        "the fewest cancers a model must find, per false-positive count, to pass a standard's "
        "reader and programme criteria on a set",
    )
    p.add_argument("--standard", required=True, help="standard YAML")
    p.add_argument("--cases", default=None, help="a built reference set")
    p.add_argument("--recipe", default=None, help="a recipe, planned without rendering")
    p.add_argument(
        "--exams", type=int, default=None, help="with --recipe: plan this many exams instead"
    )
    p.add_argument(
        "--false-positives",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 4, 5, 6],
        help="false-positive counts to tabulate",
    )
    p = _add(
        std,
        "power",
        "conformance.power:power_cli",
        "per criterion, the chance a model of stated performance passes on a set of a given "
        "composition, and the smallest set for a chosen chance (simulation)",
    )
    p.add_argument("--standard", required=True, help="standard YAML")
    p.add_argument("--cases", default=None, help="a built reference set (its truths and reads)")
    p.add_argument("--recipe", default=None, help="a recipe, planned without rendering")
    p.add_argument("--exams", type=int, default=None, help="with --recipe: plan this many exams")
    p.add_argument(
        "--composition",
        default=None,
        help="cancers=N,benign=N,normal=N[,ATTR=value:share/value:share...]",
    )
    p.add_argument(
        "--reader",
        action="append",
        default=None,
        help="with --composition: a simulated reader NAME=SENS/SPEC (default: reader1 and "
        "consensus from Elhakim 2023)",
    )
    p.add_argument("--auc", type=float, default=None, help="target model's AUC (default 0.93)")
    p.add_argument(
        "--sensitivity",
        type=float,
        default=None,
        help="at the operating point (default: consensus)",
    )
    p.add_argument(
        "--specificity",
        type=float,
        default=None,
        help="at the operating point (default: consensus)",
    )
    p.add_argument("--reader-correlation", type=float, default=0.5, help="model-reader correlation")
    p.add_argument("--failure-rate", type=float, default=0.0, help="share of exams not read")
    p.add_argument("--below-auc", type=float, default=None, help="below model (default: limits)")
    p.add_argument("--below-sensitivity", type=float, default=None)
    p.add_argument("--below-specificity", type=float, default=None)
    p.add_argument("--target-probability", type=float, default=0.8)
    p.add_argument("--false-pass", type=float, default=0.05, help="the below model's most")
    p.add_argument("--seed", type=int, default=None, help="default: the standard's seed")
    p.add_argument("--simulations", type=int, default=100)
    p.add_argument("--max-scale", type=float, default=16.0, help="largest composition multiple")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = _add(
        sub,
        "grid",
        "mammocert.grid:grid_cli",
        "a vendor model on a fixed perturbation grid: each relation's failure rate, per exam",
    )
    p.add_argument("--vendor", required=True, help="vendor package directory or .zip")
    p.add_argument("--cases", required=True, help="reference-set directory")
    p.add_argument(
        "--standard",
        default=None,
        help="standard whose invariance criteria give the tolerances (default: standards/demo.yaml)",
    )
    p.add_argument("--exams", type=int, default=None, help="exams to use (default 60)")
    p.add_argument(
        "--condition",
        action="append",
        default=None,
        help="a condition id, e.g. noise:dose=0.5,seed=1 (repeatable; default: the built-in grid)",
    )
    p.add_argument("--journal", default=None, help="SQLite journal, reused on a rerun")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--out", default=None, help="write every judged pair here (JSON)")

    p = _add(
        sub,
        "programme",
        "mammocert.programme:programme_cli",
        "replay the reference set through screening protocols with the AI: workload, recalls, "
        "cancers, yearly costs and their sensitivity",
    )
    p.add_argument("--predictions", default=None, help="predictions.jsonl")
    p.add_argument("--standard", default=None, help="standard YAML (its prevalence and seed)")
    p.add_argument("--bundle", default=None, help="a finished evidence bundle instead")
    p.add_argument("--cases", required=True, help="reference-set directory (truth and reads)")
    p.add_argument("--costs", default=None, help="cost model YAML (default: Danish defaults)")
    p.add_argument("--region", default=None, help="region of the cost model (e.g. midtjylland)")
    p.add_argument("--operating-point", type=float, default=None, help="vendor's threshold")
    p.add_argument("--replicates", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--draws", type=int, default=4000, help="probabilistic sensitivity draws")
    p.add_argument("--out", required=True, help="output directory")

    p = _add(
        sub,
        "compare",
        "reports.compare:compare_cli",
        "vendors side by side: verify each bundle, then one page with the criteria as rows",
    )
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="evidence bundle directories")
    p.add_argument("--key", required=True, help="public key the bundles were signed with")
    p.add_argument(
        "--programme",
        action="append",
        default=None,
        metavar="DIR",
        help="a `mammocert programme --bundle BUNDLE` output: that vendor's programme figures",
    )
    p.add_argument("--out", required=True, help="output directory (compare.html, compare.json)")

    p = _add(
        sub,
        "accept",
        "reports.acceptance:accept_cli",
        "site acceptance: does this installation reproduce the vendor's certificate?",
    )
    p.add_argument("--certificate", required=True, help="the certificate's evidence bundle")
    p.add_argument("--local", required=True, help="the bundle of the run through the installation")
    p.add_argument("--key", required=True, help="public key of the certificate")
    p.add_argument("--local-key", default=None, help="public key of the local run (default --key)")
    p.add_argument("--site", default=None, help="the installation, e.g. 'Region Midtjylland PACS'")
    p.add_argument("--sign", default=None, help="private key: sign the acceptance")
    p.add_argument("--out", required=True, help="output directory")

    serve = sub.add_parser("serve-reference", help="run a reference AI node").add_subparsers(
        dest="serve_command", required=True, metavar="INTERFACE"
    )
    p = _add(
        serve,
        "dicom",
        "harness.reference.dicom_node:serve_cli",
        "a DICOM Storage SCP that scores exams and returns Mammography CAD SR",
    )
    p.add_argument("--vendor", required=True, help="ONNX vendor package that scores the exams")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ae-title", default="MAMMOCERT_REF")
    p.add_argument(
        "--return-to",
        default=None,
        help="AE@host:port to send results to (default: the caller's results port)",
    )
    p.add_argument("--tid1500", action="store_true", help="also send a TID 1500 measurement report")
    p = _add(
        serve,
        "rest",
        "harness.reference.rest_node:serve_cli",
        "a vendor-style JSON API (json-job profile) that scores exams, with fault modes",
    )
    p.add_argument("--vendor", required=True, help="ONNX vendor package that scores the exams")
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--scale", choices=["0-1", "1-10", "0-100"], default="1-10", help="native score scale"
    )
    p.add_argument(
        "--mode", choices=["sync", "async"], default="sync", help="answer 200, or 202 + a job"
    )
    p.add_argument(
        "--fault", default=None, help="misbehave on purpose (harness/reference/rest_node.py FAULTS)"
    )
    p = _add(
        serve,
        "dicomweb",
        "harness.reference.dicomweb_node:serve_cli",
        "a DICOMweb AI node: polls a PACS by QIDO-RS, stores CAD SR back by STOW-RS",
    )
    p.add_argument("--vendor", required=True, help="ONNX vendor package that scores the exams")
    p.add_argument(
        "--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web"
    )
    p.add_argument(
        "--tid1500", action="store_true", help="also store a TID 1500 measurement report"
    )
    p.add_argument(
        "--ups-port",
        type=int,
        default=None,
        help="serve UPS-RS workitems (IHE AIW-I) on this port and perform them, instead of polling",
    )
    return parser


def verify_cli(args: argparse.Namespace) -> int:
    """``mammocert verify``: the report library checks the bundle; with ``--cases`` the engine
    recomputes every statistic (reports never imports the engine itself)."""
    from conformance.engine import recompute_criteria
    from reports.acceptance import ACCEPTANCE_FILE, verify_acceptance
    from reports.verify import verify_bundle

    if (Path(args.path) / ACCEPTANCE_FILE).is_file():  # a site acceptance, not a bundle
        statement = verify_acceptance(Path(args.path), Path(args.key))
        p = statement["predicate"]
        print(f"OK: site acceptance {p['verdict']} signed {p['signed']} ({args.path})")
        return 0
    report = verify_bundle(
        Path(args.path),
        Path(args.key),
        Path(args.cases) if args.cases else None,
        recompute=recompute_criteria,
    )
    print(report.summary())
    return 0


# Options and positionals that name files or directories (checked by harness.fsio.check_path).
PATH_ARGS = frozenset(
    {
        "out",
        "recipe",
        "dir",
        "vendor",
        "cases",
        "journal",
        "predictions",
        "standard",
        "key",
        "dicom",
        "deid_key",
        "labels",
    }
    | {"path", "file", "a", "b"}
)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before any work, a value that is not UTF-8 and a path no file operation can use
    (too long for the OS, a NUL byte): one line naming the option."""
    from harness.fsio import check_path, check_text

    for dest, value in vars(args).items():
        if dest.startswith("_"):
            continue
        positional = dest in ("dir", "path", "file", "a", "b")
        what = (
            "-k"
            if dest == "keyword"
            else dest.upper()
            if positional
            else "--" + dest.replace("_", "-")
        )
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                (check_path if dest in PATH_ARGS else check_text)(item, what)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, fn_name = args._target.split(":")
    try:
        check_arguments(args)
        fn = getattr(importlib.import_module(module_name), fn_name)
        return int(fn(args) or 0)
    except MammocertError as exc:
        print(f"mammocert: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and closed: not an error of ours
        return 0
    except KeyboardInterrupt:
        print(
            "mammocert: interrupted; journaled results are kept, continue with --resume",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # a harness bug: one line, exit 3, traceback only on request
        if os.environ.get("MAMMOCERT_DEBUG"):
            raise
        print(
            f"mammocert: internal error: {type(exc).__name__}: {exc} (set MAMMOCERT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
