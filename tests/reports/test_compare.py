"""`mammocert compare`: verified bundles side by side; unverifiable or incomparable ones said
loudly, never mixed in."""

from __future__ import annotations

import json
from pathlib import Path

import html5lib
import pytest
import reports_bundle_factory as synthetic

from conformance.criteria import KIND_FACTS
from mammocert.cli import main
from reports.compare import comparability, load_columns, render_compare_html, rows
from reports.render import render_report
from reports.signing import write_attestation


def _bundle(root: Path, key: Path, product: str, auc: float, **kw) -> Path:
    synthetic.write_bundle(root, **kw)
    data = json.loads((root / "results.json").read_text())
    data["vendor"]["product"] = product
    for c in data["criteria"]:
        if c["kind"] == "auc":
            c["value"] = auc
    (root / "results.json").write_text(json.dumps(data, indent=1))
    render_report(root, KIND_FACTS)
    write_attestation(root, key_path=key)
    return root


@pytest.fixture()
def two(tmp_path: Path, keypair: tuple[Path, Path]) -> tuple[Path, Path]:
    a = _bundle(tmp_path / "a", keypair[0], "GoodMammo", 0.91)
    b = _bundle(tmp_path / "b", keypair[0], "WeakMammo", 0.74)
    return a, b


def test_two_verified_bundles_side_by_side(two, keypair):
    cols = load_columns(list(two), keypair[1])
    assert [c.verified for c in cols] == [True, True] and comparability(cols) == []
    table = rows(cols)
    auc = next(r for r in table if r.cells[0] and r.cells[0].kind == "auc")
    assert [c.value for c in auc.cells] == [0.91, 0.74]
    html = render_compare_html(cols)
    html5lib.HTMLParser(strict=True).parse(html)
    assert "GoodMammo" in html and "WeakMammo" in html and "NOT COMPARABLE" not in html
    assert "<svg" in html  # the overlaid ROC curves


def test_a_tampered_bundle_is_shown_unverified_and_not_compared(two, keypair, tmp_path, capsys):
    a, b = two
    data = json.loads((b / "results.json").read_text())
    data["verdict"] = "CONFORMANT"  # a changed byte after signing
    (b / "results.json").write_text(json.dumps(data, indent=1))
    cols = load_columns([a, b], keypair[1])
    assert [c.verified for c in cols] == [True, False]
    assert cols[1].results is None  # none of its numbers are used
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--key", str(keypair[1]), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "NOT VERIFIED" in printed
    html = (out / "compare.html").read_text()
    assert "NOT VERIFIED" in html and "WeakMammo" not in html
    doc = json.loads((out / "compare.json").read_text())
    assert [x["verified"] for x in doc["bundles"]] == [True, False]


def test_different_standards_are_not_comparable(tmp_path, keypair, capsys):
    a = _bundle(tmp_path / "a", keypair[0], "GoodMammo", 0.91)
    # the same criteria, another edition of the standard (its validity differs): another digest
    b = _bundle(tmp_path / "b", keypair[0], "OtherMammo", 0.88, expires="2098-01-01")
    cols = load_columns([a, b], keypair[1])
    problems = comparability(cols)
    assert (
        len(problems) == 1
        and problems[0].startswith("NOT COMPARABLE")
        and "standard" in problems[0]
    )
    assert (
        main(["compare", str(a), str(b), "--key", str(keypair[1]), "--out", str(tmp_path / "o")])
        == 1
    )
    assert "NOT COMPARABLE" in capsys.readouterr().out
    assert "NOT COMPARABLE" in (tmp_path / "o" / "compare.html").read_text()


def test_cli_exit_zero_and_json_for_comparable_bundles(two, keypair, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, two), "--key", str(keypair[1]), "--out", str(out)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    assert doc["comparable"] is True
    auc = next(c for c in doc["criteria"] if c["id"] == "DK-AUC-01")
    assert [cell["value"] for cell in auc["cells"]] == [0.91, 0.74]
