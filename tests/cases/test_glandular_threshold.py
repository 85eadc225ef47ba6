"""The glandular threshold search skips bisection steps whose outcome is certain: its result must be
the plain 50-step bisection's, bit for bit, on ordinary and adversarial inputs."""

import numpy as np
import pytest
from scipy import ndimage

from harness.cases import phantom as ph


def reference_glandular_fraction(geom, inner, vgf, shared, own, ducts):
    """The plain bisection, as the phantom computed it before the search skipped steps."""
    x_mm = (np.arange(geom.mask.shape[1]) + 0.5)[None, :] * geom.spacing
    env = ph._smoothstep(geom.skin_dist, 3.0, 12.0) * ph._smoothstep(
        x_mm + 0 * geom.skin_dist, 4.0, 18.0
    )
    z = np.sqrt(0.6) * shared + np.sqrt(0.4) * own + 0.2 * ducts + 1.0 * env
    w = inner * geom.mask
    wsum = w.sum()

    def ramp(tau):
        return 0.5 * (1 + np.tanh((z - tau) / ph.GLAND_RAMP))

    def mean_g(tau):
        return float((ramp(tau) * ph.GMAX * env * w).sum() / wsum)

    lo, hi = -10.0, 10.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if mean_g(mid) > vgf:
            lo = mid
        else:
            hi = mid
    tau = round(0.5 * (lo + hi), 9)
    return ph._q(ramp(tau) * ph.GMAX * env * geom.mask, 1e-6), mean_g, tau


