"""Extreme Hessian eigenvalues: the dense path and the Lanczos path against numpy's eigvalsh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import landscape


def _quadratic(a):
    a = jnp.asarray(a, jnp.float32)
    return lambda x: 0.5 * x @ (a @ x)


def test_dense_path_matches_numpy_on_a_random_quadratic():
    # f = x^T A x / 2 has Hessian A everywhere; dim 30 <= DENSE_MAX, so the Hessian is formed.
    rng = np.random.default_rng(0)
    m = rng.standard_normal((30, 30))
    a = (m + m.T) / 2
    ref = np.linalg.eigvalsh(a)
    lo, hi = jax.jit(lambda x: landscape.extreme_eigenvalues(_quadratic(a), x))(jnp.ones(30))
    # float32 eigvalsh of a matrix with entries O(1) and norm ~8: error ~ 30 * eps * |A| << 1e-4
    assert float(lo) == pytest.approx(ref[0], abs=1e-4)
    assert float(hi) == pytest.approx(ref[-1], abs=1e-4)


def test_lanczos_path_matches_numpy_on_isolated_extremes():
    # dim 200 > DENSE_MAX: Lanczos, 20 iterations. Spectrum: -1 and 5 isolated, the rest in
    # [0, 1] in a random basis. Kaniel-Paige: after k = 20 steps the error in lambda_max is at
    # most (lambda_max - lambda_min) (tan(v0, u_max) / T_19(1 + 2 gamma))^2 with
    # gamma = (5 - 1) / (1 + 1) = 2, T_19(5) ~ 1e18, tan^2 ~ dim = 200: far below float32
    # rounding, so the float32 Lanczos error (~1e-6 relative) is what the 1e-4 covers; the
    # same for lambda_min (gamma = 1 / 6, T_19(4/3) ~ 1e7).
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    eig = np.concatenate([[-1.0, 5.0], rng.uniform(0.0, 1.0, 198)])
    a = (q * eig) @ q.T
    assert 200 > landscape.DENSE_MAX
    lo, hi = jax.jit(lambda x: landscape.extreme_eigenvalues(_quadratic(a), x))(jnp.ones(200))
    assert float(lo) == pytest.approx(-1.0, abs=1e-4)
    assert float(hi) == pytest.approx(5.0, abs=1e-4)


def test_paths_agree_on_a_pytree_of_parameters():
    # the same 12-parameter point as a dict of two arrays: dense (default) and Lanczos (k = 12)
    def f(p):
        x = jnp.concatenate([p["a"].ravel(), p["b"]])
        return jnp.sum(jnp.sin(x) * x**2) + jnp.prod(x[:3])

    p = {"a": jnp.linspace(-1.0, 1.0, 8).reshape(2, 4), "b": jnp.asarray([0.3, -0.7, 1.1, 2.0])}
    dense = jax.jit(lambda q: landscape.extreme_eigenvalues(f, q))(p)
    lanczos = jax.jit(lambda q: landscape.extreme_eigenvalues(f, q, k=12))(p)
    np.testing.assert_allclose(np.asarray(dense), np.asarray(lanczos), atol=1e-4)
