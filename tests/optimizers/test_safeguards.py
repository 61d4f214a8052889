"""No silent blow-up: the methods with an inner solver, at their defaults, on hard curvature.

Each runs 200 steps at its registered defaults on Rosenbrock from (-1.2, 1) (curvature up to
~10^3) and on the ill-conditioned quadratic (x^2 + 10^3 y^2)/2 from (1, 1), and on the benign
quadratic (x^2 + y^2)/2, as three lanes of one program. Every iterate must stay finite and the
final loss must not exceed the initial one.

Where a safeguard fires, a state field says so: stochastic cubic regularization's
``num_fallbacks`` (its gradient-descent sub-solver, with step 0.05, diverges against curvature
above 2/0.05 = 40, and the Cauchy step replaces it; without the safeguard Rosenbrock goes from
a loss of ~4 to NaN in one update) must fire on Rosenbrock and on the ill-conditioned quadratic
and never on the benign one, where the sub-solver is stable and the update is the paper's; ARC's
``num_rejected`` (the ratio test) must fire on Rosenbrock.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers

STEPS = 200
SECOND_ORDER = [n for n in optimizers.names() if optimizers.spec(n).needs_hvp]
LANES = ["rosenbrock", "ill_conditioned", "benign"]


def _loss(p, coef):
    rosenbrock = 100.0 * (p[1] - p[0] ** 2) ** 2 + (1.0 - p[0]) ** 2
    return coef[0] * rosenbrock + coef[1] * 0.5 * (p[0] ** 2 + coef[2] * p[1] ** 2)


X0 = jnp.array([[-1.2, 1.0], [1.0, 1.0], [1.0, 1.0]], jnp.float32)
COEF = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1e3], [0.0, 1.0, 1.0]], jnp.float32)


def _program(name):
    tx = optimizers.get(name)

    def one(lane):
        x0, coef = lane
        f = functools.partial(_loss, coef=coef)

        def body(carry, t):
            x, state = carry
            v, g = jax.value_and_grad(f)(x)
            u, state = tx.update(g, state, x, value=v, value_fn=f, key=jax.random.fold_in(jax.random.key(1), t))
            x = optax.apply_updates(x, u)
            return (x, state), jnp.all(jnp.isfinite(x))

        (x, state), finite = jax.lax.scan(body, (x0, tx.init(x0)), jnp.arange(STEPS))
        return f(x0), f(x), jnp.all(finite), state

    return lambda x0, coef: jax.lax.map(one, (x0, coef))


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_defaults_do_not_blow_up(name):
    # checks finiteness, not speed: compiled without XLA's LLVM optimizations (twice as fast to compile)
    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    f0, f1, finite, state = jax.jit(_program(name)).lower(X0, COEF).compile(compiler_options=fast)(X0, COEF)
    f0, f1 = np.asarray(f0), np.asarray(f1)
    assert np.all(np.asarray(finite)), f"{name}: a non-finite iterate on {LANES}: {np.asarray(finite)}"
    assert np.all(f1 <= f0), f"{name}: loss rose: {dict(zip(LANES, zip(f0, f1)))}"
    if name == "stochastic_cubic":
        fired = dict(zip(LANES, np.asarray(optax.tree.get(state, "num_fallbacks")).tolist()))
        assert fired["rosenbrock"] > 0 and fired["ill_conditioned"] > 0 and fired["benign"] == 0, fired
    if name == "cubic_reg":
        rejected = dict(zip(LANES, np.asarray(optax.tree.get(state, "num_rejected")).tolist()))
        assert rejected["rosenbrock"] > 0, rejected
        # the adaptive sigma is named apart from the hyperparameter sigma (sigma_0)
        assert np.all(np.asarray(optax.tree.get(state, "sigma")) == 1.0)
        assert np.asarray(optax.tree.get(state, "adaptive_sigma")).shape == (3,)


def test_stochastic_cubic_safeguard_fires_in_the_valley():
    """One update at the defaults on Rosenbrock's valley, where |g| < l^2/rho = 1 sends it to the
    gradient-descent sub-solver (step 0.05 against curvature ~800: it diverges): the safeguard
    replaces the step, counts it, and the update is finite and decreases the loss."""
    f = functools.partial(_loss, coef=COEF[0])
    x = jnp.array([0.9, 0.8105], jnp.float32)
    tx = optimizers.get("stochastic_cubic")
    v, g = jax.value_and_grad(f)(x)
    assert float(jnp.linalg.norm(g)) < 1.0
    u, state = jax.jit(lambda s: tx.update(g, s, x, value=v, value_fn=f, key=jax.random.key(0)))(tx.init(x))
    assert np.all(np.isfinite(np.asarray(u)))
    assert int(optax.tree.get(state, "num_fallbacks")) == 1
    assert int(optax.tree.get(state, "last_branch")) == 3
    assert float(f(x + u)) < float(v)


def test_saddle_free_newton_damping_line_search_takes_the_best_damping():
    # f(y) = sqrt(1 + y^2) at y = 10: g = y / sqrt(1 + y^2) = 0.995, H = (1 + y^2)^(-3/2) = 9.85e-4. With k = 1
    # Lanczos is exact in 1-D, so the step of damping lam is g / (H + lam) (Dauphin et al.'s Algorithm 1 picks
    # the lam whose unit step lands lowest). At the smallest damping 1e-3 the step (~500) overshoots to
    # f ~ 490; the grid 1e-3 * 10^j, j < 6, lands lowest at lam = 0.1 (y ~ 0.05).
    def f(p):
        return jnp.sqrt(1.0 + p[0] ** 2)

    y = 10.0
    g, h = y / np.sqrt(1 + y * y), (1 + y * y) ** -1.5
    lams = 1e-3 * 10.0 ** np.arange(6)
    best = lams[np.argmin([np.sqrt(1 + (y - g / (h + lam)) ** 2) for lam in lams])]
    assert best == pytest.approx(0.1)
    x = jnp.array([y], jnp.float32)
    for search, lam, damped, values in ((6, best, 1, 6), (1, 1e-3, 0, 0)):
        tx = optimizers.get("saddle_free_newton", k=1, damping_search=search)
        state = tx.init(x)
        u, state = tx.update(jax.grad(f)(x), state, x, value=f(x), value_fn=f)
        np.testing.assert_allclose(np.asarray(u), [-g / (h + lam)], rtol=1e-4)
        assert int(optax.tree.get(state, "num_damped")) == damped
        assert int(optimizers.oracle_counts(state)["values"]) == values