def _blob_geometry(rng, rows, cols, spacing, radius_px):
    """A breast-like blob (chest wall at column 0) with its skin distance."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = np.hypot((yy - rows / 2) / 1.3, xx) * (1 + 0.1 * rng.standard_normal())
    mask = r < radius_px
    padded = np.pad(mask, ((8, 8), (8, 0)), mode="edge")
    skin = ph._q(ndimage.distance_transform_edt(padded, sampling=spacing)[8:-8, 8:], 1e-6)
    return ph.Geometry(mask, skin, np.zeros((rows, cols)), (rows / 2, radius_px), spacing, np.pi)


def _case(seed, rows=96, cols=80, spacing=0.5, radius_px=60, z_scale=1.0):
    rng = np.random.default_rng(seed)
    geom = _blob_geometry(rng, rows, cols, spacing, radius_px)
    _, inner = ph.thickness_maps(geom, float(rng.uniform(25, 90)))
    fields = [
        z_scale * ph.power_law_field((rows, cols), spacing, ph.BETA, rng),
        z_scale * ph.power_law_field((rows, cols), spacing, ph.BETA, rng),
        ph._q(rng.standard_normal((rows, cols)), 1e-6),
    ]
    return geom, inner, fields


def _same(geom, inner, vgf, fields):
    want, mean_g, tau = reference_glandular_fraction(geom, inner, vgf, *fields)
    got = ph.glandular_fraction(geom, inner, vgf, *fields)
    assert np.array_equal(got, want), (vgf, tau)
    return mean_g, tau


def test_random_fields_and_densities_match_the_plain_bisection():
    rng = np.random.default_rng(34)
    for seed in range(40):
        size = [(96, 80, 0.5, 60), (160, 130, 0.4, 110), (64, 52, 1.0, 20)][seed % 3]
        geom, inner, fields = _case(seed, *size, z_scale=[1.0, 0.2, 4.0][seed % 4 % 3])
        for vgf in rng.uniform(0.01, 0.6, 3):
            _same(geom, inner, float(vgf), fields)


def test_roots_on_rounding_boundaries_and_ties_match():
    # tau is rounded to 1e-9: a root half way between two cells needs the late decisions exactly;
    # vgf equal to mean_g at a midpoint makes that decision a tie (not >).
    for seed in range(12):
        geom, inner, fields = _case(100 + seed)
        mean_g, tau = _same(geom, inner, 0.15 + 0.02 * seed, fields)
        for edge in (tau - 5e-10, tau + 5e-10, tau + 1.5e-9, tau):
            _same(geom, inner, mean_g(edge), fields)
        lo, hi = -10.0, 10.0
        for k in range(50):  # ties with the values at the bisection's own midpoints
            mid = 0.5 * (lo + hi)
            if k in (5, 20, 30, 33, 36, 40, 49):
                _same(geom, inner, mean_g(mid), fields)
            if mean_g(mid) > 0.15 + 0.02 * seed:
                lo = mid
            else:
                hi = mid


def test_vgf_at_and_beyond_the_bracket_ends_match():
    geom, inner, fields = _case(7)
    mean_g, _ = _same(geom, inner, 0.2, fields)
    top, bottom = mean_g(-10.0), mean_g(10.0)
    for vgf in (
        top,
        np.nextafter(top, 0),
        np.nextafter(top, 1),
        top * (1 - 1e-12),
        top + 1e-3,
        bottom,
        np.nextafter(bottom, 1),
        bottom * (1 + 1e-9),
        0.0,
        -0.1,
        1.0,
        mean_g(-10.0 + 20 * 2.0**-50),
        mean_g(10.0 - 20 * 2.0**-50),
    ):
        _same(geom, inner, float(vgf), fields)


def test_tiny_and_empty_masks_match():
    rng = np.random.default_rng(3)
    for radius_px in (0.5, 2, 4, 9, 14):  # from no weighted pixel to a few hundred
        geom, inner, fields = _case(int(radius_px * 10), radius_px=radius_px)
        for vgf in (0.0, 1e-9, float(rng.uniform(0.01, 0.5)), 0.79):
            with np.errstate(invalid="ignore"):  # an empty mask has no weight (0 / 0)
                _same(geom, inner, vgf, fields)


def test_rendered_views_match_and_skip_most_evaluations():
    """CI-size views of the default recipe: same arrays, and mean_g is evaluated a handful of times
    rather than 50 (what makes the search faster)."""
    from harness.cases import DEFAULT_RECIPE
    from harness.cases.devices import PROFILES
    from harness.cases.exam import _rng
    from harness.cases.population import plan_exams
    from harness.cases.recipe import load_recipe

    recipe = load_recipe(DEFAULT_RECIPE)
    calls = []
    for plan in plan_exams(recipe.with_overrides(exams=6)):
        rows, cols, spacing = PROFILES[plan.manufacturer].geometry("ci")
        shape = ph.draw_shape(plan.breast_depth_mm, plan.thickness_mm, _rng(recipe.seed, 0, 1))
        geom = ph.breast_geometry(shape, "CC", rows, cols, spacing, 0.0)
        _, inner = ph.thickness_maps(geom, plan.thickness_mm)
        fields = [
            ph.power_law_field((rows, cols), spacing, ph.BETA, _rng(recipe.seed, plan.index, n))
            for n in (2, 4)
        ] + [ph.duct_field(geom, _rng(recipe.seed, plan.index, 5))]
        mean_g, tau = _same(geom, inner, plan.glandular_fraction, fields)
        counted = []

        def counting(t, mean_g=mean_g, counted=counted):
            counted.append(t)
            return mean_g(t)

        x_mm = (np.arange(cols) + 0.5)[None, :] * spacing
        env = ph._smoothstep(geom.skin_dist, 3.0, 12.0) * ph._smoothstep(
            x_mm + 0 * geom.skin_dist, 4.0, 18.0
        )
        z = np.sqrt(0.6) * fields[0] + np.sqrt(0.4) * fields[1] + 0.2 * fields[2] + env
        w = inner * geom.mask
        sel = (env != 0) & (w != 0)
        above, below = ph.threshold_bounds(
            z[sel], ph.GMAX * env[sel] * w[sel], float(w.sum()), plan.glandular_fraction
        )
        assert above < below < above + 1e-8
        lo, hi = -10.0, 10.0
        for _ in range(50):  # the bounds agree with every decision of the plain bisection
            mid = 0.5 * (lo + hi)
            up = mean_g(mid) > plan.glandular_fraction
            assert (mid > above or up) and (mid < below or not up)
            lo, hi = (mid, hi) if up else (lo, mid)
        assert ph.replay_bisection(counting, plan.glandular_fraction, above, below) == tau
        calls.append(len(counted))
    assert max(calls) <= 3, calls  # of 50 in the plain bisection


@pytest.mark.parametrize("root", [-2.5, 1.0])
def test_a_wrong_bound_would_be_caught(root):
    # The replay trusts its bounds: bounds on the wrong side of the root change tau, so the
    # equality tests above can fail.
    geom, inner, fields = _case(11)
    mean_g, _ = _same(geom, inner, 0.1, fields)
    vgf = mean_g(root)
    _, tau = _same(geom, inner, vgf, fields)
    assert abs(tau - root) < 1e-6
    assert ph.replay_bisection(mean_g, vgf, -np.inf, np.inf) == tau
    assert ph.replay_bisection(mean_g, vgf, tau + 1e-3, np.inf) != tau
    assert ph.replay_bisection(mean_g, vgf, -np.inf, tau - 1e-3) != tau
