"""Pictures of the way (``bench.reports.pictures``): the re-run is the benchmark's run, the
filter-normalised directions of Li et al. 2018 have the end point's filter norms, the linear path of
Goodfellow et al. 2015 starts and ends at the run's own points, and the figures are written."""

import dataclasses
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import bench
import problems
from bench import schema as S
from bench.reports import leaderboard, pictures

SADDLE = problems.get("strict_saddle(init_radius=0.1)").name
MLP = problems.get("relu_mlp(dataset='iris',width=4,depth=1,batch_size=16)").name


@pytest.fixture(scope="module")
def store():
    """A tiny store: two optimizers on the strict saddle (one with two points, so the leaderboard
    chooses), and Adam on a tiny mini-batch ReLU MLP (stochastic: the re-run must draw the same batches)."""
    df = pd.concat([
        bench.run_cell(SADDLE, "sgd", hparams={"learning_rate": [0.05, 0.2]}, seeds=4, steps=40, log_every=10),
        bench.run_cell(SADDLE, "adam", hparams={"learning_rate": 0.05}, seeds=4, steps=40, log_every=10),
        bench.run_cell(MLP, "adam", hparams={"learning_rate": 0.02}, seeds=2, steps=20, log_every=10),
    ], ignore_index=True)
    tab = leaderboard.build(df)[0]
    runs = pictures.median_runs(df, tab)
    # recorded as write_all records them (every step on the 2-D saddle, every log interval on the
    # MLP), so write_all below reuses these compiled re-runs
    trajs = [pictures.rerun_median(r, every=pictures.record_every(r, problems.get(r.problem).dim)) for r in runs]
    return df, tab, runs, trajs


