"""optimizers.linalg against dense numpy linear algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optimizers import linalg


def _sym(n, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    return ((a + a.T) / 2).astype(dtype), rng.standard_normal(n).astype(dtype)


def _mv(A):
    A = jnp.asarray(A)
    return lambda v: A @ v


def test_full_lanczos_float32_matches_eigh():
    A, v0 = _sym(12, 0)
    res = jax.jit(lambda v: linalg.lanczos(_mv(A), v, 12))(v0)
    lam = np.linalg.eigh(A.astype(np.float64))[0]
    V = np.asarray(res.basis, np.float64)
    np.testing.assert_allclose(V @ V.T, np.eye(12), atol=2e-6)
    T = np.diag(res.alphas) + np.diag(res.betas, 1) + np.diag(res.betas, -1)
    np.testing.assert_allclose(V @ A @ V.T, T, atol=1e-5)
    ext = jax.jit(lambda v: linalg.extreme_eigs(_mv(A), v, 12))(v0)
    assert abs(float(ext.min_value) - lam[0]) < 1e-5 * np.abs(lam).max()
    assert abs(float(ext.max_value) - lam[-1]) < 1e-5 * np.abs(lam).max()
    assert int(res.num_valid) == 12


def test_full_lanczos_float64_tight_and_ritz_vectors():
    with jax.enable_x64(True):
        A, v0 = _sym(10, 1, np.float64)
        lam, U = np.linalg.eigh(A)
        ext = jax.jit(lambda v: linalg.extreme_eigs(_mv(A), v, 10))(jnp.asarray(v0))
        assert ext.min_value.dtype == jnp.float64
        np.testing.assert_allclose(float(ext.min_value), lam[0], atol=1e-11)
        np.testing.assert_allclose(float(ext.max_value), lam[-1], atol=1e-11)
        for u, true in ((ext.min_vector, U[:, 0]), (ext.max_vector, U[:, -1])):
            u = np.asarray(u)
            assert abs(np.linalg.norm(u) - 1) < 1e-12
            assert abs(abs(u @ true) - 1) < 1e-10
        theta, _ = linalg.tridiag_eigh(ext.lanczos.alphas, ext.lanczos.betas)
        np.testing.assert_allclose(np.asarray(theta), lam, atol=1e-11)


def test_ritz_values_interlace():
    with jax.enable_x64(True):
        n, k = 15, 6
        A, v0 = _sym(n, 2, np.float64)
        lam = np.linalg.eigh(A)[0]
        res = jax.jit(lambda v: linalg.lanczos(_mv(A), v, k))(jnp.asarray(v0))
        theta = np.linalg.eigvalsh(np.diag(res.alphas) + np.diag(res.betas, 1) + np.diag(res.betas, -1))
        # Cauchy interlacing for the compression T = V A V^T
        for i in range(k):
            assert lam[i] - 1e-10 <= theta[i] <= lam[n - k + i] + 1e-10


def test_jit_and_vmap_over_matrices_and_starts():
    mats, starts = zip(*[_sym(6, s) for s in range(4)], strict=True)
    mats, starts = jnp.asarray(np.stack(mats)), jnp.asarray(np.stack(starts))

    @jax.jit
    @jax.vmap
    def lo_hi(A, v0):
        e = linalg.extreme_eigs(lambda v: A @ v, v0, 6)
        return e.min_value, e.max_value

    lo, hi = lo_hi(mats, starts)
    for i in range(4):
        lam = np.linalg.eigh(np.asarray(mats[i], np.float64))[0]
        np.testing.assert_allclose([lo[i], hi[i]], [lam[0], lam[-1]], atol=1e-4)


def test_breakdown_low_rank_no_nan():
    rng = np.random.default_rng(3)
    n, r = 10, 3
    B = rng.standard_normal((n, r))
    A = (B @ np.diag([3.0, -2.0, 0.5]) @ B.T).astype(np.float32)
    lam = np.linalg.eigh(A.astype(np.float64))[0]
    v0 = rng.standard_normal(n).astype(np.float32)
    ext = jax.jit(lambda v: linalg.extreme_eigs(_mv(A), v, 8))(v0)
    res = ext.lanczos
    leaves = jax.tree_util.tree_leaves(ext)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    # K(A, v0) = span(v0) + range(A): dimension r + 1, then an invariant space
    assert int(res.num_valid) == r + 1
    assert not bool(res.mask[r + 1:].any())
    assert float(jnp.abs(res.basis[r + 1:]).max()) == 0.0
    np.testing.assert_allclose([ext.min_value, ext.max_value], [lam[0], lam[-1]], rtol=1e-4)
    # a start vector inside range(A) breaks down after r steps
    @jax.jit
    def from_range(v):
        res = linalg.lanczos(_mv(A), v, 8)
        return res, linalg.tridiag_eigh(res.alphas, res.betas, res.mask)[0]

    res2, theta = from_range(jnp.asarray(A @ v0))
    assert int(res2.num_valid) == r
    # the masked eigensolve puts the r genuine Ritz values first
    theta = np.asarray(theta)
    nz = lam[np.abs(lam) > 1e-3 * np.abs(lam).max()]
    np.testing.assert_allclose(np.sort(theta[:r]), np.sort(nz), rtol=1e-4)
    assert theta[r:].min() > np.abs(lam).max()


def test_zero_start_and_k_larger_than_n():
    A, v0 = _sym(4, 4)
    ext3 = jax.jit(lambda v: linalg.extreme_eigs(_mv(A), v, 3))
    ext = ext3(jnp.zeros(4))
    assert int(ext.lanczos.num_valid) == 0
    for x in jax.tree_util.tree_leaves(ext):
        assert bool(jnp.all(x == 0))
    ext = jax.jit(lambda v: linalg.extreme_eigs(_mv(A), v, 7))(v0)
    lam = np.linalg.eigh(A.astype(np.float64))[0]
    assert int(ext.lanczos.num_valid) == 4
    np.testing.assert_allclose([ext.min_value, ext.max_value], [lam[0], lam[-1]], atol=1e-5)


def test_hvp_matches_dense_hessian_on_pytree():
    def f(p):
        w, b = p["w"], p["b"]
        return jnp.sum(jnp.sin(w) * b[0]) + jnp.sum(w**2) * jnp.sum(b**3)

    p = {"w": jnp.array([0.3, -1.2, 2.0]), "b": jnp.array([0.7, -0.4])}
    v = {"w": jnp.array([1.0, 0.5, -2.0]), "b": jnp.array([0.1, 3.0])}
    @jax.jit
    def all_three(p, v):
        matvec, x, unravel = linalg.flat_hvp(f, p)
        vf = jax.flatten_util.ravel_pytree(v)[0]
        H = jax.hessian(lambda z: f(unravel(z)))(x)
        return jax.flatten_util.ravel_pytree(linalg.hvp(f, p, v))[0], matvec(vf), H @ vf

    out, flat, dense = all_three(p, v)
    np.testing.assert_allclose(out, dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flat, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("indefinite", [False, True])
def test_conjugate_gradient(indefinite):
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        n = 6
        Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
        d = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) * (np.array([1, -1, 1, -1, 1, 1]) if indefinite else 1)
        A = Q @ np.diag(d) @ Q.T
        b = rng.standard_normal(n)
        res = jax.jit(lambda b: linalg.conjugate_gradient(_mv(A), b, 20, 1e-12))(jnp.asarray(b))
        np.testing.assert_allclose(np.asarray(res.x), np.linalg.solve(A, b), rtol=1e-8, atol=1e-9)
        assert int(res.num_iters) <= n + 1
        zero = jax.jit(lambda b: linalg.conjugate_gradient(_mv(A), b, 20))(jnp.zeros(n))
        assert int(zero.num_iters) == 0 and bool(jnp.all(zero.x == 0))


def test_lanczos_spends_num_valid_matvecs():
    calls = []
    A = jnp.diag(jnp.array([1.0, 1.0, 3.0, 3.0, 3.0]))

    def matvec(v):
        jax.debug.callback(lambda: calls.append(1))
        return A @ v

    # two distinct eigenvalues: K(A, v0) is 2-dimensional, so Lanczos stops after 2 matvecs
    res = jax.jit(lambda v: linalg.lanczos(matvec, v, 5))(jnp.ones(5))
    jax.effects_barrier()
    assert int(res.num_valid) == 2 and len(calls) == 2
    theta = linalg.tridiag_eigh(res.alphas, res.betas, res.mask)[0]
    np.testing.assert_allclose(theta[:2], [1.0, 3.0], atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_tridiag_eigh_half_precision_runs_in_float32(dtype):
    """eigh has no 16-bit kernel: T is diagonalized in float32 and returned in the input dtype."""
    alphas, betas = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.25])
    theta, Y = linalg.tridiag_eigh(jnp.asarray(alphas, dtype), jnp.asarray(betas, dtype))
    assert theta.dtype == Y.dtype == dtype
    T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)  # exactly representable in 16 bits
    expected = np.linalg.eigvalsh(T)
    # the float32 eigenvalues, rounded once to the 16-bit dtype: within half an ulp of it
    ulp = np.abs(expected) * float(jnp.finfo(dtype).eps)
    assert np.all(np.abs(np.asarray(theta, np.float64) - expected) <= 0.5 * ulp + 1e-6)
    assert linalg.working_dtype(dtype) == jnp.float32 and linalg.working_dtype(jnp.float32) == jnp.float32
