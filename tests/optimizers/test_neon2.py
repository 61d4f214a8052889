"""Neon2 finds negative curvature with gradients only; SGD + Neon2 and Natasha2 step along it.

On the strict saddle f(x, y) = x^2 + y^4/4 - y^2/2 (``problems.get("strict_saddle")``), whose
Hessian at the origin is diag(2, -1) (L = 2, lambda_min = -1), Neon2 with eta = 1/L = 0.5 is, to
O(|z|^3), the power method on I - eta H = diag(0, 1.5): the x component of the random start
vanishes after one step and the y component grows by exactly 1.5 per step (the y^3 of the
gradient adds a relative 1e-4 at |z| <= 1e-2). So from a start of radius sigma = 1e-4 it reaches
radius r = 1e-2 at t = ceil(log(r / |z0_y|) / log 1.5) (one more where round-off lands on the
boundary), within the paper's count T(delta = 0.5, p = 0.01) = ceil(log(r sqrt(2) / (sigma p)) /
log(1.25)) = 43, and the direction it returns has curvature v.Hv = -1 < -delta (to 1e-6: the
x component is float32 round-off). At the minima (0, +-1), Hessian diag(2, 2), I - eta H = 0: the
search runs all T steps and finds nothing. Gradient calls are counted by wrapping the loss and
running eagerly; the recorded counts must be those calls.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import optimizers
import problems
from optimizers.neon2 import flat_grad_fn, neon2_iterations, neon2_search

P = problems.get("strict_saddle")
ETA, DELTA, SIGMA, RADIUS, PROB = 0.5, 0.5, 1e-4, 1e-2, 0.01
T = neon2_iterations(2, ETA, DELTA, SIGMA, RADIUS, PROB)
KEYS = jax.random.split(jax.random.key(0), 64)


def _search(x0):
    f = P.full_loss
    g0 = jax.grad(f)(x0)
    grad_fn = flat_grad_fn(f, lambda v: v)
    run = jax.jit(jax.vmap(lambda k: neon2_search(grad_fn, x0, g0, k, ETA, SIGMA, RADIUS, T)))
    return jax.tree.map(np.asarray, run(KEYS))


def test_paper_iteration_count():
    assert T == math.ceil(math.log(RADIUS * math.sqrt(2) / (SIGMA * PROB)) / math.log1p(ETA * DELTA)) == 43


def test_finds_negative_curvature_at_the_saddle_with_gradients_only():
    x0 = jnp.zeros(2, jnp.float32)
    hess = np.asarray(jax.hessian(P.full_loss)(x0), np.float64)
    np.testing.assert_array_equal(hess, np.diag([2.0, -1.0]))  # the closed form
    res = _search(x0)
    assert res.found.all()
    curv = np.einsum("ki,ij,kj->k", res.direction, hess, res.direction)
    assert np.all(curv < -DELTA), curv
    np.testing.assert_allclose(curv, -1.0, atol=1e-6)
    # the start each key drew (neon2_search's own draw), and the step where 1.5^t |z0_y| >= r
    z0 = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (2,), jnp.float32))(KEYS))
    z0_y = SIGMA * np.abs(z0[:, 1]) / np.linalg.norm(z0, axis=1)
    t_closed = np.ceil(np.log(RADIUS / z0_y) / np.log(1.5))
    assert np.all((res.iterations == t_closed) | (res.iterations == t_closed + 1)), (res.iterations, t_closed)
    assert np.all(res.iterations <= T)


def test_finds_nothing_at_a_minimum():
    res = _search(jnp.array([0.0, 1.0], jnp.float32))
    assert not res.found.any()
    assert np.all(res.iterations == T)


def _counted_step(name, hparams, x0):
    """One eager update at x0 with gradient calls counted; (update, state, gradient calls)."""
    calls = [0]

    def f(x):
        if isinstance(x, jax.core.Tracer):
            calls[0] += 1
        return P.full_loss(x)

    tx = optimizers.get(name, **hparams)
    with jax.disable_jit():
        v, g = jax.value_and_grad(P.full_loss)(x0)
        u, state = tx.update(g, tx.init(x0), x0, value=v, value_fn=f, key=jax.random.key(3))
    return u, state, calls[0]


HP = {"neon_lr": ETA, "delta": DELTA, "sigma": SIGMA, "radius": RADIUS, "neon_iters": T, "hessian_lipschitz": 1.0}


def test_sgd_neon2_steps_along_negative_curvature_and_counts_its_gradients():
    x0 = jnp.zeros(2, jnp.float32)
    u, state, calls = _counted_step("neon2_sgd", HP, x0)
    # the negative-curvature step +-(delta / L2) v, v ~ +-e_y: f falls from 0 to 0.5^4/4 - 0.5^3 = -0.109
    np.testing.assert_allclose(np.abs(np.asarray(u)), [0.0, DELTA], atol=1e-5)
    assert float(P.full_loss(x0 + u)) < -0.1
    inner = state.inner_state
    assert int(inner.num_escapes) == 1 and not bool(inner.certified)
    assert 1 <= calls <= T and optimizers.oracle_counts(state)["grads"] == calls


def test_natasha2_steps_along_negative_curvature_and_else_takes_proximal_steps():
    x0 = jnp.zeros(2, jnp.float32)
    u, state, calls = _counted_step("natasha2", HP, x0)
    np.testing.assert_allclose(np.abs(np.asarray(u)), [0.0, DELTA], atol=1e-5)
    assert optimizers.oracle_counts(state)["grads"] == calls >= 1
    # far from stationary points: inner_steps gradient steps on f(y) + delta |y - x|^2, by hand
    x1 = jnp.array([0.5, 0.5], jnp.float32)
    lr = 0.1
    u, state, calls = _counted_step("natasha2", {**HP, "learning_rate": lr, "inner_steps": 3}, x1)
    grad = jax.grad(P.full_loss)
    y = x1 - lr * grad(x1)
    for _ in range(2):
        y = y - lr * (grad(y) + 2 * DELTA * (y - x1))
    np.testing.assert_allclose(np.asarray(x1 + u), np.asarray(y), rtol=1e-6)
    assert calls == optimizers.oracle_counts(state)["grads"] == 2  # the first inner gradient is the step's
