"""Every YAML input is parsed with aliases refused (issue #35, item 2): a 306-byte "billion
laughs" standard took 2.2 GB and 11 s to lint; now it is one line, exit 2, at once."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from harness import yamlio
from harness.errors import RecipeError, StandardError, VendorPackageError
from mammocert.cli import main

ROOT = Path(__file__).resolve().parents[1]


def billion_laughs(levels: int = 7) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"
    for i in range(1, levels + 1):
        prev, cur = names[i - 1], names[i]
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_small():
    assert len(billion_laughs().encode()) < 400


def test_loader_refuses_aliases_with_the_line():
    with pytest.raises(RecipeError, match=r"^x.yaml:2: invalid YAML \(alias \*a is not allowed"):
        yamlio.safe_load("a: &a 1\nb: *a\n", "x.yaml", RecipeError)


def test_merge_keys_are_aliases_too():
    with pytest.raises(RecipeError, match="alias"):
        yamlio.safe_load("base: &b {x: 1}\nother:\n  <<: *b\n", "x.yaml", RecipeError)


def test_anchors_alone_and_plain_yaml_load():
    assert yamlio.safe_load("a: &a 1\nb: [1, 2]\n", "x.yaml", RecipeError) == {"a": 1, "b": [1, 2]}


def test_deep_nesting_and_bad_bytes_are_one_line_errors():
    with pytest.raises(RecipeError, match="nested too deeply|invalid YAML"):
        yamlio.safe_load("[" * 20000, "x.yaml", RecipeError)
    with pytest.raises(RecipeError, match=r"^x.yaml:2: not UTF-8 text"):
        yamlio.safe_load(b"a: 1\nb: \xff\n", "x.yaml", RecipeError)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("command", ["lint", "diff", "run"])
def test_billion_laughs_standard_is_refused_at_once(tmp_path, capsys, command):
    std = tmp_path / "laughs.yaml"
    std.write_text(billion_laughs())
    argv = {
        "lint": ["standard", "lint", str(std)],
        "diff": ["standard", "diff", str(std), str(std)],
        "run": [
            "evaluate",
            "--predictions",
            str(std),
            "--cases",
            str(tmp_path),
            "--standard",
            str(std),
            "--out",
            str(tmp_path / "o"),
            "--operating-point",
            "0.5",
        ],
    }[command]
    import conformance.engine  # noqa: F401 - import time is not parse time
    import harness.standard  # noqa: F401

    before, t0 = _rss_mb(), time.perf_counter()
    rc = main(argv)
    err = capsys.readouterr()
    assert time.perf_counter() - t0 < 2.0
    assert _rss_mb() - before < 100
    text = err.out + err.err
    assert rc == 2, text
    assert "alias *a is not allowed" in text
    assert "internal error" not in text


def test_recipe_and_vendor_yaml_refuse_aliases(tmp_path):
    from harness.cases.recipe import load_recipe
    from harness.vendors import load_vendor_package

    (tmp_path / "r.yaml").write_text(billion_laughs())
    with pytest.raises(RecipeError, match="alias"):
        load_recipe(tmp_path / "r.yaml")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "vendor.yaml").write_text(billion_laughs())
    with pytest.raises(VendorPackageError, match="alias"):
        load_vendor_package(pkg)


def test_standard_loader_refuses_aliases(tmp_path):
    from harness.standard import load_standard

    text = (ROOT / "standards" / "demo.yaml").read_text()
    (tmp_path / "s.yaml").write_text(text + "\nextra: &x 1\nmore: *x\n")
    with pytest.raises(StandardError, match="alias"):
        load_standard(tmp_path / "s.yaml")


def test_no_module_parses_yaml_behind_yamlio():
    """Every yaml.safe_load/yaml.load of an input goes through harness.yamlio."""
    offenders = []
    for package in ("harness", "conformance", "reports", "mammocert"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "yamlio.py":
                continue
            text = path.read_text()
            for needle in ("yaml.safe_load(", "yaml.load(", "yaml.full_load(", "yaml.unsafe_load("):
                if needle in text and "aliases refused" not in text.split(needle)[1].split("\n")[0]:
                    offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders
