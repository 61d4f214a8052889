"""One score across problems: performance profiles, the AlgoPerf score, aRT and runtime ECDFs, by hand."""

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from bench.reports import profiles, score

INF = math.inf

# 3 problems x 4 optimizers. Ratios r = c / min over the row:
#   p1: A 10 -> 1, B 20 -> 2, C failed (NaN) -> inf, D failed
#   p2: A 15 -> 1, B 15 -> 1 (tie at the best), C 30 -> 2, D failed (inf)
#   p3: A 5 -> 1, B 50 -> 10 (above tau_max = 4), C 10 -> 2, D failed
COSTS = pd.DataFrame({"A": [10.0, 15.0, 5.0], "B": [20.0, 15.0, 50.0], "C": [np.nan, 30.0, 10.0],
                      "D": [np.nan, INF, np.nan]}, index=pd.Index(["p1", "p2", "p3"], name="problem"))


def test_ratios_by_hand():
    r = score.ratios(COSTS)
    expected = pd.DataFrame({"A": [1.0, 1.0, 1.0], "B": [2.0, 1.0, 10.0], "C": [INF, 2.0, 2.0], "D": [INF, INF, INF]},
                            index=COSTS.index)
    pd.testing.assert_frame_equal(r, expected)


def test_profile_by_hand():
    prof = score.performance_profile(COSTS, [1.0, 1.5, 2.0, 3.99, 4.0, 10.0, 100.0])
    third = 1 / 3
    np.testing.assert_allclose(prof["A"], [1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(prof["B"], [third, third, 2 * third, 2 * third, 2 * third, 1, 1])
    np.testing.assert_allclose(prof["C"], [0, 0, 2 * third, 2 * third, 2 * third, 2 * third, 2 * third])
    np.testing.assert_allclose(prof["D"], 0)
    # default grid: 1 and every distinct finite ratio
    assert score.performance_profile(COSTS).index.tolist() == [1.0, 2.0, 10.0]


def test_algoperf_score_exact_by_hand():
    # B_s = 1/|P| sum_p max(0, 4 - r_ps) / 3:
    #   A: (3 + 3 + 3) / 9 = 1; B: (2 + 3 + 0) / 9; C: (0 + 2 + 2) / 9; D: 0
    # equivalently the step integral, e.g. B: rho = 1/3 on [1, 2), 2/3 on [2, 4]: (1/3 * 1 + 2/3 * 2) / 3 = 5/9
    s = score.algoperf_score(COSTS)
    np.testing.assert_allclose(s.to_numpy(), [1.0, 5 / 9, 4 / 9, 0.0], rtol=0, atol=1e-15)
    assert s.name == "score" and s.index.tolist() == ["A", "B", "C", "D"]
    # another limit: tau_max = 11 -> B: (9 + 10 + 1) / (3 * 10), C: (0 + 9 + 9) / 30
    np.testing.assert_allclose(score.algoperf_score(COSTS, 11.0)[["B", "C"]], [20 / 30, 18 / 30])


def _step_integral(prof: pd.Series, tau_max: float) -> float:
    """Integrate the right-continuous step function given at its breakpoints over [1, tau_max]."""
    x = np.append(prof.index.to_numpy(), np.inf)
    lo, hi = np.clip(x[:-1], 1, tau_max), np.clip(x[1:], 1, tau_max)
    return float(np.sum(prof.to_numpy() * (hi - lo)))


def random_costs(seed: int, n_problems: int = 7, n_opt: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = rng.lognormal(3, 1, (n_problems, n_opt))
    c[rng.random(c.shape) < 0.25] = np.nan
    c[0, 1] = c[0, 2]  # a tie
    return pd.DataFrame(c, columns=[f"o{j}" for j in range(n_opt)])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau_max", [1.5, 4.0, 20.0])
def test_score_is_the_integral_of_the_steps_and_the_trapezoid_limit(seed, tau_max):
    costs = random_costs(seed)
    s = score.algoperf_score(costs, tau_max)
    prof = score.performance_profile(costs)
    for name in costs.columns:
        assert s[name] == pytest.approx(_step_integral(prof[name], tau_max) / (tau_max - 1), abs=1e-12)
    # AlgoPerf's code: rho sampled on a linear grid, trapezoidal rule, divided by the range
    taus = np.linspace(1.0, tau_max, 200_001)
    dense = score.performance_profile(costs, taus)
    trap = np.trapezoid(dense.to_numpy(), taus, axis=0) / (tau_max - 1)
    np.testing.assert_allclose(s.to_numpy(), trap, atol=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_profile_monotone_in_unit_interval(seed):
    costs = random_costs(seed)
    prof = score.performance_profile(costs, np.geomspace(1, 1e3, 50))
    v = prof.to_numpy()
    assert ((v >= 0) & (v <= 1)).all()
    assert (np.diff(v, axis=0) >= 0).all()
    # at large tau: the share of problems each optimizer solved at all
    np.testing.assert_allclose(v[-1], costs.notna().mean().to_numpy())
    s = score.algoperf_score(costs)
    assert ((s >= 0) & (s <= 1)).all()


def test_best_everywhere_scores_one_failing_everywhere_scores_zero():
    costs = random_costs(0)
    costs["best"] = costs.min(axis=1, skipna=True).fillna(1.0) * 0.5
    costs["never"] = np.nan
    costs["inf"] = INF
    s = score.algoperf_score(costs)
    assert s["best"] == 1.0 and s["never"] == 0.0 and s["inf"] == 0.0
    prof = score.performance_profile(costs)
    assert (prof["best"] == 1.0).all() and (prof["never"] == 0.0).all()


def test_score_invariant_to_scaling_a_problem():
    costs = random_costs(3)
    scaled = costs.copy()
    scaled.iloc[2] *= 1000.0
    pd.testing.assert_series_equal(score.algoperf_score(costs), score.algoperf_score(scaled))


def test_unsolved_problem_stays_in_the_denominator():
    # p2 solved by nobody: A (3/3 + 0) / 2, B ((4 - 2)/3 + 0) / 2
    costs = pd.DataFrame({"A": [1.0, np.nan], "B": [2.0, INF]})
    np.testing.assert_allclose(score.algoperf_score(costs), [1 / 2, 1 / 3])
    np.testing.assert_allclose(score.performance_profile(costs, [1.0, 100.0]).to_numpy(), [[0.5, 0.0], [0.5, 0.5]])


def test_zero_cost_needs_a_shift():
    costs = pd.DataFrame({"A": [0.0, 4.0], "B": [1.0, 2.0]})
    with pytest.raises(ValueError, match="shift"):
        score.algoperf_score(costs)
    with pytest.raises(ValueError, match="non-negative"):
        score.ratios(pd.DataFrame({"A": [-1.0]}))
    # shift = 1: A 1/1, 5/3 ; B 2/1, 3/3
    r = score.ratios(costs, shift=1.0)
    np.testing.assert_allclose(r.to_numpy(), [[1.0, 2.0], [5 / 3, 1.0]])
    with pytest.raises(ValueError, match="tau_max"):
        score.algoperf_score(COSTS, 1.0)


# --- from runs -------------------------------------------------------------------------------


def runs_frame(rows, categorical=False):
    """rows: (problem, optimizer, dim, hit_grads or None for a failed run, n_grads at the end)."""
    df = pd.DataFrame([dict(problem=p, optimizer=o, dim=d, status="converged" if h is not None else "budget_exhausted",
                            hit_grads=-1 if h is None else h, n_grads=b) for p, o, d, h, b in rows])
    if categorical:
        df = df.astype({"problem": "category", "optimizer": "category", "status": "category"})
    return df


@pytest.mark.parametrize("hits, expected", [
    ([10, 20, 30], 20.0),
    ([10, None, 30], 30.0),  # sorted 10, 30, inf
    ([10, None, None], INF),  # 2 of 3 failed
    ([10, 20, 30, None], 25.0),  # (20 + 30) / 2
    ([10, 20, None, None], INF),  # half failed: (20 + inf) / 2
    ([None], INF),
    ([7], 7.0),
])
def test_cost_to_target_median_counts_failures_as_inf(hits, expected):
    runs = runs_frame([("p", "A", 2, h, 100) for h in hits])
    assert score.cost_to_target(runs).loc["p", "A"] == expected


@pytest.mark.parametrize("categorical", [False, True])
def test_cost_to_target_frame(categorical):
    rows = [("p1", "A", 2, 10, 100), ("p1", "A", 2, 20, 100), ("p1", "B", 2, None, 100),
            ("p2", "A", 5, 4, 100), ("p2", "B", 5, 8, 100), ("p2", "B", 5, 6, 100), ("p3", "B", 5, 1, 100)]
    c = score.cost_to_target(runs_frame(rows, categorical))
    assert c.index.tolist() == ["p1", "p2", "p3"] and c.columns.tolist() == ["A", "B"]
    np.testing.assert_array_equal(c.to_numpy(), [[15.0, INF], [4.0, 7.0], [np.nan, 1.0]])  # A never ran p3
    # a "converged" run with the never-sentinel counts as failed; success from a boolean column
    runs = runs_frame([("p", "A", 2, 5, 100), ("p", "A", 2, 5, 100)])
    runs.loc[1, "hit_grads"] = -1
    assert score.cost_to_target(runs).loc["p", "A"] == INF  # (5 + inf) / 2
    runs["ok"] = [False, True]
    assert score.cost_to_target(runs, success_col="ok").loc["p", "A"] == INF
    assert score.cost_to_target(runs, "n_grads", success_col="ok").loc["p", "A"] == INF  # 1 of 2 succeeded
    runs["ok"] = [True, True]
    assert score.cost_to_target(runs, "n_grads", success_col="ok").loc["p", "A"] == 100.0


def test_expected_runtime_by_hand():
    rows = [
        # p1/A: successes 10, 20; one failure with budget 100 -> (10 + 20 + 100) / 2 = 65
        ("p1", "A", 2, 10, 100), ("p1", "A", 2, 20, 100), ("p1", "A", 2, None, 100),
        # p1/B: every run fails -> inf
        ("p1", "B", 2, None, 100), ("p1", "B", 2, None, 100),
        # p2/A: all succeed -> the mean, (4 + 6) / 2 = 5
        ("p2", "A", 5, 4, 50), ("p2", "A", 5, 6, 50),
        # p2/B: one success 30, failures with budgets 50, 70 -> (30 + 50 + 70) / 1 = 150
        ("p2", "B", 5, 30, 50), ("p2", "B", 5, None, 50), ("p2", "B", 5, None, 70),
    ]
    art = score.expected_runtime(runs_frame(rows))
    np.testing.assert_array_equal(art.to_numpy(), [[65.0, INF], [5.0, 150.0]])
    assert art.index.tolist() == ["p1", "p2"] and art.columns.tolist() == ["A", "B"]
    # aRT feeds the profile like any cost frame: p1 ratios A 1, B inf; p2 A 1, B 30
    np.testing.assert_allclose(score.algoperf_score(art), [1.0, 0.0])
    with pytest.raises(KeyError, match="budget"):
        score.expected_runtime(runs_frame(rows).drop(columns="n_grads"))


def ecdf_runs():
    # A: p1 (dim 2) 10, 20, fail; p2 (dim 5) 5, fail, fail -> 6 pairs
    # B: p1 fail, fail; p2 fail  -> 3 pairs, none solved
    return runs_frame([("p1", "A", 2, 10, 100), ("p1", "A", 2, 20, 100), ("p1", "A", 2, None, 100),
                       ("p2", "A", 5, 5, 100), ("p2", "A", 5, None, 100), ("p2", "A", 5, None, 100),
                       ("p1", "B", 2, None, 100), ("p1", "B", 2, None, 100), ("p2", "B", 5, None, 100)])


def test_runtime_ecdf_by_hand():
    e = score.runtime_ecdf(ecdf_runs())
    a = e[e["optimizer"] == "A"]
    assert a["cost"].tolist() == [5.0, 10.0, 20.0]
    np.testing.assert_allclose(a["fraction"], [1 / 6, 2 / 6, 3 / 6])
    assert (a["n_pairs"] == 6).all()
    b = e[e["optimizer"] == "B"]
    assert len(b) == 1 and np.isnan(b["cost"].iloc[0]) and b["fraction"].iloc[0] == 0.0 and b["n_pairs"].iloc[0] == 3
    at = score.ecdf_at(e, [4, 5, 9, 10, 19.9, 20, 1e9])
    np.testing.assert_allclose(at["A"], [0, 1 / 6, 1 / 6, 2 / 6, 2 / 6, 3 / 6, 3 / 6])
    np.testing.assert_allclose(at["B"], 0.0)


def test_runtime_ecdf_per_dimension():
    # A: 10 / 2 = 5, 20 / 2 = 10, 5 / 5 = 1
    e = score.runtime_ecdf(ecdf_runs(), per_dim=True)
    a = e[e["optimizer"] == "A"]
    assert a["cost"].tolist() == [1.0, 5.0, 10.0]
    np.testing.assert_allclose(score.ecdf_at(e, [0.5, 1, 7, 10])["A"], [0, 1 / 6, 2 / 6, 3 / 6])


def test_runtime_ecdf_ties_jump_once():
    runs = runs_frame([("p", "A", 1, 3, 9), ("p", "A", 1, 3, 9), ("q", "A", 1, 3, 9), ("q", "A", 1, None, 9)])
    e = score.runtime_ecdf(runs)
    assert e["cost"].tolist() == [3.0] and e["fraction"].tolist() == [0.75]


# --- figures ---------------------------------------------------------------------------------


def _png_ok(path):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400 and img.shape[2] in (3, 4)
    assert img[..., :3].std() > 0.01  # not blank


def test_figures_write_pngs(tmp_path):
    p = profiles.write_profile(COSTS, tmp_path / "sub" / "profile.png", "gradients to target (median over runs)")
    assert p == tmp_path / "sub" / "profile.png"
    _png_ok(p)
    # every optimizer tied on every problem: the tau axis still spans [1, 2]
    _png_ok(profiles.write_profile(pd.DataFrame({"A": [1.0, 2.0], "B": [1.0, 2.0]}), tmp_path / "tie.png", "steps"))
    e = profiles.write_ecdf(score.runtime_ecdf(ecdf_runs(), per_dim=True), tmp_path / "ecdf.png",
                            "gradients to target / dimension")
    assert e == tmp_path / "ecdf.png"
    _png_ok(e)
