"""Damped Newton, saddle-free Newton and negative-curvature descent against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers.negative_curvature import nc_descent


def run(tx, f, x0, steps, seed=0):
    """``steps`` updates of ``tx`` on ``f`` from ``x0``; returns (x, state, f per step, |g| per step)."""

    def step(carry, t):
        x, s = carry
        v, g = jax.value_and_grad(f)(x)
        key = jax.random.fold_in(jax.random.key(seed), t)
        u, s = tx.update(g, s, x, value=v, value_fn=f, key=key)
        return (optax.apply_updates(x, u), s), (v, optax.tree.norm(g))

    @jax.jit
    def go(x0):
        (x, s), (fs, gs) = jax.lax.scan(step, (x0, tx.init(x0)), jnp.arange(steps))
        return x, s, fs, gs

    return go(x0)


def update(tx, g, p, f, with_state=False):
    """One jitted update from the initial state (no key)."""
    u, s = jax.jit(lambda g, p: tx.update(g, tx.init(p), p, value_fn=f))(g, p)
    return (u, s) if with_state else u


def hvps(state):
    return int(optimizers.oracle_counts(state)["hvps"])


def saddle(p):  # 5x^2 - y^2 + y^4: saddle at 0, minima (0, +-1/sqrt 2) with f = -1/4
    x, y = p[0], p[1]
    return 5 * x**2 - y**2 + y**4


def strict_saddle(p):  # x^2 + y^4/4 - y^2/2: saddle at 0 (Hessian diag(2, -1)), minima (0, +-1), f = -1/4
    x, y = p[0], p[1]
    return x**2 + y**4 / 4 - y**2 / 2


def test_newton_is_attracted_to_the_saddle_sfn_escapes():
    x0 = jnp.array([0.1, 0.05], jnp.float32)
    x, state, _, _ = run(optimizers.get("newton", damping=0.0), saddle, x0, 30)
    assert abs(float(x[0])) < 1e-4
    assert abs(float(saddle(x))) < 1e-6
    # the gradient is 0 exactly once at the saddle: CG then spends nothing
    assert hvps(state) <= 2 * 30

    x, state, _, _ = run(optimizers.get("saddle_free_newton", damping=0.0), saddle, x0, 30)
    assert abs(float(saddle(x)) + 0.25) < 1e-5
    assert abs(abs(float(x[1])) - 2**-0.5) < 1e-3


def _quadratic():
    # f(w, b) = 1/2 z.A z - c.z in the flat coordinates z = (w.ravel(), b): a pytree problem
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    A = (Q @ np.diag([1.0, 1.0, 1.0, 4.0, 4.0, 4.0]) @ Q.T).astype(np.float32)
    c = rng.standard_normal(6).astype(np.float32)

    def f(p):
        z = jnp.concatenate([p["w"].ravel(), p["b"]])
        return 0.5 * z @ jnp.asarray(A) @ z - jnp.asarray(c) @ z

    p0 = {"w": jnp.asarray(rng.standard_normal((2, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    return f, p0, np.linalg.solve(A.astype(np.float64), c.astype(np.float64))


@pytest.mark.parametrize("name, hp", [
    ("newton", {"damping": 0.0, "cg_iters": 6, "cg_tol": 1e-5}),
    ("saddle_free_newton", {"damping": 0.0, "k": 9}),
])
def test_one_step_solves_a_convex_quadratic(name, hp):
    f, p0, z_star = _quadratic()
    p, state, _, _ = run(optimizers.get(name, **hp), f, p0, 1)
    assert p["w"].dtype == jnp.float32 and p["w"].shape == (2, 2)
    z = np.concatenate([np.ravel(p["w"]), np.asarray(p["b"])])
    np.testing.assert_allclose(z, z_star, atol=2e-5 * np.abs(z_star).max())
    # A has two distinct eigenvalues: CG converges and Lanczos breaks down after 2 HVPs
    assert hvps(state) == 2


def test_sfn_equals_newton_when_the_hessian_is_positive_definite():
    f, p0, _ = _quadratic()
    g = jax.grad(f)(p0)
    newton = optimizers.get("newton", damping=0.1, cg_iters=6, cg_tol=1e-7)
    sfn = optimizers.get("saddle_free_newton", damping=0.1, k=6)
    u1 = update(newton, g, p0, f)
    u2 = update(sfn, g, p0, f)
    for a, b in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_sfn_flips_negative_curvature_exactly():
    # H = diag(10, -2) at the origin of 5x^2 - y^2 + y^4: SFN step = -(g_x / 10, g_y / 2)
    p = jnp.array([0.0, 0.0], jnp.float32)
    g = jnp.array([1.0, 2.0], jnp.float32)  # an arbitrary incoming direction
    tx = optimizers.get("saddle_free_newton", damping=0.0, learning_rate=1.0, k=4)
    u, state = update(tx, g, p, saddle, with_state=True)
    np.testing.assert_allclose(u, [-0.1, -1.0], rtol=1e-5)
    assert hvps(state) == 2  # n = 2 < k: Lanczos stops at the invariant space
    u = update(optimizers.get("newton", damping=0.0, cg_iters=4), g, p, saddle)
    np.testing.assert_allclose(u, [-0.1, 1.0], rtol=1e-5)  # Newton climbs towards the saddle in y


def test_nc_descent_escapes_an_exact_saddle_where_gd_stays():
    x0 = jnp.array([1e-3, 0.0], jnp.float32)
    x, _, _, _ = run(optimizers.get("sgd", learning_rate=0.1), strict_saddle, x0, 60)
    assert float(x[1]) == 0.0 and abs(float(strict_saddle(x))) < 1e-6

    steps = 40
    tx = optimizers.get("nc_descent", learning_rate=0.1, grad_threshold=1e-2)
    x, state, fs, gs = run(tx, strict_saddle, x0, steps)
    # first step: lambda_min = -1, u = +-e_y, step |lambda| / L = 1 lands on y = +-1
    assert abs(float(fs[1]) - float(strict_saddle(jnp.array([1e-3, 1.0])))) < 1e-6
    assert abs(abs(float(x[1])) - 1.0) < 1e-5
    assert abs(float(strict_saddle(x)) + 0.25) < 1e-5
    # every gradient here is below the threshold, so Lanczos runs each step: n = 2 HVPs at the
    # saddle, then 1 or 2 (the Hessian at (0, +-1) is 2 I, every start vector is an eigenvector)
    assert bool(jnp.all(gs <= 1e-2))
    assert steps <= hvps(state) <= 2 * steps
    _, state, _, _ = run(tx, strict_saddle, x0, 1)
    assert hvps(state) == 2


def test_nc_descent_counts_only_the_steps_that_ran_lanczos():
    def f(p):  # saddle Hessian diag(4, -1); minima (0, +-1) with Hessian diag(4, 2), f = -1/4
        return 2 * p[0] ** 2 + p[1] ** 4 / 4 - p[1] ** 2 / 2

    steps, thr = 60, 1e-4
    tx = optimizers.get("nc_descent", learning_rate=0.1, grad_threshold=thr)
    x, state, _, gs = run(tx, f, jnp.array([1.0, 0.0], jnp.float32), steps)
    small = int(jnp.sum(gs <= thr))
    assert 0 < small < steps
    # gradient steps cost nothing; each Lanczos run spans R^2 (two distinct eigenvalues)
    assert hvps(state) == 2 * small
    assert abs(float(f(x)) + 0.25) < 1e-5


def test_nc_descent_counts_per_problem_under_vmap():
    tx = optimizers.get("nc_descent", learning_rate=0.1, grad_threshold=1e-2)
    xs = jnp.array([[1.0, 0.0], [1e-3, 0.0]], jnp.float32)

    def one(x):
        g = jax.grad(strict_saddle)(x)
        u, s = tx.update(g, tx.init(x), x, value_fn=strict_saddle, key=jax.random.key(0))
        return u, optimizers.oracle_counts(s)["hvps"]

    u, counts = jax.jit(jax.vmap(one))(xs)
    assert counts.tolist() == [0, 2]
    np.testing.assert_allclose(u[0], [-0.2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(jnp.abs(u[1]), [0.0, 1.0], atol=1e-5)


def test_nc_descent_direction_descends_without_key():
    # g = (0, 1e-4) at (0, -1e-4): u = +-e_y must be signed against g; no key: a fixed one
    p = jnp.array([0.0, -1e-4], jnp.float32)
    g = jax.grad(strict_saddle)(p)
    with pytest.warns(UserWarning, match="^nc_descent: update called without key"):
        u = update(nc_descent(grad_threshold=1.0), g, p, strict_saddle)
    assert float(jnp.vdot(u, g)) < 0 and float(u[1]) < -0.9


@pytest.mark.parametrize("name", ["newton", "saddle_free_newton"])
def test_rosenbrock_with_defaults(name):
    def rosen(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x, _, fs, _ = run(optimizers.get(name), rosen, jnp.array([-1.2, 1.0], jnp.float32), 30)
    assert float(rosen(x)) < 1e-8


def test_needs_value_fn_and_registry():
    for name in ("newton", "saddle_free_newton", "nc_descent"):
        sp = optimizers.spec(name)
        assert sp.needs_hvp and sp.needs_value_fn and "learning_rate" in sp.search_space
        tx = optimizers.get(name)
        p = jnp.zeros(2)
        with pytest.raises(ValueError, match="value_fn"):
            tx.update(jnp.ones(2), tx.init(p), p)
    assert optimizers.spec("nc_descent").uses_key
    assert optimizers.spec("newton").static == ("cg_iters",)


def test_nc_descent_at_an_exact_critical_point_the_key_picks_the_side():
    p = jnp.zeros(2, jnp.float32)  # g = 0 exactly: no sign from the gradient
    tx = optimizers.get("nc_descent")

    def one(key):
        u, s = tx.update(jnp.zeros(2), tx.init(p), p, value_fn=strict_saddle, key=key)
        return u, optimizers.oracle_counts(s)["hvps"]

    u, counts = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), 8))
    np.testing.assert_allclose(jnp.abs(u), np.tile([0.0, 1.0], (8, 1)), atol=1e-5)
    assert 0 < int(jnp.sum(u[:, 1] > 0)) < 8  # both sides occur across keys
    assert counts.tolist() == [2] * 8
