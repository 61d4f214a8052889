"""Leaderboard arithmetic: Wilson intervals, honest selection on tuning seeds, held-out numbers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.reports import leaderboard


@pytest.mark.parametrize("k, n", [(0, 4), (3, 4), (8, 8), (5, 16), (1, 1)])
def test_wilson_matches_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = leaderboard.wilson(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-6) and hi == pytest.approx(ci.high, abs=1e-6)


def synthetic(rows):
    """A logged frame with one final row per run: (hp_index, lr, seed, status, hit_step, final_loss)."""
    out = []
    for hp, lr, seed, status, hit, final in rows:
        out.append(dict(problem="p(a=1)", family="p", dim=2, optimizer="opt", hp_index=hp, hp_learning_rate=lr,
                        seed=seed, step=100, loss=final, grad_norm=0.0, n_values=100, n_grads=100, n_hvps=0,
                        final_loss=final, final_grad_norm=0.0, final_gap=final, hit_step=hit, hit_values=hit,
                        hit_grads=hit, hit_hvps=0, diverged_step=-1, final_lambda_min=1.0, final_lambda_max=1.0,
                        status=status, f_star=0.0, f_target=1e-3, steps=100, run_s_amortized=0.01))
    return pd.DataFrame(out)


def test_selection_on_tuning_seeds_numbers_on_held_out_seeds():
    rows = []
    # point 0: solves tuning seeds 0,1 fast but fails held-out seeds 2,3
    rows += [(0, 0.1, 0, "converged", 10, 0.0), (0, 0.1, 1, "converged", 12, 0.0),
             (0, 0.1, 2, "budget_exhausted", -1, 5.0), (0, 0.1, 3, "budget_exhausted", -1, 5.0)]
    # point 1: solves one tuning seed, and all held-out seeds
    rows += [(1, 0.01, 0, "converged", 50, 0.0), (1, 0.01, 1, "budget_exhausted", -1, 1.0),
             (1, 0.01, 2, "converged", 40, 0.0), (1, 0.01, 3, "converged", 60, 0.0)]
    tab = leaderboard.table(synthetic(rows))
    row = tab.iloc[0]
    assert row["hp_learning_rate"] == 0.1  # chosen on tuning seeds 0, 1
    assert row["runs"] == 2 and row["success"] == 0.0  # ... and reported on held-out 2, 3
    assert np.isnan(row["steps_median"])
    assert row["gap_median"] == 5.0
    assert row["n_budget_exhausted"] == 2


def test_single_point_reports_every_seed_with_iqr():
    rows = [(0, 0.1, s, "converged", h, 0.0) for s, h in enumerate([10, 20, 30, 40])]
    row = leaderboard.table(synthetic(rows)).iloc[0]
    assert row["runs"] == 4 and row["success"] == 1.0
    assert row["steps_median"] == 25 and row["steps_q25"] == 17.5 and row["steps_q75"] == 32.5
    assert row["selection"] == "single point"


def test_hyperparameter_text_names_the_rate_and_every_non_default():
    row = pd.Series({"optimizer": "stochastic_cubic", "hp_index": 0, "hp_learning_rate": 0.0595,
                     "hp_T_sub": 20, "hp_T_final": 50, "hp_rho": 1.0, "hp_eps": np.nan})
    assert leaderboard._hp_text(row) == "lr=0.0595, T_sub=20"
    assert leaderboard._hp_text(pd.Series({"optimizer": "newton", "hp_index": 0})) == "defaults"


def test_suite_overrides_fix_hyperparameters_in_every_grid_point():
    from bench import grid, suites

    cells = [c for c in suites.get("quick").cells() if c.optimizer == "stochastic_cubic"]
    points = [p for c in cells for p in c.grid.full_points()]
    assert cells and all(p["T_sub"] == 20 and p["T_final"] == 20 for p in points)
    assert len({p["learning_rate"] for p in cells[0].grid.full_points()}) == 5
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        grid.rule("stochastic_cubic", "lr5", {"T_subb": 20})


def test_scores_leave_out_problems_no_run_solved_and_rank_by_cost():
    # problem p: optimizer a reaches the target at 10 gradients on every held-out run, b at 30;
    # problem q: nobody does, so it cannot rank anything and is left out of the scores
    frames = []
    for opt, hit in (("a", 10), ("b", 30)):
        f = synthetic([(0, 0.1, s, "converged", hit, 0.0) for s in range(4)])
        frames.append(f.assign(optimizer=opt))
        g = synthetic([(0, 0.1, s, "budget_exhausted", -1, 1.0) for s in range(4)])
        frames.append(g.assign(optimizer=opt, problem="q(a=1)"))
    df = pd.concat(frames, ignore_index=True).assign(cell_key="k", utc_time="2026-12-01T00:00:00+00:00")
    tab, ov = leaderboard.build(df)
    assert list(ov["costs"].index) == ["p(a=1)"]
    # unknown problems weigh every oracle call as a gradient: cost = hit_grads; ratios with the
    # +1 shift: a (10+1)/(10+1) = 1, b (30+1)/(10+1) = 2.82 -> score (4 - 2.82) / 3
    assert ov["summary"].loc["a", "score_cost"] == pytest.approx(1.0)
    assert ov["summary"].loc["b", "score_cost"] == pytest.approx((4 - 31 / 11) / 3)
    md = leaderboard.markdown(tab, df, ov)
    assert "not scored, as no held-out run of any optimizer reached their target: q(a=1)" in md
    assert tab.loc[(tab.optimizer == "a") & (tab.problem == "p(a=1)"), "cost_median"].item() == 10.0


def test_median_interval_covers_the_median_and_degenerates_sensibly():
    x = np.arange(1.0, 33.0)
    lo, hi = leaderboard.median_interval(x)
    assert lo <= np.median(x) <= hi and hi - lo < 16
    assert leaderboard.median_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert all(np.isnan(leaderboard.median_interval([5.0])))


def test_relative_targets_share_and_score_by_hand():
    # one problem, two optimizers, one point each (all four seeds reported); hit steps per tau:
    # A reaches every tau on all seeds, costs 10, 10, 10, 10 at tau = 1e-1; B reaches 1e-1 at cost
    # 20 on all seeds and the tighter targets on seed 0 only.
    from bench import schema as S

    rows = []
    for opt, hits in (("A", {1e-1: [10] * 4, 1e-2: [12] * 4, 1e-3: [14] * 4, 1e-5: [16] * 4}),
                      ("B", {1e-1: [20] * 4, 1e-2: [30, -1, -1, -1], 1e-3: [40, -1, -1, -1], 1e-5: [50, -1, -1, -1]})):
        df = synthetic([(0, 0.1, s, "converged" if hits[1e-5][s] >= 0 else "budget_exhausted", hits[1e-5][s], 0.0)
                        for s in range(4)])
        df["optimizer"], df["f_ref"], df["tuning"] = opt, 0.0, False
        for tau, h in hits.items():
            for kind in S.TAU_KINDS:
                df[S.tau_column(kind, tau)] = h if kind != "hit_hvps" else [0 if x >= 0 else -1 for x in h]
        rows.append(df)
    df = pd.concat(rows, ignore_index=True)
    tab, ov = leaderboard.build(df)
    taus = ov["taus"]
    assert taus.loc["A", "share@1e-1"] == 1.0 and taus.loc["B", "share@1e-2"] == 0.25
    assert list(taus.index) == ["A", "B"]  # sorted by the tightest target's share
    # score at 1e-1: ratio (20 + 1) / (10 + 1) for B (COST_SHIFT = 1), profile 1 from there on
    assert taus.loc["A", "score@1e-1"] == pytest.approx(1.0)
    assert taus.loc["B", "score@1e-1"] == pytest.approx((4 - 21 / 11) / 3)
    assert taus.loc["B", "score@1e-5"] == 0.0  # median of B's runs failed: infinite cost
    row_b = tab.set_index("optimizer").loc["B"]
    assert row_b["success@1e-2"] == 0.25 and row_b["cost_to_target@1e-2"] == 30
    lines = []
    leaderboard._relative_targets_markdown(lines, ov)
    md = "\n".join(lines)
    assert "## Relative targets: from loose to tight" in md and "| B | 100%, 0.697 | 25%, 0 |" in md
