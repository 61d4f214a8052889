"""Defaults from evidence (bench.defaults): every grid point scored like an optimizer, by hand; the
registered defaults are the points docs/defaults.json records."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import optimizers
from bench import defaults
from bench.reports import leaderboard

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _runs(problem, hp, lr, hits):
    """Four runs (seeds 0, 1 tune; 2, 3 held out) of sgd at one point; hit -1: never reached the target."""
    out = []
    for seed, hit in enumerate(hits):
        final = 0.0 if hit >= 0 else 1.0
        out.append(dict(problem=problem, family="p", dim=2, optimizer="sgd", hp_index=hp, hp_learning_rate=lr,
                        seed=seed, step=100, loss=final, grad_norm=0.0, n_values=100, n_grads=100, n_hvps=0,
                        final_loss=final, final_grad_norm=0.0, final_gap=final, hit_step=hit, hit_values=hit,
                        hit_grads=hit, hit_hvps=0, diverged_step=-1, final_lambda_min=1.0, final_lambda_max=1.0,
                        status="converged" if hit >= 0 else "budget_exhausted", f_star=0.0, f_target=1e-3,
                        steps=100, run_s_amortized=0.01))
    return out


def test_points_rank_by_problems_solved_then_score():
    # p: point 0 reaches the target at 10 gradients, point 1 at 40; q: point 0 never, point 1 at 20.
    # The tuned field (chosen on seeds 0, 1): point 0 on p (10), point 1 on q (20). With the +1 shift:
    # point 0: ratios 1 on p, inf on q -> score (1 + 0) / 2 = 0.5, one problem solved; point 1: ratios
    # 41/11 on p, 1 on q -> ((4 - 41/11) / 3 + 1) / 2 = 0.5455, two solved: point 1 is chosen.
    rows = (_runs("p(a=1)", 0, 0.001, [10] * 4) + _runs("p(a=1)", 1, 0.249, [40] * 4)
            + _runs("q(a=1)", 0, 0.001, [-1] * 4) + _runs("q(a=1)", 1, 0.249, [20] * 4))
    df = pd.DataFrame(rows).assign(cell_key="k", utc_time="2026-12-01T00:00:00+00:00")
    s = defaults.point_scores(leaderboard.with_costs(df)).set_index("hp_index")
    assert s.loc[0, "score"] == pytest.approx(0.5) and s.loc[0, "solved"] == 1
    assert s.loc[1, "score"] == pytest.approx(((4 - 41 / 11) / 3 + 1) / 2) and s.loc[1, "solved"] == 2
    assert s.loc[0, "mean_success"] == 0.5 and s.loc[1, "mean_success"] == 1.0
    assert list(s["chosen"]) == [False, True] and list(s["defaults"]) == [True, False]
    assert defaults.chosen_points(s.reset_index()) == {"sgd": {"learning_rate": 0.249}}
    md = "\n".join(defaults.markdown(s.reset_index(), "python -m bench defaults"))
    assert "| **1** | **0.249** | **0.545** | **2** | **100%** |" in md


def test_a_point_whose_values_differ_between_cells_is_no_candidate():
    rows = _runs("p(a=1)", 0, 0.001, [10] * 4) + _runs("p(a=1)", 1, 0.249, [40] * 4)
    rows += _runs("q(a=1)", 0, 0.001, [10] * 4) + _runs("q(a=1)", 1, 0.5, [20] * 4)  # point 1 overridden on q
    runs = leaderboard.with_costs(pd.DataFrame(rows).assign(cell_key="k", utc_time="2026-12-01T00:00:00+00:00"))
    cand, points = defaults.candidate_runs(runs, leaderboard.selection(runs))
    assert points == {"sgd#0": {"learning_rate": 0.001}}
    assert set(cand["optimizer"]) == {"sgd#0"} and set(cand["seed"]) == {2, 3}


def test_registered_defaults_are_the_recorded_evidence():
    recorded = json.loads((ROOT / "docs" / "defaults.json").read_text())
    assert recorded["adopted"], "docs/defaults.json lists no adopted defaults"
    for name, point in recorded["adopted"].items():
        d = optimizers.spec(name).defaults
        for k, v in point.items():
            assert np.float32(d[k]) == np.float32(v), (name, k, d[k], v)
    for name, why in recorded["not_adopted"].items():
        assert name in optimizers.names() and why
