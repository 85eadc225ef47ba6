"""A real run's bundle is sealed whole and ``verify --cases`` re-judges its live criteria from the
bundle's own records: an outcome edited and re-signed is caught, whatever the signature says."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from helpers import KNOWN_GOOD_VENDOR

from conformance.criteria import KIND_FACTS, KINDS
from conformance.engine import RunRequest, recompute_criteria, run
from harness.errors import VerificationError
from harness.predictions import ExamOutput
from harness.results import read_results, results_from_dict, verdict_of
from harness.vendors.adapter import FakeAdapter
from mammocert.cli import main
from reports.render import render_report
from reports.signing import generate_keypair, write_attestation
from reports.verify import verify_bundle

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "standards" / "demo.yaml"
# one criterion of every live kind, and the recorded-prediction kinds the issue names
KEEP = {
    "DK-INV-MIRROR": {"examples": 3},
    "DK-DEC-NOISE": {"exams": 4, "hypothesis_examples": 2},
    "DK-LESION-01": {"exams": 2, "hypothesis_examples": 2},
    "DK-SWEEP-DOSE": {"levels": [0.5]},
    "DK-DET-01": {"repeats": 1},
    "DK-CACHE-01": {"examples": 2},
    "DK-REJ-01": {"examples": 2},
    "DK-TFR-01": {},
    "DK-LAT-01": {},
    "DK-AUC-01": {"pass_if": {"value_gte": 0.5}},
}


def pixel_hash_model() -> FakeAdapter:
    """Scores are a hash of the pixels: repeatable and cache-free, but any change of the image
    (a mirror, noise, an inserted lesion) moves them, so the invariance criterion fails."""

    def score(exam) -> ExamOutput:
        h = hashlib.sha256()
        for _ref, ds in exam.images:
            h.update(ds.pixel_array.tobytes())
        v = int.from_bytes(h.digest()[:4], "big") / 2**32
        return ExamOutput(score=v, breasts={"L": v, "R": v / 2})

    return FakeAdapter(score)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, default_set) -> Path:
    d = tmp_path_factory.mktemp("rejudge")
    shutil.copytree(default_set(6).root, d / "cases")
    std = yaml.safe_load(DEMO.read_text())
    std.pop("reference_set", None)
    std["criteria"] = [c | KEEP[c["id"]] for c in std["criteria"] if c["id"] in KEEP]
    assert {c["kind"] for c in std["criteria"]} >= {k for k, s in KINDS.items() if s.needs_live}
    (d / "std.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    std["hypothesis"] = {"derandomize": False}  # self-test: the example database is on
    std["criteria"] = [c for c in std["criteria"] if c["id"] in ("DK-INV-MIRROR", "DK-DET-01")]
    (d / "std-db.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    generate_keypair(d / "keys")
    return d


def _run(ws: Path, out: str, standard: str = "std.yaml") -> Path:
    run(
        RunRequest(
            standard=ws / standard,
            cases=ws / "cases",
            out=ws / out,
            vendor=KNOWN_GOOD_VENDOR,
            key=ws / "keys" / "signing-key.pem",
        ),
        adapter=pixel_hash_model(),
    )
    return ws / out


@pytest.fixture(scope="module")
def master(ws) -> Path:
    return _run(ws, "master")


@pytest.fixture()
def bundle(ws, master, tmp_path) -> Path:
    return Path(shutil.copytree(master, tmp_path / "bundle"))


def _verify(ws: Path, bundle: Path, cases: bool = True):
    return verify_bundle(
        bundle,
        ws / "keys" / "signing-key.pub.pem",
        ws / "cases" if cases else None,
        recompute=recompute_criteria,
    )


def _outcomes(bundle: Path) -> dict[str, str]:
    return {c.id: c.outcome for c in read_results(bundle / "results.json").criteria}


def test_a_run_leaves_no_sqlite_side_files_and_verifies_whole(ws, master):
    names = sorted(p.relative_to(master).as_posix() for p in master.rglob("*"))
    assert "journal.sqlite" in names and "junit.xml" in names
    assert not [n for n in names if n.endswith(("-wal", "-shm"))], names
    # inspecting the journal afterwards (read-only) leaves none either
    ro = sqlite3.connect(f"file:{master / 'journal.sqlite'}?mode=ro", uri=True)
    assert ro.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ro.close()
    assert sorted(p.relative_to(master).as_posix() for p in master.rglob("*")) == names
    report = _verify(ws, master)
    # every criterion, live ones included, re-judged from the bundle's records
    assert report.recomputed == len(KEEP) and report.not_rejudged == ()
    assert _outcomes(master)["DK-INV-MIRROR"] == "failed"


def _resign_with(bundle: Path, ws: Path, edit) -> None:
    """Edit results.json as a key holder would to forge a verdict: consistently, re-rendered,
    re-signed; the signature then verifies."""
    d = json.loads((bundle / "results.json").read_text(encoding="utf-8"))
    edit(d)
    d["verdict"] = verdict_of(results_from_dict(d).criteria)
    (bundle / "results.json").write_text(json.dumps(d, indent=2), encoding="utf-8")
    render_report(bundle, KIND_FACTS)
    write_attestation(bundle, key_path=ws / "keys" / "signing-key.pem")


@pytest.mark.parametrize("cid", ["DK-INV-MIRROR", "DK-REJ-01", "DK-LESION-01"])
def test_a_live_outcome_edited_and_resigned_fails_with_cases(ws, bundle, cid):
    was = _outcomes(bundle)[cid]
    flipped = "passed" if was != "passed" else "failed"

    def edit(d):
        next(c for c in d["criteria"] if c["id"] == cid)["outcome"] = flipped

    _resign_with(bundle, ws, edit)
    _verify(ws, bundle, cases=False)  # the signature alone cannot tell
    with pytest.raises(VerificationError, match=f"recomputation differs for {cid}: outcome"):
        _verify(ws, bundle)


def test_perturbed_records_removed_and_resigned_fail_with_cases(ws, bundle):
    """The replay asks for exactly what the run asked the model; a record the bundle no longer
    holds is named, not guessed."""
    rows = (bundle / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [r for r in rows if not json.loads(r)["condition"].startswith("determinism:")]
    assert len(kept) < len(rows)
    (bundle / "predictions.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    write_attestation(bundle, key_path=ws / "keys" / "signing-key.pem")
    _verify(ws, bundle, cases=False)
    with pytest.raises(
        VerificationError, match="DK-DET-01: cannot be recomputed.*determinism:repeat=1"
    ):
        _verify(ws, bundle)


def test_the_cli_names_what_needs_the_model_again(ws, capsys):
    """With the example database on (self-test, derandomize false) a Hypothesis search may depend
    on examples earlier runs saved, which no bundle records: those criteria are listed as not
    re-judged, with the reason; the rest still are."""
    bundle = _run(ws, "with-db", "std-db.yaml")
    assert read_results(bundle / "results.json").seeds["hypothesis"]["database"] == "on"
    rc = main(
        [
            "verify",
            str(bundle),
            "--key",
            str(ws / "keys" / "signing-key.pub.pem"),
            "--cases",
            str(ws / "cases"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (
        "re-judged 1 criteria" in out
        and "not re-judged: DK-INV-MIRROR (needs the model again" in out
    )


def test_report_never_rewrites_a_sealed_bundle(ws, bundle, tmp_path, capsys, monkeypatch):
    key = str(ws / "keys" / "signing-key.pub.pem")
    assert main(["report", str(bundle)]) == 0
    assert "unchanged" in capsys.readouterr().out
    _verify(ws, bundle, cases=False)
    # a rendering that differs (another harness version) is refused in place, written with --out
    import reports.render

    real = reports.render.render_html
    monkeypatch.setattr(
        reports.render, "render_html", lambda *a: real(*a).replace("</body>", "<!-- v2 --></body>")
    )
    before = (bundle / "report.html").read_bytes()
    assert main(["report", str(bundle)]) == 2
    assert "seals the bundle" in capsys.readouterr().err
    assert main(["report", str(bundle), "--out", str(bundle / "report-2.html")]) == 2
    assert "inside the bundle" in capsys.readouterr().err
    assert main(["report", str(bundle), "--out", str(tmp_path / "report-2.html")]) == 0
    assert b"<!-- v2 -->" in (tmp_path / "report-2.html").read_bytes()
    assert (bundle / "report.html").read_bytes() == before
    assert main(["verify", str(bundle), "--key", key]) == 0
