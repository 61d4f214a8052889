"""``CachedValueGrad``: the value and gradient an optimizer leaves known at the point it returns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers.base import CachedValueGrad


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _steps(name, n, x0, **hparams):
    tx = optimizers.get(name, **hparams)
    step = jax.jit(lambda s, x: tx.update(jax.grad(_rosenbrock)(x), s, x, value=_rosenbrock(x),
                                          value_fn=_rosenbrock, key=jax.random.key(0)))
    x, state = x0, tx.init(x0)
    assert not bool(optimizers.cached_value_and_grad(state).valid_value)
    for _ in range(n):
        u, new = step(state, x)
        yield x, optax.apply_updates(x, u), state, new
        x, state = optax.apply_updates(x, u), new


def test_lbfgs_caches_the_line_search_value_and_gradient_at_the_returned_point():
    for _, x_new, _, state in _steps("lbfgs", 12, jnp.array([-1.2, 1.0, -1.2, 1.0])):
        c = optimizers.cached_value_and_grad(state)
        assert bool(c.valid_value) and bool(c.valid_grad)
        np.testing.assert_allclose(float(c.value), float(_rosenbrock(x_new)), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(np.asarray(c.grad), np.asarray(jax.grad(_rosenbrock)(x_new)), rtol=1e-5, atol=1e-6)


def test_cubic_reg_caches_the_trial_value_or_the_unmoved_point():
    seen = set()
    for x, x_new, _, state in _steps("cubic_reg", 12, jnp.array([-1.2, 1.0, -1.2]), sigma=1e-3):
        c = optimizers.cached_value_and_grad(state)
        accepted = bool(state.inner_state.last_accepted)
        seen.add(accepted)
        assert bool(c.valid_value) and bool(c.valid_grad) == (not accepted)
        np.testing.assert_allclose(float(c.value), float(_rosenbrock(x_new)), rtol=1e-6)
        if not accepted:
            np.testing.assert_array_equal(np.asarray(x_new), np.asarray(x))
            # the gradient the step got (jitted: XLA's fused multiply-adds round differently from eager)
            np.testing.assert_allclose(np.asarray(c.grad), np.asarray(jax.grad(_rosenbrock)(x)), rtol=1e-5)
    assert seen == {True, False}


def test_cached_value_and_grad_is_found_anywhere_and_only_once():
    c = CachedValueGrad.empty({"w": jnp.ones(3)})
    assert optimizers.cached_value_and_grad({"a": [1.0, (c,)]}) is c
    assert optimizers.cached_value_and_grad(optimizers.get("adam").init(jnp.ones(3))) is None
    with pytest.raises(ValueError, match="at most one"):
        optimizers.cached_value_and_grad((c, c))
