"""The runner: one compile per cell, exact numbers against an independent numpy loop."""

import jax
import numpy as np
import pytest

import bench
import problems
from bench import landscape, program, schema

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    def __init__(self):
        self.n = 0

    def __call__(self, event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            self.n += 1


@pytest.fixture
def compiles():
    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    yield counter
    jax.monitoring.unregister_event_duration_listener(counter)


def numpy_gd(x0, lr, steps, grad, f):
    """Plain gradient descent in float32 numpy: the independent reference."""
    x = np.asarray(x0, np.float32).copy()
    losses = [f(x)]
    for _ in range(steps):
        x = (x - np.float32(lr) * grad(x)).astype(np.float32)
        losses.append(f(x))
    return np.asarray(losses)


def rosen_np(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2, dtype=np.float32)


def rosen_grad_np(x):
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return g.astype(np.float32)


def test_sgd_matches_numpy_gradient_descent():
    p = problems.get("rosenbrock", dim=3)
    lrs = [1e-4, 5e-4]
    df = bench.run_cell(p, "sgd", hparams={"learning_rate": lrs}, seeds=[0, 5], steps=60, log_every=3)
    assert len(df) == 2 * 2 * 21
    for i, lr in enumerate(lrs):
        for seed in (0, 5):
            x0 = np.asarray(p.init(jax.random.split(jax.random.key(seed))[0]))
            ref = numpy_gd(x0, lr, 60, rosen_grad_np, rosen_np)[::3]
            got = df[(df.hp_index == i) & (df.seed == seed)].sort_values("step")
            np.testing.assert_array_equal(got["step"].to_numpy(), np.arange(0, 61, 3))
            # float32 round-off of two implementations of the same arithmetic: relative 1e-4
            np.testing.assert_allclose(got["loss"].to_numpy(), ref, rtol=1e-4)
            # the runner's own oracle calls: one value and one gradient per step, no HVPs
            np.testing.assert_array_equal(got["n_grads"].to_numpy(), np.arange(0, 61, 3))
            assert (got["n_hvps"] == 0).all()


def test_first_step_at_target_is_exact_for_deterministic_problems():
    # GD on the strict saddle from the runner's init, compared with numpy: the first step at
    # which f <= f_target is known exactly because the loss is evaluated every step.
    p = problems.get("strict_saddle")
    lr = 0.1
    df = bench.run_cell(p, "sgd", hparams={"learning_rate": lr}, seeds=3, steps=200, log_every=50)
    runs = bench.summarize(df)

    def f(x):
        return np.float32(x[0] ** 2 + 0.25 * x[1] ** 4 - 0.5 * x[1] ** 2)

    def g(x):
        return np.asarray([2 * x[0], x[1] ** 3 - x[1]], np.float32)

    for seed in range(3):
        x0 = np.asarray(p.init(jax.random.split(jax.random.key(seed))[0]))
        losses = numpy_gd(x0, lr, 200, g, f)
        first = int(np.argmax(losses <= p.reference.f_target))
        row = runs[runs.seed == seed].iloc[0]
        assert abs(row.hit_step - first) <= 1  # float32 round-off may move a boundary crossing by one step
        assert row.status == "converged"
        assert row.hit_grads == row.hit_step
        # relative targets f* + tau (f_0 - f*) from the run's own start value, also per step
        assert row.f_ref == p.reference.f_star == -0.25
        for tau in schema.TAUS:
            at = losses <= -0.25 + tau * (losses[0] + 0.25)
            assert at.any()  # 200 steps of GD at 0.1 get within 1e-5 of the way from f_0 to f*
            assert abs(row[schema.tau_column("hit_step", tau)] - int(np.argmax(at))) <= 1
            assert row[schema.tau_column("hit_grads", tau)] == row[schema.tau_column("hit_step", tau)]
            assert row[schema.tau_column("hit_hvps", tau)] == 0
        # escape from the saddle at the origin (f_s = 0): a tenth of the way down to f* = -0.25
        assert schema.escape_threshold(p) == -0.025
        assert abs(row[schema.tau_column("hit_step", "escape")] - int(np.argmax(losses <= -0.025))) <= 1
        # the end point is the minimum (0, +-1): Hessian diag(2, 2)
        assert row.final_lambda_min == pytest.approx(2.0, abs=1e-3)
        assert row.final_lambda_max == pytest.approx(2.0, abs=1e-3)


def test_one_compile_per_cell_whatever_the_grid(compiles):
    p = problems.get("rosenbrock", dim=4)
    bench.run_cell(p, "adam", hparams={"learning_rate": list(np.geomspace(1e-4, 1.0, 100))}, seeds=32,
                   steps=40, log_every=10)
    # the cell program and the end-point landscape program: 100 x 32 runs, two compiles
    assert compiles.n == 2
    compiles.n = 0
    # other hyperparameter values and other seeds of the same shapes: no compile at all
    df = bench.run_cell(p, "adam", hparams={"learning_rate": list(np.geomspace(2e-4, 0.5, 100))},
                        seeds=list(range(100, 132)), steps=40, log_every=10)
    assert compiles.n == 0
    assert df["compile_cached"].all()
    assert df["hp_learning_rate"].nunique() == 100 and df["seed"].nunique() == 32


def test_same_seed_same_bits():
    a = bench.run_cell("strict_saddle", "adam", seeds=[7, 8], steps=20, log_every=5)
    program.clear_caches()
    b = bench.run_cell("strict_saddle", "adam", seeds=[7, 8], steps=20, log_every=5)
    np.testing.assert_array_equal(a["loss"].to_numpy(), b["loss"].to_numpy())


def test_divergence_is_data_not_an_exception():
    df = bench.run_cell("rosenbrock(dim=2)", "sgd", hparams={"learning_rate": [1.0, 1e-4]}, seeds=2, steps=50,
                        log_every=10)
    runs = bench.summarize(df)
    assert set(runs[runs.hp_learning_rate == 1.0].status) == {"diverged"}
    assert (runs[runs.hp_learning_rate == 1.0].diverged_step >= 0).all()
    assert "diverged" not in set(runs[runs.hp_learning_rate == 1e-4].status)


def test_gd_started_on_the_stable_manifold_is_classified_stalled_at_saddle():
    # f = x^2 + y^4/4 - y^2/2 from (x, 0): GD converges to the saddle (0, 0), Hessian diag(2, -1).
    p = problems.get("strict_saddle")
    final = np.asarray([1e-6, 0.0])
    end = landscape.end_points(p, jax.numpy.asarray(final, "float32")[None, None])
    assert end.lambda_min[0, 0] == pytest.approx(-1.0, abs=1e-5)
    assert end.lambda_max[0, 0] == pytest.approx(2.0, abs=1e-5)
    status = schema.classify(np.asarray([0.0]), np.asarray([2e-6]), np.asarray([False]), end.lambda_min[0],
                             end.lambda_max[0], p.reference.f_target, probe_drop=end.probe_drop[0])
    assert status[0] == "stalled_at_saddle"


def test_classify_reads_curvature_then_the_probe():
    # one run per row: (final loss, gradient norm, diverged, lambda_min, lambda_max, probe drop) -> status
    rows = [
        (-1.0, 1e-6, False, 1.0, 2.0, 1.0, "converged"),  # at the target (-0.5): whatever the end point
        (np.nan, np.nan, True, np.nan, np.nan, np.nan, "diverged"),
        (1.0, 1e-2, False, 1.0, 2.0, 0.0, "budget_exhausted"),  # still moving
        (1.0, 1e-6, False, -1e-2, 2.0, -1.0, "stalled_at_saddle"),  # -1e-2 < -1e-3 * max(1, 2)
        (1.0, 1e-6, False, 0.0, 2.0, 1e-3, "stalled_at_degenerate_saddle"),  # 1e-3 > 1e-5 |f|
        (1.0, 1e-6, False, -1e-3, 2.0, 1e-3, "stalled_at_degenerate_saddle"),  # -1e-3 is not significant
        (1.0, 1e-6, False, 0.0, 2.0, 5e-6, "stalled_at_minimum"),  # a drop of round-off size
        (1.0, 1e-6, False, 1.0, 2.0, -1e-4, "stalled_at_minimum"),  # PD, no descent found
        (0.0, 1e-6, False, 0.0, 0.0, 1e-12, "stalled_at_degenerate_saddle"),  # f = 0: any drop is descent
        (1.0, 1e-6, False, 0.0, 2.0, np.nan, "stalled_at_minimum"),  # no probe value: no descent found
    ]
    cols = [np.asarray(c) for c in zip(*rows, strict=True)]
    f, g, div, lo, hi, drop, expected = cols
    status = schema.classify(f.astype(float), g.astype(float), div.astype(bool), lo.astype(float), hi.astype(float),
                             -0.5, probe_drop=drop.astype(float))
    assert list(status) == list(expected)
    assert schema.STATUSES.index("stalled_at_degenerate_saddle") == schema.STATUSES.index("stalled_at_saddle") + 1


def test_gd_nearing_the_degenerate_saddle_is_classified_as_such():
    # x^2 + y^3 + y^4 by GD (lr 0.1): starts with y0 < 0 reach the minimum (0, -3/4) and the
    # target; starts with y0 > 0 creep towards the origin, y ~ 1 / (3 lr t) ~ 8e-4 after 4000
    # steps, gradient 3y^2 ~ 2e-6 (stalled) and Hessian diag(2, 6y) positive definite, which the
    # second-order test alone called a minimum. The probe sees f fall past the origin:
    # drop (r - y)^3 - (r - y)^4 + y^3 ~ 8.8e-4 at r = 0.1.
    p = problems.get("degenerate_saddle")
    df = bench.run_cell(p, "sgd", hparams={"learning_rate": 0.1}, seeds=8, steps=4000, log_every=1000)
    runs = bench.summarize(df)
    y0 = np.asarray([float(p.init(jax.random.split(jax.random.key(s))[0])[1]) for s in runs.seed])
    assert 0 < (y0 > 0).sum() < len(y0)  # both kinds of start among the 8 seeds
    assert set(runs.status[y0 < 0]) == {"converged"}
    stalled = runs[y0 > 0]
    assert set(stalled.status) == {"stalled_at_degenerate_saddle"}
    assert (stalled.final_lambda_min > 0).all() and (stalled.final_grad_norm <= schema.GRAD_TOL).all()
    np.testing.assert_allclose(stalled.final_probe_drop, 0.1**3 - 0.1**4, rtol=0.05)
    assert schema.FINAL_PROBE_DROP in schema.RUN_COLUMNS and df[schema.FINAL_PROBE_DROP].dtype == np.float64


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(steps=10, log_every=3), "multiple of log_every"),
        (dict(steps=0, log_every=1), "positive"),
        (dict(hparams={"learning_rat": 0.1}), "unknown hyperparameter"),
        (dict(hparams={"learning_rate": []}), "empty"),
        (dict(seeds=[]), "at least one seed"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_bad_input_fails_before_running(kwargs, err):
    with pytest.raises((ValueError, TypeError), match=err):
        bench.run_cell("strict_saddle", "sgd", **{"steps": 10, "log_every": 5, **kwargs})


def test_unknown_optimizer_names_the_valid_ones():
    with pytest.raises(KeyError, match="valid optimizers: .*adam"):
        bench.run_cell("strict_saddle", "adamx", steps=10, log_every=5)


def test_blocked_spin_glass_field_runs_inside_the_runners_program():
    # spin_glass(p=3, n=128) at 64 seeds takes the blocked field (problems/spin_glass.py), whose
    # vmap rules must not close over the coupling tensor: the runner passes it as an argument of
    # the program, and the rules run inside its scans (a closure leaked the tracer). Newton: the
    # gradient (the field's value rule) and HVPs (its tangent rule), under the hp x seed vmaps.
    prob = problems.get("spin_glass", p=3, n=128, instance=0)
    seeds = list(range(64))
    df = bench.run_cell(prob, "newton", seeds=seeds, steps=2, log_every=1)
    assert np.isfinite(df[schema.LOSS]).all() and (df[df[schema.STEP] == 2][schema.N_HVPS] > 0).all()
    # the logged step-0 losses are the start points' energies, evaluated one point at a time
    inits = jax.vmap(lambda s: prob.init(jax.random.split(jax.random.key(s))[0]))(np.asarray(seeds, np.uint32))
    start = jax.jit(jax.vmap(prob.full_loss))(inits)
    logged = df[df[schema.STEP] == 0].sort_values(schema.SEED)[schema.LOSS].to_numpy()
    np.testing.assert_allclose(logged, np.asarray(start), rtol=0, atol=1e-5)
