"""Hyperparameter grids: the qmc<K> rule covers the whole search space, reproducibly."""

import math

import numpy as np
import pytest
from scipy.stats import qmc

import optimizers
from bench import grid


@pytest.mark.parametrize("name", optimizers.names())
def test_qmc_rule_is_the_defaults_then_halton_points_over_the_search_space(name):
    spec = optimizers.spec(name)
    g = grid.rule(name, "qmc6")
    points = g.full_points()
    space = spec.search_space
    assert len(points) == (7 if space else 1)
    assert points[0] == {**spec.defaults, **{k: float(v) for k, v in points[0].items() if k in g.traced_names}}
    for k in g.traced_names:
        assert points[0][k] == float(spec.defaults[k])  # point 0: the defaults track
    if not space:
        return
    # the independent reference: scipy's scrambled Halton sequence, mapped onto each range
    u = qmc.Halton(d=len(space), scramble=True, seed=grid.QMC_SEED).random(6)
    for row, point in zip(u, points[1:]):
        for x, (k, r) in zip(row, space.items()):
            expect = math.exp(math.log(r.low) + x * math.log(r.high / r.low)) if r.log else r.low + x * (r.high - r.low)
            assert point[k] == pytest.approx(expect, rel=5e-3)  # rounded to 3 significant digits
            assert r.low * (1 - 1e-3) <= point[k] <= r.high * (1 + 1e-3)
        for k in spec.defaults:
            if k not in space:
                assert point[k] == points[0][k]  # only the search space varies
    assert grid.rule(name, "qmc6") == g  # reproducible


def test_qmc_points_spread_over_log_ranges():
    g = grid.rule("sphere_noise_sgd", "qmc16")
    radii = np.log10([p["noise_radius"] for p in g.points[1:]])
    # noise_radius ranges over [1e-4, 10]: 16 Halton points fill every decade
    assert {int(np.floor(r)) for r in radii} == {-4, -3, -2, -1, 0}


@pytest.mark.parametrize("rule, message", [("qmc", "unknown grid rule"), ("lr", "unknown grid rule"),
                                           ("halton5", "unknown grid rule")])
def test_bad_rules_name_the_valid_ones(rule, message):
    with pytest.raises(ValueError, match=message):
        grid.rule("adam", rule)


def test_expand_checks_static_and_boolean_values_agree():
    with pytest.raises(ValueError, match="static hyperparameter 'krylov_dim' varies"):
        grid.expand("cubic_reg", [{"krylov_dim": 5}, {"krylov_dim": 6}])
    g = grid.expand("adam", {"learning_rate": [1e-3, 1e-2], "b1": 0.8})
    assert len(g) == 2 and g.arrays()["learning_rate"].dtype == np.float32
    assert [p["b1"] for p in g.full_points()] == [0.8, 0.8]