def test_median_run_is_the_median_held_out_run_at_the_chosen_point(store):
    df, tab, runs, _ = store
    assert {(r.problem, r.optimizer) for r in runs} == {(p, o) for p, o in zip(tab["problem"], tab["optimizer"])}
    per_run = S.summarize(df)
    for r in runs:
        row = tab[(tab["problem"] == r.problem) & (tab["optimizer"] == r.optimizer)].iloc[0]
        assert r.hp_index == row[S.HP_INDEX]
        held = per_run[(per_run[S.PROBLEM] == r.problem) & (per_run[S.OPTIMIZER] == r.optimizer)
                       & (per_run[S.HP_INDEX] == r.hp_index) & ~per_run[S.TUNING]]
        finals = np.sort(held[S.FINAL_LOSS].to_numpy())
        assert r.final_loss == finals[(len(finals) - 1) // 2]
        assert r.seed in set(held[S.SEED])
        assert r.hparams["learning_rate"] == pytest.approx(row["hp_learning_rate"])


def test_rerun_reproduces_the_stored_losses(store):
    """The re-run's full loss at the logged steps is the runner's ``loss`` column for the same
    seed and hyperparameters (float32 round-off), for a deterministic and a mini-batch problem."""
    df, _, runs, trajs = store
    for r, traj in zip(runs, trajs):
        every = traj.steps[1] - traj.steps[0]
        assert every == (1 if r.problem == SADDLE else r.log_every)
        stored = df[(df[S.PROBLEM] == r.problem) & (df[S.OPTIMIZER] == r.optimizer) & (df[S.HP_INDEX] == r.hp_index)
                    & (df[S.SEED] == r.seed)].sort_values(S.STEP)
        logged = np.isin(traj.steps, stored[S.STEP].to_numpy())
        np.testing.assert_array_equal(traj.steps[logged], stored[S.STEP].to_numpy())
        np.testing.assert_allclose(traj.loss[logged], stored[S.LOSS].to_numpy(), rtol=2e-6, atol=1e-7)
        assert traj.loss[-1] == pytest.approx(r.final_loss, rel=2e-6, abs=1e-7)
        assert not np.allclose(traj.loss[0], traj.loss[-1])  # the run moved: the check is not vacuous
        assert pictures.check_against_store(r, traj, df)
        other = dataclasses.replace(r, seed=r.seed + 100)  # another run's losses are not these
        assert not pictures.check_against_store(other, traj, df)
    # the full loss recorded with the points is the full loss of the points
    r, t = next((r, t) for r, t in zip(runs, trajs) if r.problem == SADDLE)
    p = problems.get(SADDLE)
    np.testing.assert_allclose(np.asarray(jax.vmap(p.full_loss)(t.params)), t.loss, rtol=1e-6, atol=1e-7)


def _mlp_end(store):
    _, _, runs, trajs = store
    return next(t for r, t in zip(runs, trajs) if r.problem == MLP).end


def test_filter_normalised_direction_has_the_filter_norms(store):
    theta = _mlp_end(store)  # after 20 Adam steps: nonzero biases
    assert all(np.abs(b).min() > 0 for b in (theta["layers"][0]["bias"], theta["layers"][1]["bias"]))
    key = jax.random.key(7)
    d = pictures.filter_normalized_direction(key, theta)
    d_bias = pictures.filter_normalized_direction(key, theta, bias="filter")
    n_kernels = 0
    leaves = jax.tree_util.tree_leaves
    for t, u, ub in zip(leaves(theta), leaves(d), leaves(d_bias)):
        t, u, ub = np.asarray(t, np.float64), np.asarray(u, np.float64), np.asarray(ub, np.float64)
        if t.ndim == 2:  # a (d_in, d_out) kernel: one filter per output unit, a column
            n_kernels += 1
            np.testing.assert_allclose(np.linalg.norm(u, axis=0), np.linalg.norm(t, axis=0), rtol=1e-5)
            assert not np.allclose(u / np.linalg.norm(u, axis=0), t / np.linalg.norm(t, axis=0))  # random, not theta
            np.testing.assert_array_equal(u, ub)
        else:  # biases: zero (the paper's choice), or each entry its own filter
            np.testing.assert_array_equal(u, 0.0)
            np.testing.assert_allclose(np.abs(ub), np.abs(t), rtol=1e-6)
    assert n_kernels == 2
    with pytest.raises(ValueError, match="bias"):
        pictures.filter_normalized_direction(key, theta, bias="ones")


def test_slice_is_the_loss_on_the_plane(store):
    p = problems.get(MLP)
    x = _mlp_end(store)
    full = jax.jit(p.full_loss)
    k1, k2 = jax.random.split(jax.random.key(1))
    d1, d2 = pictures.filter_normalized_direction(k1, x), pictures.filter_normalized_direction(k2, x)
    a, b = np.array([-0.5, 0.0, 0.5]), np.array([0.0, 1.0])
    z = pictures.loss_slice(p, x, d1, d2, a, b)
    assert z.shape == (2, 3)
    for i, bi in enumerate(b):
        for j, aj in enumerate(a):
            y = jax.tree_util.tree_map(lambda c, u, v, aj=aj, bi=bi: c + np.float32(aj) * u + np.float32(bi) * v,
                                       x, d1, d2)
            assert z[i, j] == pytest.approx(float(full(y)), rel=1e-5)
    assert z[0, 1] == pytest.approx(float(full(x)), rel=1e-6)


def test_line_endpoints_are_the_runs_start_and_end(store):
    _, _, runs, trajs = store
    for r, t in zip(runs, trajs):
        p = problems.get(r.problem)
        f = pictures.line_losses(p, t.start, t.end)
        full = jax.jit(p.full_loss)
        assert f[pictures.LINE_ALPHAS == 0][0] == full(t.start)
        assert f[pictures.LINE_ALPHAS == 1][0] == full(t.end)
        assert f[pictures.LINE_ALPHAS == 1][0] == pytest.approx(r.final_loss, rel=2e-6, abs=1e-7)
        mid = jax.tree_util.tree_map(lambda u, v: 0.5 * u + 0.5 * v, t.start, t.end)
        assert f[pictures.LINE_ALPHAS == 0.5][0] == pytest.approx(float(full(mid)), rel=1e-6, abs=1e-7)
    assert pictures.LINE_ALPHAS.min() == -0.25 and pictures.LINE_ALPHAS.max() == 1.25


@pytest.mark.parametrize("family", sorted(pictures.KNOWN_MINIMA))
def test_known_minima_have_the_reference_value(family):
    p = problems.get(family)
    assert p.dim == 2
    for m in pictures.KNOWN_MINIMA[family]:
        x = jnp.asarray(m, jnp.float32)
        assert float(p.full_loss(x)) == pytest.approx(p.reference.f_star, abs=1e-6)
        assert float(jnp.linalg.norm(jax.grad(p.full_loss)(x))) < 1e-5


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_write_all_writes_every_figure(store, tmp_path):
    df, tab, _, _ = store
    written = pictures.write_all(df, tab, tmp_path / "plots", slice_grid=9)
    names = {p.name for p in written}
    saddle, mlp = pictures._slug(SADDLE), pictures._slug(problems.get(MLP).name)
    assert names == {f"paths_{saddle}.png", f"line_{saddle}.png", f"line_{mlp}.png", f"slice_{mlp}.png"}
    for p in written:
        assert p.parent == tmp_path / "plots" and p.stat().st_size > 10_000
        w, h = _png_size(p)
        assert 600 <= w <= 2400 and 300 <= h <= 1400, (p.name, w, h)
    only = pictures.write_all(df, tab, tmp_path / "only", problems_filter=[SADDLE])
    assert {p.name for p in only} == {f"paths_{saddle}.png", f"line_{saddle}.png"}


def test_figures_take_diverged_runs(tmp_path):
    """A run that blew up is drawn until it leaves the frame (paths) and listed, not drawn (line)."""
    p = problems.get(SADDLE)

    def run(optimizer, status):
        return pictures.MedianRun(problem=p.name, optimizer=optimizer, hp_index=0, hparams={}, seed=0, steps=4,
                                  log_every=1, dtype="float32", final_loss=np.nan, status=status, rank=0)

    ok = pictures.Trajectory(np.arange(5), np.array([[0.05, 0.05], [0.0, 0.3], [0.0, 0.7], [0.0, 0.9], [0.0, 1.0]],
                                                    np.float32), np.zeros(5, np.float32))
    bad = pictures.Trajectory(np.arange(5), np.array([[0.05, -0.05], [1.0, -1.0], [1e3, -1e3], [1e30, -1e30],
                                                     [np.nan, np.nan]], np.float32), np.zeros(5, np.float32))
    runs = [run("sgd", "converged"), run("momentum", "diverged")]
    for path in (pictures.paths_figure(p, runs, [ok, bad], tmp_path / "paths.png"),
                 pictures.line_figure(p, runs, [ok, bad], tmp_path / "line.png"),
                 pictures.line_figure(p, runs[:1], [ok], tmp_path / "line_linear.png", log=False)):
        w, h = _png_size(path)
        assert w > 600 and h > 300
    with pytest.raises(ValueError, match="2-D"):
        pictures.paths_figure(problems.get("rosenbrock(dim=3)"), runs, [ok, bad], tmp_path / "no.png")
