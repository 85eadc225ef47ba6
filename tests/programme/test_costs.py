"""Cost model: hand-computed yearly figures on the hand-made set, and one-line refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from handmade import PREV, handmade, rate

from harness.errors import CostModelError, UsageError
from harness.programme.analysis import analyse
from harness.programme.costs import DEFAULT_COSTS, load_costs, parse_costs

ROUND = {
    "minutes_per_read": (1, "min/read"),
    "minutes_per_arbitration": (3, "min/arbitration"),
    "readers_per_arbitration": (1, "radiologists/arbitration"),
    "productive_hours_per_fte": (1000, "h/FTE/year"),
    "radiologist_cost_per_hour": (600, "DKK/h"),
    "recall_workup_cost": (2000, "DKK/recall"),
    "biopsy_fraction_of_recalls": (0.5, "fraction"),
    "biopsy_cost": (1000, "DKK/biopsy"),
    "ai_price_per_exam": (10, "DKK/exam"),
    "ai_fixed_annual": (100000, "DKK/year"),
    "ai_one_off": (500000, "DKK"),
    "ai_amortisation_years": (5, "years"),
}


def model_dict() -> dict:
    q = {
        k: {"value": v, "unit": u, "source": "test", "verified": k != "ai_price_per_exam"}
        for k, (v, u) in ROUND.items()
    }
    q["ai_price_per_exam"]["range"] = [5, 20]
    return {
        "schema": "mammocert/costs/v1",
        "id": "test",
        "currency": "DKK",
        "default_region": "r",
        "regions": {
            "r": {
                "screens_per_year": {
                    "value": 100000,
                    "unit": "screens/year",
                    "source": "test",
                    "verified": True,
                }
            }
        },
        "inputs": q,
        "protocols": {
            "triage": {"protocol": "ai_triage", "band": {"score": 0.5}},
            "rule_out": {
                "protocol": "ai_rule_out",
                "band": {"score": 0.5},
                "safety_net": {"score": 0.7},
            },
        },
    }


def text(d: dict) -> str:
    return yaml.safe_dump(d, sort_keys=False)


def test_yearly_figures_by_hand():
    model = parse_costs(text(model_dict()), "t.yaml")
    assert [s.name for s in model.protocols] == ["double_reading", "triage", "rule_out"]
    doc = analyse(handmade(), PREV, 1, model, n_boot=200, draws=200)
    by = {p["name"]: p["yearly"] for p in doc["protocols"]}
    n = 100000
    approx = pytest.approx

    # double reading: 2 reads each, arbitration and recall both rate(2, 2)
    dr_hours = (2 * n * 1 + rate(2, 2) * n * 3 * 1) / 60
    dr_total = dr_hours * 600 + rate(2, 2) * n * (2000 + 0.5 * 1000)
    dr = by["double_reading"]
    assert dr["reads"]["value"] == approx(2 * n)
    assert dr["radiologist_hours"]["value"] == approx(dr_hours)
    assert dr["ftes"]["value"] == approx(dr_hours / 1000)
    assert dr["ai_cost"]["value"] == 0
    assert dr["total_cost"]["value"] == approx(dr_total)
    assert "net_cost" not in dr

    # triage: reads (0.006 * 7/4 + 0.994 * 8/6) per screen, arbitration rate(1, 1),
    # recall rate(2, 1), same cancers as double reading
    t_reads = n * (0.006 * 7 / 4 + 0.994 * 8 / 6)
    t_hours = (t_reads + rate(1, 1) * n * 3) / 60
    ai = n * 10 + 100000 + 500000 / 5
    t_total = t_hours * 600 + rate(2, 1) * n * 2500 + ai
    tri = by["triage"]
    assert tri["ai_cost"]["value"] == approx(ai)
    assert tri["total_cost"]["value"] == approx(t_total)
    assert tri["net_cost"]["value"] == approx(t_total - dr_total)
    assert tri["additional_cancers"]["value"] == approx(0)
    assert tri["cost_per_additional_cancer"]["value"] is None
    assert "no more cancers" in tri["cost_per_additional_cancer"]["note"]
    assert tri["break_even_ai_price"]["value"] == approx(10 - (t_total - dr_total) / n)

    # rule-out with safety net: reads (0.006 * 6/4 + 0.994 * 4/6), arbitrations: C2 and N3
    # are double read and disagree -> rate(1, 1); recall rate(3, 1); one more cancer (C4)
    r_reads = n * (0.006 * 6 / 4 + 0.994 * 4 / 6)
    r_hours = (r_reads + rate(1, 1) * n * 3) / 60
    r_total = r_hours * 600 + rate(3, 1) * n * 2500 + ai
    ro = by["rule_out"]
    assert ro["total_cost"]["value"] == approx(r_total)
    assert ro["additional_cancers"]["value"] == approx(n * 0.006 / 4)
    assert ro["cost_per_additional_cancer"]["value"] == approx(
        (r_total - dr_total) / (n * 0.006 / 4)
    )
    # the one unverified input is flagged exactly where it is used
    assert ro["ai_cost"]["unverified"] == ["ai_price_per_exam"]
    assert ro["net_cost"]["unverified"] == ["ai_price_per_exam"]
    assert ro["break_even_ai_price"]["unverified"] == []
    assert ro["reading_cost"]["unverified"] == []
    assert doc["unverified_inputs"] == ["ai_price_per_exam"]
    # one-way: only the AI price has a range; net moves by n * (high - low)
    tornado = {t["protocol"]: t for t in doc["sensitivity"]["one_way"]}
    bar = tornado["rule_out"]["bars"][0]
    assert bar["input"] == "ai_price_per_exam"
    assert bar["net_cost_at_high"] - bar["net_cost_at_low"] == approx(n * 15)


def test_the_shipped_danish_defaults_load_for_every_region_and_flag_unverified_inputs():
    for region in ("national", "hovedstaden", "midtjylland", "syddanmark"):
        m = load_costs(region=region)
        assert m.region == region
    m = load_costs(region="midtjylland")
    assert m.inputs["screens_per_year"].value == 70000
    assert not m.inputs["screens_per_year"].verified
    assert m.inputs["minutes_per_arbitration"].verified
    assert "radiologist_cost_per_hour" in m.unverified(list(m.inputs))
    assert all(q.source for q in m.inputs.values())


def _refused(mutate) -> str:
    d = model_dict()
    mutate(d)
    with pytest.raises(CostModelError) as exc:
        parse_costs(text(d), "costs.yaml")
    assert isinstance(exc.value, UsageError) and exc.value.exit_code == 2
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("costs.yaml:")
    return msg


def test_refusals_are_one_line_naming_the_field():
    msg = _refused(lambda d: d["inputs"]["minutes_per_read"].pop("unit"))
    assert "inputs.minutes_per_read" in msg and "'unit'" in msg
    msg = _refused(lambda d: d["inputs"]["biopsy_cost"].update(value=-5))
    assert "inputs.biopsy_cost.value" in msg and "negative" in msg
    msg = _refused(lambda d: d["protocols"]["triage"].update(protocol="ai_magic"))
    assert "protocols.triage.protocol" in msg and "'ai_magic' is not one of" in msg
    msg = _refused(lambda d: d["inputs"]["minutes_per_read"].update(unit="s/read"))
    assert "'min/read'" in msg
    msg = _refused(lambda d: d["inputs"]["ai_price_per_exam"].update(range=[30, 40]))
    assert "does not hold the value" in msg
    msg = _refused(lambda d: d["inputs"]["biopsy_fraction_of_recalls"].update(value=1.5))
    assert "fraction" in msg
    with pytest.raises(CostModelError, match="region 'nowhere' is not in the cost model"):
        parse_costs(text(model_dict()), "costs.yaml", region="nowhere")
    with pytest.raises(CostModelError, match="invalid YAML"):
        parse_costs("inputs: [unclosed", "costs.yaml")


def test_a_refused_cost_file_exits_2_with_one_line(tmp_path: Path):
    d = model_dict()
    d["inputs"]["ai_one_off"]["value"] = -1
    bad = tmp_path / "costs.yaml"
    bad.write_text(text(d))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "programme",
            "--predictions",
            "p.jsonl",
            "--cases",
            str(tmp_path),
            "--standard",
            "s.yaml",
            "--costs",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "ai_one_off.value" in lines[0]


def test_probabilistic_draws_are_seeded():
    model = parse_costs(text(model_dict()), "t.yaml")
    a = analyse(handmade(), PREV, 7, model, n_boot=200, draws=300)["sensitivity"]
    b = analyse(handmade(), PREV, 7, model, n_boot=200, draws=300)["sensitivity"]
    assert a["probabilistic"] == b["probabilistic"]
    lo, hi = a["probabilistic"][0]["interval"]
    assert lo <= a["probabilistic"][0]["median"] <= hi
    assert np.isfinite(lo)


def test_the_default_file_is_the_package_copy():
    assert DEFAULT_COSTS.name == "dk-default.yaml" and DEFAULT_COSTS.is_file()


def test_a_region_file_changes_only_what_it_gives(tmp_path: Path):
    """`extends: dk-default`: one input and one region's volume replaced, the rest inherited."""
    overlay = tmp_path / "region.yaml"
    overlay.write_text(
        "schema: mammocert/costs/v1\n"
        "extends: dk-default\n"
        "id: midtjylland-2027\n"
        "default_region: midtjylland\n"
        "inputs:\n"
        "  radiologist_cost_per_hour: {value: 1234, unit: DKK/h, source: 'region payroll 2027', verified: true}\n"
        "regions:\n"
        "  midtjylland:\n"
        "    screens_per_year: {value: 71000, unit: screens/year, source: 'region 2026 count', verified: true}\n",
        encoding="utf-8",
    )
    base = load_costs()
    mine = load_costs(overlay)
    assert mine.id == "midtjylland-2027" and mine.region == "midtjylland"
    assert mine.inputs["radiologist_cost_per_hour"].value == 1234
    assert mine.inputs["radiologist_cost_per_hour"].verified is True
    assert mine.inputs["screens_per_year"].value == 71000
    for name, q in base.inputs.items():  # everything else is the defaults'
        if name not in ("radiologist_cost_per_hour", "screens_per_year"):
            assert mine.inputs[name] == q
    assert [p.name for p in mine.protocols] == [p.name for p in base.protocols]
    # a region the overlay does not touch keeps its default volume
    assert load_costs(overlay, region="syddanmark").inputs["screens_per_year"].value == 85000


def test_a_broken_overlay_is_refused_naming_its_line(tmp_path: Path):
    overlay = tmp_path / "region.yaml"
    overlay.write_text(
        "schema: mammocert/costs/v1\nextends: dk-default\ninputs:\n"
        "  biopsy_cost: {value: -3, unit: DKK/biopsy, source: 'a quote', verified: false}\n",
        encoding="utf-8",
    )
    with pytest.raises(CostModelError, match=r"region.yaml:4: inputs.biopsy_cost.value"):
        load_costs(overlay)
    overlay.write_text("schema: mammocert/costs/v1\nextends: nowhere.yaml\n", encoding="utf-8")
    with pytest.raises(CostModelError, match="extends: cannot read 'nowhere.yaml'"):
        load_costs(overlay)
