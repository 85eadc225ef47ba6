"""Simulated reads follow the Danish figures (Elhakim 2023); manifest-only, no pixels rendered."""

import numpy as np

from harness.cases import DEFAULT_RECIPE
from harness.cases.population import plan_exams
from harness.cases.recipe import load_recipe


def test_reader_rates_near_targets():
    recipe = load_recipe(DEFAULT_RECIPE).with_overrides(exams=20000)
    plans = plan_exams(recipe)
    can = [p for p in plans if p.label]
    non = [p for p in plans if not p.label]
    sens1 = np.mean([p.readers["reader1"] for p in can])
    sens2 = np.mean([p.readers["reader2"] for p in can])
    spec1 = 1 - np.mean([p.readers["reader1"] for p in non])
    cons_sens = np.mean([p.readers["consensus"] for p in can])
    cons_spec = 1 - np.mean([p.readers["consensus"] for p in non])
    # 5000 cancers: SE of a proportion ~0.007; 15000 non-cancers: ~0.0012.
    assert abs(sens1 - 0.637) < 0.025 and abs(sens2 - 0.637) < 0.025
    assert abs(spec1 - 0.978) < 0.004
    assert abs(cons_sens - 0.74) < 0.01  # screen-detected share by definition
    assert abs(cons_spec - 0.979) < 0.004
    # consensus matches truth by definition for cancers
    assert all(p.readers["consensus"] == (p.truth == "screen_detected") for p in can)
    # subtle cancers are missed more
    subtle = [p.readers["reader1"] for p in can if p.lesion.subtle]
    clear = [p.readers["reader1"] for p in can if not p.lesion.subtle]
    assert np.mean(subtle) < np.mean(clear) - 0.2
