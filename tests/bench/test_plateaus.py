"""Plateau episodes (bench.plateaus): exact counts on hand-made curves, Saxe et al.'s deep-linear plateaus."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree

import problems
from bench import escape, plateaus, schema
from bench.runner import run_cell

STEPS = np.arange(0, 101, 10)


def _run(problem, seed, f, g, hit=-1, optimizer="gd"):
    n = len(f)
    return pd.DataFrame({schema.PROBLEM: problem, schema.OPTIMIZER: optimizer, schema.HP_INDEX: 0, schema.SEED: seed,
                         schema.STEP: STEPS[:n], schema.LOSS: f, schema.GRAD_NORM: g, schema.F_REF: 0.0,
                         schema.F_TARGET: 1e-6, schema.HIT_STEP: hit, schema.TUNING: seed == 0})


def _synthetic() -> pd.DataFrame:
    # run 0: two plateaus by construction. Relative rates r_i = (f_i - f_{i+1}) / (10 f_i) (f_ref = 0):
    # ~1e-6 on intervals 0, 1, 4, 5, 6 and 0.05-0.09 elsewhere (R = 0.09, rtol R = 0.0045), so those five
    # are slow; the gradient threshold is max(0.1 G, 1e-3) = 0.5 with G = 5, which interval 4 (|g| = 2 at
    # its start: a large gradient, not a plateau) fails. Flat: 0, 1 | 5, 6 -> episodes (0, 20), (50, 70).
    f0 = [10.0, 9.9999, 9.9998, 5.0, 1.0, 0.99999, 0.99998, 0.99997, 0.1, 0.01, 0.001]
    g0 = [0.01, 0.01, 0.02, 5.0, 2.0, 0.01, 0.01, 0.02, 1.0, 0.3, 0.1]
    # run 1: stuck on a saddle for the whole budget (|g| = 1e-4 <= GRAD_TOL, the loss never moves): one
    # plateau over all 100 steps, still open at the end
    f1, g1 = [3.0] * 11, [1e-4] * 11
    # run 2: converges; once f <= f_target = 1e-6 (step 50 on) float32 round-off stops the loss, which is
    # no plateau; before that every interval removes ~90% of the gap: no plateau at all
    f2 = [1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-7, 1e-7, 1e-7, 1e-7, 1e-7, 1e-7]
    g2 = [1.0, 0.3, 0.1, 0.03, 0.01, 3e-4, 3e-4, 3e-4, 3e-4, 3e-4, 3e-4]
    return pd.concat([_run("toy", 0, f0, g0), _run("toy", 1, f1, g1), _run("toy", 2, f2, g2, hit=50)],
                     ignore_index=True)


def test_synthetic_curves_give_exactly_the_known_episodes():
    r = plateaus.plateau_runs(_synthetic()).set_index(schema.SEED)
    assert r.loc[0, plateaus.EPISODES] == [(0, 20), (50, 70)]
    assert r.loc[0, plateaus.N_PLATEAUS] == 2 and r.loc[0, plateaus.PLATEAU_STEPS] == 40
    assert (r.loc[0, plateaus.FIRST_PLATEAU_START], r.loc[0, plateaus.FIRST_PLATEAU_END]) == (0, 20)
    assert r.loc[0, plateaus.LONGEST_PLATEAU] == 20 and not r.loc[0, plateaus.LAST_PLATEAU_OPEN]
    assert r.loc[1, plateaus.EPISODES] == [(0, 100)] and r.loc[1, plateaus.LAST_PLATEAU_OPEN]
    assert r.loc[1, plateaus.PLATEAU_STEPS] == 100
    assert r.loc[2, plateaus.N_PLATEAUS] == 0 and r.loc[2, plateaus.FIRST_PLATEAU_START] == -1
    # episodes shorter than min_intervals intervals are dropped: run 0's two 2-interval episodes go
    r3 = plateaus.plateau_runs(_synthetic(), min_intervals=3).set_index(schema.SEED)
    assert r3.loc[0, plateaus.N_PLATEAUS] == 0 and r3.loc[1, plateaus.N_PLATEAUS] == 1


def test_markdown_reports_plateau_steps_beside_steps_to_target():
    r = plateaus.plateau_runs(_synthetic())
    lines = plateaus.markdown(r)
    text = "\n".join(lines)
    assert "median plateau steps [IQR]" in text and "median steps to target" in text
    row = next(line for line in lines if line.startswith("| `toy` | gd |"))
    # 3 runs: plateau steps {40, 100, 0} -> median 40, IQR [20, 70]; hit steps {never, never, 50} -> median inf
    assert row == "| `toy` | gd | 3 | 2 | 1 | 40 [20, 70] | 60 | > budget |"
    # a selection restricts to the chosen point's held-out seeds (tuning = seed 0 here)
    sel = pd.DataFrame({schema.PROBLEM: ["toy"], schema.OPTIMIZER: ["gd"], schema.HP_INDEX: [0]})
    row = next(line for line in plateaus.markdown(r, sel) if line.startswith("| `toy` |"))
    # held out: seeds 1 (plateau 100, never solved) and 2 (no plateau, solved at 50)
    assert row == "| `toy` | gd | 2 | 1 | 0.5 | 50 [25, 75] | 100 | > budget |"


def test_deep_linear_plateaus_grow_with_depth_and_smaller_init():
    # Saxe, McClelland and Ganguli 2014: from a small balanced init of per-layer scale a0 the mode strength
    # a obeys a' ~ eta s a^(D-1) while it is small, so GD leaves the origin's plateau after
    # ~ ln(1/a0) / (eta s) steps at depth 2 and ~ 1 / (eta s a0^(D-2)) at depth D >= 3: longer for smaller a0
    # at every depth, longer at depth 3 than at depth 2 for the same a0, and at depth 3 about 10x longer
    # for a 10x smaller a0. One compile per depth: seeds 0-3 start at scale 0.1, seeds 4-7 at 0.01.
    scales = (0.1, 0.01)
    plateau, first_end = {}, {}
    for depth in (2, 3):
        kw = dict(depth=depth, width=4, d_in=4, d_out=4, n_samples=32, teacher_rank=2, init="balanced")
        base = problems.get("deep_linear", **kw, init_scale=scales[0])
        # the balanced init is W_l = scale P_l P_{l-1}^T: scaling every layer of a scale-0.1 start by 0.1 gives
        # the scale-0.01 start with the same random frames (one init compile instead of a problem per scale)
        first = [jax.jit(base.init)(escape.init_key(i)) for i in range(4)]
        starts = first + [tuple(w * np.float32(scales[1] / scales[0]) for w in p) for p in first]
        q = escape.problem_with_starts(base, starts, "scales=0.1,0.01")
        df = run_cell(q, "sgd", {"learning_rate": 0.05}, seeds=8, steps=1500, log_every=5)
        f0 = df[df[schema.STEP] == 0].sort_values(schema.SEED)[schema.LOSS].to_numpy()  # the starts were used
        np.testing.assert_array_equal(f0, [float(jax.jit(q.full_loss)(s)) for s in starts])
        r = plateaus.plateau_runs(df).sort_values(schema.SEED)
        for k, s in enumerate(scales):
            sub = r.iloc[4 * k: 4 * k + 4]
            plateau[depth, s] = float(np.median(sub[plateaus.PLATEAU_STEPS]))
            first_end[depth, s] = float(np.median(sub[plateaus.FIRST_PLATEAU_END]))
    for depth in (2, 3):
        assert plateau[depth, 0.01] > plateau[depth, 0.1], plateau
    for s in scales:
        assert plateau[3, s] > plateau[2, s], plateau
    assert plateau[2, 0.01] > 0 and plateau[3, 0.1] > 0
    # depth 3: the first plateau ends ~10x later for a 10x smaller init (measured ~17x: the flat stretch
    # excludes the descent, which takes a similar time at both scales)
    assert first_end[3, 0.01] >= 5 * first_end[3, 0.1], first_end


@pytest.mark.parametrize("missing", [schema.GRAD_NORM, schema.LOSS])
def test_missing_columns_are_a_clear_error(missing):
    with pytest.raises(ValueError, match=missing):
        plateaus.plateau_runs(_synthetic().drop(columns=[missing]))


def test_plateau_index_is_the_median_logged_index_of_each_episode():
    df = _synthetic()
    # run 0 (episodes (0, 20) and (50, 70)): index 3 on steps 0-20, then 5, 1, 1 at steps 50, 60, 70
    index = {0: [3, 3, 3, 2, 2, 5, 1, 1, 0, 0, 0], 1: [2] * 11, 2: [0] * 11}
    lam = {0: [-0.5, -0.4, -0.3, -0.2, -0.1, -0.2, -0.1, -0.1, 0.0, 0.0, 0.0], 1: [-1e-2] * 11, 2: [0.1] * 11}
    df[schema.HESSIAN_INDEX] = np.concatenate([index[s] for s in (0, 1, 2)])
    df[schema.LAMBDA_MIN] = np.concatenate([lam[s] for s in (0, 1, 2)])
    r = plateaus.plateau_runs(df).set_index(schema.SEED)
    assert r.loc[0, plateaus.EPISODE_INDEX] == [3.0, 1.0]
    assert r.loc[0, plateaus.FIRST_PLATEAU_INDEX] == 3.0 and r.loc[0, plateaus.FIRST_PLATEAU_LAMBDA_MIN] == -0.5
    assert r.loc[1, plateaus.EPISODE_INDEX] == [2.0] and r.loc[1, plateaus.FIRST_PLATEAU_LAMBDA_MIN] == -1e-2
    assert r.loc[2, plateaus.EPISODE_INDEX] == [] and np.isnan(r.loc[2, plateaus.FIRST_PLATEAU_INDEX])
    row = next(line for line in plateaus.index_lines(r.reset_index()) if line.startswith("| `toy` |"))
    assert row == "| `toy` | gd | 2 | 2.5 [2, 3] | -0.255 |"
    assert plateaus.index_lines(plateaus.plateau_runs(_synthetic())) == []  # no curvature columns: no table


def test_deep_linear_first_plateau_is_a_saddle_region_with_the_dense_hessian_index():
    # depth 3 from a small balanced init (Saxe et al. 2014): the run starts on a plateau near the origin,
    # where the Hessian (vanishing at the origin itself) has negative eigenvalues of order init_scale; the
    # runner's curvature flag logs the index, which at step 0 equals the count of float64 numpy eigenvalues
    # of the dense Hessian at the start below -EIG_TOL max(1, |lambda_max|)
    name = ("deep_linear(depth=3,width=4,d_in=4,d_out=4,n_samples=32,teacher_rank=2,init='balanced',"
            "init_scale=0.1)")
    df = run_cell(name, "sgd", {"learning_rate": 0.05}, seeds=2, steps=400, log_every=10, curvature=True)
    r = plateaus.plateau_runs(df).set_index(schema.SEED)
    assert (r[plateaus.FIRST_PLATEAU_START] == 0).all() and (r[plateaus.FIRST_PLATEAU_INDEX] >= 1).all()
    assert (r[plateaus.FIRST_PLATEAU_LAMBDA_MIN] < 0).all()
    p = problems.get(name)
    with jax.enable_x64(True):
        for seed in (0, 1):
            w = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax.jit(p.init)(escape.init_key(seed)))
            flat, unravel = ravel_pytree(w)
            h = np.asarray(jax.hessian(lambda v, u=unravel: p.full_loss(u(v)))(flat))
            lam = np.linalg.eigvalsh(h)
            expected = int(np.sum(lam < -schema.EIG_TOL * max(1.0, abs(lam[-1]))))
            logged = df[(df[schema.SEED] == seed) & (df[schema.STEP] == 0)][schema.HESSIAN_INDEX].iloc[0]
            assert logged == expected, (seed, logged, lam)
