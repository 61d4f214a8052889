"""Saddle-escape benchmark (bench.escape): escape times against closed forms and Du et al. 2017.

Budgets are tiny (each distinct problem is one compile); the sweeps themselves run from
``python -m bench escape``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

import problems
from bench import escape, schema
from bench.reports import escape_plots
from bench.runner import run_cell

Y0S = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
ETAS = [0.01, 0.03, 0.1, 0.2]


def _crossing_time(y0: float, eta: float) -> float:
    """Real-valued crossing time of y* by the float64 GD recurrence, interpolating ln y linearly
    between the two steps around it (x_t^2 is negligible there, see gd_strict_saddle_escape_time)."""
    ys = escape.strict_saddle_escape_y()
    y, t = y0, 0
    while True:
        y_next = y + eta * (y - y**3)
        if y_next >= ys:
            return t + math.log(ys / y) / math.log(y_next / y)
        y, t = y_next, t + 1


def test_problem_with_starts_maps_each_seed_to_its_start():
    p = problems.get("strict_saddle")
    starts = [np.array([1.0, y], np.float32) for y in (0.5, 0.25, 0.125)]
    q = escape.problem_with_starts(p, starts, "t")
    assert q.name == p.name + "[t]" and escape.base_problem_name(q.name) == p.name
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(np.asarray(q.init(escape.init_key(i))), s)
    assert np.all(np.isnan(np.asarray(q.init(escape.init_key(3)))))  # a seed outside the table: NaN, loudly
    with pytest.raises(TypeError):
        escape.problem_with_starts(p, tuple(starts), "t")


def test_gd_escapes_strict_saddle_after_log_y0_over_log_1_plus_eta_steps():
    # GD from (1, y0) on x^2 + y^4/4 - y^2/2: the y-dynamics y <- y + eta (y - y^3) grow y0 (1 + eta)^t
    # until the escape threshold f <= -0.025 (= f_s - 0.1 (f_s - f*), f_s = 0, f* = -1/4) is met at
    # y* = sqrt(1 - sqrt(0.9)) = 0.22653. One compile: seed i starts at (1, Y0S[i]), the grid holds
    # the step sizes.
    q = escape.problem_with_starts(problems.get("strict_saddle"), [np.array([1.0, y], np.float32) for y in Y0S],
                                   "y0=1e-2..1e-6")
    df = run_cell(q, "sgd", {"learning_rate": ETAS}, seeds=len(Y0S), steps=1300, log_every=100)
    runs = escape.escape_runs(df, weights=lambda name: escape._weights(name))
    assert runs[escape.ESCAPED].all() and (runs["measure"] == schema.ESCAPE).all()
    f0 = df[df[schema.STEP] == 0]  # every run started where its seed says: f(1, y0) in float32
    expected = {i: float(q.full_loss(np.array([1.0, y], np.float32))) for i, y in enumerate(Y0S)}
    assert (f0[schema.LOSS].to_numpy() == f0[schema.SEED].map(expected).to_numpy()).all()
    steps = {}
    for r in runs.itertuples():
        y0, eta = Y0S[r.seed], float(np.float32(r.hp_learning_rate))  # the program runs the float32 step
        t = int(r.escape_step)
        steps[y0, eta] = t
        # closed form (the linear regime plus the cubic term's slowdown): the first integer step after a
        # crossing time within 0.02 of t_c (derivation in gd_strict_saddle_escape_time)
        t_c = escape.gd_strict_saddle_escape_time(y0, eta)
        assert t_c - 0.05 <= t <= t_c + 1.05, (y0, eta, t, t_c)
        # independent reference: the float64 recurrence. float32 round-off moves y_t by a relative
        # ~t eps32 < 2e-4, the crossing time by < 2e-4 / ln(1 + eta) < 0.02 steps: the same step
        # unless the float64 crossing lies within 0.02 of an integer
        t64 = escape.gd_strict_saddle_escape_step(y0, eta)
        tau = _crossing_time(y0, eta)
        assert t == t64 or abs(tau - round(tau)) < 0.02, (y0, eta, t, t64, tau)
        # first-order methods spend one gradient (with its value) per step: cost = steps
        assert r.escape_cost == pytest.approx(t)
    # the y0 dependence is exactly ln(1/y0) / ln(1 + eta): the escape steps from y0 = 1e-2 and 1e-6
    # differ by ln(1e4) / ln(1 + eta) (the cubic correction cancels up to ln((1 - 1e-4) / (1 - 1e-12)) / 2
    # / ln(1 + eta) < 0.01 steps), up to the two ceilings: +-1 step
    for eta in {k[1] for k in steps}:
        predicted = math.log(1e4) / math.log1p(eta)
        assert abs((steps[1e-6, eta] - steps[1e-2, eta]) - predicted) <= 1.0 + 0.01, (eta, predicted)


def test_chained_saddle_pgd_polynomial_gd_exponential():
    # Du et al. 2017 (arXiv:1705.10412), Section 4: with step eta = 1/(4L), while GD escapes saddle s_k along
    # coordinate k+1 in T_k steps, coordinate k+2 (in the +2L well) contracts by 1 - 2 L eta = 1/2 a step, and
    # then has to grow back to tau at 1 + 2 gamma eta = 1 + 1/(2e) a step: T_{k+1} ~ T_k ln 2 / ln(1 + 1/(2e))
    # = 4.1 T_k, exponential in d (problems/chained_saddle.py measured ~9, ~45, ~240). Perturbed GD
    # re-randomizes each escape coordinate to ~r / sqrt(d) when the gradient gets small, so each escape
    # costs ~ ln(tau sqrt(d) / r) / ln(1 + 1/(2e)) steps plus the contraction: ~linear in d.
    # Gradient descent is perturbed_gd with g_thres = -1 (|g| <= -1 never holds: the update is -eta g at
    # every step), so both run in one program per dimension (two compiles in all; d = 4, 5 are in the
    # chained_saddle_dim sweep of `python -m bench escape`, where GD no longer escapes within 2000 steps).
    # Medians over 8 seeds: in float32 the slowest GD run's halved coordinate may underflow to 0 and
    # stall it on a saddle for good (problems/chained_saddle.py), which the median tolerates.
    gd = {**escape.PGD_CHAINED, "g_thres": -1.0}
    costs = {}
    for d in (2, 3):
        df = run_cell(f"chained_saddle(dim={d})", "perturbed_gd", [gd, escape.PGD_CHAINED], seeds=8, steps=1500,
                      log_every=50)
        runs = escape.escape_runs(df)
        assert (runs["measure"] == "target").all()
        for h, name in ((0, "gd"), (1, "pgd")):
            costs[name, d] = runs.loc[runs[schema.HP_INDEX] == h, escape.ESCAPE_COST].to_numpy()
    med = {k: float(np.median(v)) for k, v in costs.items()}
    assert all(np.isfinite(m) for m in med.values()), med
    assert all(np.isfinite(costs["pgd", d]).all() for d in (2, 3))  # PGD passes every chain
    # GD: one more saddle multiplies the time by ~4.1 (the last escape dominates: T(3)/T(2) ~ 1 + 4.1 T_1/T(2)
    # with T_1 ~ 45 of T(2) ~ 60-90 steps; measured 4.9). PGD: one more saddle of about the same cost as
    # each before, T(3)/T(2) ~ 3/2 (measured 1.8)
    gd_ratio, pgd_ratio = med["gd", 3] / med["gd", 2], med["pgd", 3] / med["pgd", 2]
    assert gd_ratio >= 3.0 and pgd_ratio <= 2.2 and gd_ratio >= 2.0 * pgd_ratio, (gd_ratio, pgd_ratio)
    # the same as fitted exponents of cost ~ d^b (the benchmark's summary statistic): GD's ~ ln 4.9 / ln 1.5
    # = 3.9, PGD's ~ ln 1.8 / ln 1.5 = 1.4; the intervals separate
    b_gd, lo_gd, _ = escape.fit_exponent([2, 3], [costs["gd", d] for d in (2, 3)])
    b_pgd, _, hi_pgd = escape.fit_exponent([2, 3], [costs["pgd", d] for d in (2, 3)])
    assert b_pgd < 2.0 < b_gd and hi_pgd < lo_gd, (b_gd, lo_gd, b_pgd, hi_pgd)


def test_fit_exponent_recovers_a_power_law():
    x = np.array([2.0, 4.0, 8.0, 16.0])
    exact = [np.full(9, 3.0 * v**1.5) for v in x]
    b, lo, hi = escape.fit_exponent(x, exact)
    assert b == pytest.approx(1.5, abs=1e-12) and lo == pytest.approx(1.5) and hi == pytest.approx(1.5)
    # lognormal scatter sigma = 0.2 per run, 41 runs per value: the median's log has sd ~ 1.25 * 0.2 / sqrt(41)
    # = 0.039, the slope's sd ~ 0.039 / sqrt(sum (ln x - mean)^2) = 0.039 / 1.55 = 0.025; the interval
    # covers 1.5 and is ~0.1 wide
    rng = np.random.default_rng(0)
    noisy = [3.0 * v**1.5 * np.exp(0.2 * rng.standard_normal(41)) for v in x]
    b, lo, hi = escape.fit_exponent(x, noisy)
    assert lo < 1.5 < hi and abs(b - 1.5) < 0.1 and 0.02 < hi - lo < 0.3
    # a value whose median is infinite (most runs never escaped) is left out of the fit
    censored = [*noisy[:3], np.full(41, np.inf)]
    b3, _, _ = escape.fit_exponent(x, censored)
    assert b3 == pytest.approx(escape.fit_exponent(x[:3], noisy[:3])[0])


def test_summary_markdown_and_figure(tmp_path):
    # synthetic runs: cost = 10 d (sgd), 5 d^2 (adam, which never escapes at d = 64), tuning seeds 0..3
    rows = []
    for opt, law in (("sgd", lambda d: 10.0 * d), ("adam", lambda d: 5.0 * d**2)):
        for d in (4, 16, 64):
            for h in (0, 1):
                for s in range(8):
                    c = law(d) * (1 + 0.01 * s) * (1 + h)  # point 1 is twice as slow: point 0 is chosen
                    never = opt == "adam" and d == 64
                    rows.append({schema.PROBLEM: f"p{d}", schema.OPTIMIZER: opt, schema.HP_INDEX: h, schema.SEED: s,
                                 schema.TUNING: s < 4, schema.STEPS: 10**5, escape.ESCAPED: not never,
                                 escape.ESCAPE_STEP: -1 if never else c, escape.ESCAPE_COST: np.inf if never else c,
                                 "measure": "escape", escape.SWEEP: "toy", escape.VALUE: float(d)})
    summary, exps = escape.summarize(pd.DataFrame(rows))
    assert (summary[schema.HP_INDEX] == 0).all() and (summary["n"] == 4).all()  # held-out seeds only
    e = exps.set_index(schema.OPTIMIZER)
    assert e.loc["sgd", "exponent"] == pytest.approx(1.0, abs=0.01)
    assert e.loc["adam", "exponent"] == pytest.approx(2.0, abs=0.01) and e.loc["adam", "n_fitted"] == 2
    lines = escape.markdown(summary, exps, sweeps={"toy": escape.Sweep("toy", "dimension d", (), 1, 1)})
    text = "\n".join(lines)
    assert "| optimizer | dimension = 4 | dimension = 16 | dimension = 64 | exponent [95% CI] |" in text
    assert "> 100000 steps (0%)" in text and "(fitted on 2 of 3)" in text
    path = escape_plots.plot_escape_scaling(summary, exps, tmp_path / "escape.png", xlabel="dimension d")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_run_writes_csv_markdown_and_figure(tmp_path, monkeypatch):
    # the whole pipeline on a one-value toy sweep (one compile of the 2-D saddle)
    toy = escape.Sweep("toy", "dimension d", ((2.0, "strict_saddle(init_radius=0.001)"),), 60, 20)
    monkeypatch.setitem(escape.SWEEPS, "toy", toy)
    res = escape.run(["toy"], ["sgd"], seeds=4, grid="lr2", out_dir=tmp_path, progress=False)
    assert {"csv", "runs_csv", "markdown", "figure_toy"} <= set(res.paths)
    table = pd.read_csv(res.paths["csv"])
    assert {"sweep", "value", "optimizer", "median_cost", "exponent"} <= set(table.columns)
    # lr2 is {1e-4, 1}; at eta = 1 the y-coordinate doubles per step from |y0| <= 1e-3 to y* = 0.2265
    # within log2(0.2265 / 1e-3) ~ 8 + a few steps, so every held-out run of the chosen point escapes
    # (x flips sign each step, x_{t+1} = -x_t, and x^2 <= 1e-6 stays negligible)
    assert table["hp_index"].tolist() == [1] and table["escaped_fraction"].tolist() == [1.0]
    assert 5 <= table["median_steps"].iloc[0] <= 20
    assert "#### toy" in res.paths["markdown"].read_text()


def test_spin_glass_saddle_of_chosen_index_and_gd_escape_rate():
    # Newton's method on the gradient (bench.census) finds critical points of the 3-spin glass, N = 10; the
    # chosen one is critical with exactly 1 negative tangent Hessian eigenvalue (float64 numpy check).
    import jax

    n, eta = 10, 0.1
    sad = escape.spin_glass_saddle(3, n, 0, 1)
    base = problems.get(f"spin_glass(p=3,n={n},instance=0)")
    w = sad["point"]
    with jax.enable_x64(True):
        g = np.asarray(jax.grad(base.full_loss)(w))
        h = np.asarray(jax.hessian(base.full_loss)(w))
    proj = np.eye(n) - np.outer(w, w)
    assert np.linalg.norm(proj @ g) < 1e-8
    lam, vec = np.linalg.eigh(proj @ h @ proj)  # the tangent Hessian's spectrum, plus 0 on w
    lam_t = np.delete(lam, np.argmax(np.abs(vec.T @ w)))  # drop the radial 0
    np.testing.assert_allclose(np.sort(lam_t), sad["eigs"], atol=1e-8)
    assert int(np.sum(lam_t < 0)) == 1 and sad["index"] == 1
    # GD linearized at the saddle multiplies the deviation along the bottom eigenvector v by 1 + eta |lambda_min|
    # per step: from w_s + delta v, a 100x smaller delta escapes ln(100) / ln(1 + eta |lambda_min|) steps later
    # (the rest of the way out is the same path shifted in time; +-1.5 for the two integer crossings and the
    # float32 rounding of the start, ~2e-7 along v against delta = 1e-5)
    v = vec[:, np.argmin(lam)]
    starts = [(w + d * v) / np.linalg.norm(w + d * v) for d in (1e-3, 1e-5)]
    q = escape.problem_with_starts(base, starts, "index=1,along_v")
    q = dataclasses.replace(q, saddles=(problems.Saddle(w, sad["energy"], 1),))
    df = run_cell(q, "sgd", {"learning_rate": eta}, seeds=2, steps=400, log_every=10)
    r = escape.escape_runs(df).set_index(schema.SEED)
    assert r[escape.ESCAPED].all(), r
    expected = math.log(100.0) / math.log1p(eta * abs(lam.min()))
    assert abs((r.loc[1, escape.ESCAPE_STEP] - r.loc[0, escape.ESCAPE_STEP]) - expected) <= 1.5, (r, expected)
    # the sweep's problem: starts at distance 1e-3 in random tangent directions, the saddle as its first saddle
    sq = escape.spin_glass_saddle_problem(3, n, 0, 1, seeds=3)
    assert sq.saddles[0].value == sad["energy"] and sq.saddles[0].index == 1
    for i in range(3):
        x = np.asarray(jax.jit(sq.init)(escape.init_key(i)), np.float64)
        assert abs(np.linalg.norm(x) - 1.0) < 1e-6 and abs(np.linalg.norm(x - w) - 1e-3) < 2e-5
    with pytest.raises(ValueError, match="index must be in 0..9"):
        escape.spin_glass_saddle(3, n, 0, 12)
