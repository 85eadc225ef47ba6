"""``mammocert demo``: the embedded default, end to end.

Builds (or reuses) the default synthetic reference set, runs the bundled reference vendor against
the bundled demo standard in the locked demo mode (certify rules, demonstration banner, demo key),
writes the evidence bundle with report and attestation, verifies it, and prints the verdict table
and the paths.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from harness.cases.manifest import load_manifest
from harness.errors import UsageError, VerificationError
from harness.profile import open_profile, report_profile
from harness.resources import DEFAULT_RECIPE, DEMO_STANDARD, REFERENCE_VENDOR
from harness.results import CONFORMANT


def _reuse_or_build(cases: Path, exams: int | None) -> None:
    from harness.cases.build import build_reference_set
    from harness.cases.manifest import verify_set

    if (cases / "manifest.json").is_file():
        try:
            m = verify_set(cases)
            if exams is None or len(m.exams) == exams:
                print(f"Reusing the reference set in {cases} ({len(m.exams)} exams, {m.digest})")
                return
        except (VerificationError, UsageError) as exc:
            print(f"Rebuilding {cases}: {exc}")
        import shutil

        shutil.rmtree(cases)
    print(f"Building the default synthetic reference set in {cases} ...")
    build_reference_set(DEFAULT_RECIPE, cases, exams=exams, progress=True)


def demo_cli(args: Any) -> int:
    from conformance.engine import RunRequest, run
    from mammocert.runs import note, print_preflight, print_verdict, progress

    out = Path(args.out)
    cases = out / "cases"
    bundle = out / "bundle"
    profile, profile_path = open_profile(getattr(args, "profile", None), bundle)
    out.mkdir(parents=True, exist_ok=True)
    with profile.phase("set build") if profile is not None else nullcontext():
        _reuse_or_build(cases, args.exams)
    manifest = load_manifest(cases)
    # The demo standard pins the default set; a resized set runs as a self-test instead.
    from harness.standard import load_standard

    pinned = (load_standard(DEMO_STANDARD).reference_set or {}).get("digest")
    mode = "demo" if pinned == manifest.digest else "self-test"
    if mode != "demo":
        print(
            f"Note: this set ({manifest.digest}) is not the one the demo standard pins ({pinned}); running as a self-test."
        )
    request = RunRequest(
        standard=DEMO_STANDARD,
        cases=cases,
        out=bundle,
        mode=mode,
        vendor=REFERENCE_VENDOR,
        resume=True,
        audience=getattr(args, "audience", "vendor"),
    )
    results = run(
        request, on_result=progress, on_start=print_preflight, on_note=note, profile=profile
    )
    print_verdict(results, bundle)
    report_profile(profile, profile_path)
    pub = bundle / "demo-key.pub.pem"
    if pub.is_file():
        print(f"\nVerify it yourself:  mammocert verify {bundle} --key {pub} --cases {cases}")
    return 0 if results.verdict == CONFORMANT else 1
