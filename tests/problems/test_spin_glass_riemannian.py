"""Spherical p-spin glass: the loss's second order is the Riemannian one on the sphere.

References are computed in numpy float64 from the coupling tensor. With F(w) = H(sqrt(N) w)/N
the energy per spin on R^N and T the symmetrized couplings scaled by N^{-(p-1)/2},

    F(w) = N^{p/2-1} T[w,..,w],  grad F = p N^{p/2-1} T[w^{p-1}],  grad^2 F = p(p-1) N^{p/2-1} T[w^{p-2}],

and at |w| = 1 the Riemannian gradient is P grad F and the Riemannian Hessian on tangent v is
P grad^2 F v - (w.grad F) v, P = I - w w^T; the loss adds c_r = 2 sqrt(p(p-1)) on the radial
direction. Float32 tolerances: an HVP or Hessian computed in float32 is accurate to a few
float32 ulps of its scale (~1e-6 relative to the largest Hessian entry); the bounds are 1e-4 to
leave room for the N-term contractions. In float64 (``jax.enable_x64``; the float32 couplings
convert exactly) the same quantities agree to ~1e-13, checked at 1e-9.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
import problems
from problems.spin_glass import _energy, couplings, radial_curvature, symmetrize


def _tensor64(p, n, instance):
    """The scaled symmetric coupling tensor, independently: the permutation average in float64."""
    j = couplings(p, n, instance).astype(np.float64)
    perms = list(itertools.permutations(range(p)))
    return sum(j.transpose(perm) for perm in perms) / len(perms) * n ** (-(p - 1) / 2)


def _problem_tensor(p, n, instance):
    """The float32 tensor the problem itself uses (for the float64 check), as float64."""
    t = symmetrize(couplings(p, n, instance))
    t *= np.float32(n ** (-(p - 1) / 2))
    return t.astype(np.float64)


def _contract(t, w, times):
    for _ in range(times):
        t = t @ w
    return t


def _riemannian(t, w):
    """(value, Riemannian gradient, Riemannian Hessian as an N x N matrix on the tangent space)."""
    p, n = t.ndim, t.shape[0]
    c = n ** (p / 2 - 1)
    value = c * _contract(t, w, p)
    egrad = p * c * _contract(t, w, p - 1)
    ehess = p * (p - 1) * c * (_contract(t, w, p - 2) if p > 2 else t)
    proj = np.eye(n) - np.outer(w, w)
    return value, proj @ egrad, proj @ ehess @ proj - (w @ egrad) * proj


def _sphere_points(n, count, seed):
    w = np.random.default_rng(seed).standard_normal((count, n))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def _hvp(f):
    return jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])


CASES = [(2, 8, 0), (2, 12, 5), (3, 8, 1), (3, 10, 2), (4, 8, 3), (4, 9, 4)]


def test_radial_curvature_constant():
    # c_r = p E_inf = 2 sqrt(p (p-1)): the centre of the tangent spectrum at the threshold.
    for p in (2, 3, 4):
        assert radial_curvature(p) == pytest.approx(2 * math.sqrt(p * (p - 1)), rel=1e-12)


@pytest.mark.parametrize("p,n,instance", CASES)
def test_hvp_is_riemannian_hessian_float32(p, n, instance):
    prob = problems.get("spin_glass", p=p, n=n, instance=instance)
    t = _tensor64(p, n, instance)
    c_r = radial_curvature(p)
    hvp = _hvp(prob.full_loss)
    hess = jax.jit(jax.hessian(prob.full_loss))
    grad = jax.jit(jax.grad(prob.full_loss))
    rng = np.random.default_rng(instance)
    for w64 in _sphere_points(n, 3, seed=10 + instance):
        w = jnp.asarray(w64, jnp.float32)
        w64 = np.asarray(w, np.float64)  # the float32 point itself, |w| = 1 to ~1e-7
        _, rgrad, rhess = _riemannian(t, w64)
        scale = np.linalg.norm(rhess, 2) + c_r
        # Gradient: the Riemannian gradient, tangent.
        g = np.asarray(grad(w), np.float64)
        np.testing.assert_allclose(g, rgrad, atol=1e-5 * np.linalg.norm(rgrad))
        assert abs(g @ w64) <= 1e-6 * np.linalg.norm(g)
        # Radial direction: c_r w exactly in exact arithmetic (the chart alone gives -g).
        hw = np.asarray(hvp(w, w), np.float64)
        assert np.linalg.norm(hw - c_r * w64) <= 1e-4 * scale
        # Tangent directions: the Riemannian Hessian, and nothing radial.
        for _ in range(3):
            v = rng.standard_normal(n)
            v -= (v @ w64) * w64
            hv = np.asarray(hvp(w, jnp.asarray(v, jnp.float32)), np.float64)
            assert np.linalg.norm(hv - rhess @ v) <= 1e-4 * scale * np.linalg.norm(v)
            assert abs(hv @ w64) <= 1e-4 * scale * np.linalg.norm(v)
        # jax.hessian: the whole matrix, P Hess P + c_r w w^T.
        want = rhess + c_r * np.outer(w64, w64)
        np.testing.assert_allclose(np.asarray(hess(w), np.float64), want, atol=1e-4 * scale)


@pytest.mark.parametrize("p,n,instance", [(2, 8, 0), (3, 8, 1), (4, 8, 3)])
def test_hessian_is_riemannian_float64(p, n, instance):
    # In float64 the problem computes with its float32 couplings converted exactly, so against
    # the same tensor in numpy only float64 rounding remains.
    prob = problems.get("spin_glass", p=p, n=n, instance=instance)
    t = _problem_tensor(p, n, instance)
    c_r = radial_curvature(p)
    with jax.enable_x64(True):
        hess = jax.jit(jax.hessian(prob.full_loss))
        grad = jax.jit(jax.grad(prob.full_loss))
        for w in _sphere_points(n, 2, seed=20 + instance):
            value, rgrad, rhess = _riemannian(t, w)
            x = jnp.asarray(w, jnp.float64)
            assert float(prob.full_loss(x)) == pytest.approx(value, rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(np.asarray(grad(x)), rgrad, atol=1e-11)
            want = rhess + c_r * np.outer(w, w)
            got = np.asarray(hess(x))
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, want, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-9), (jnp.float32, 2e-5)])
def test_p2_hessian_spectrum_at_eigenvectors(dtype, tol):
    # p = 2: F(w) = w^T M w with M = N^{-1/2} (J + J^T)/2. At the eigenvector u_i (lambda_i)
    # the Riemannian Hessian P 2M P - 2 lambda_i P has eigenvalues 2 (lambda_j - lambda_i),
    # j != i, on the tangent space, so u_i is a critical point of index i; the radial
    # direction adds c_r.
    n = 10
    prob = problems.get("spin_glass", p=2, n=n, instance=6)
    lam, vecs = np.linalg.eigh(_problem_tensor(2, n, 6))  # the problem's own M, exactly
    c_r = radial_curvature(2)
    with jax.enable_x64(dtype == jnp.float64):
        hess = jax.jit(jax.hessian(prob.full_loss))
        grad = jax.jit(jax.grad(prob.full_loss))
        for i in (0, 1, n // 2, n - 1):
            x = jnp.asarray(vecs[:, i], dtype)
            assert float(jnp.linalg.norm(grad(x))) <= tol * 10  # a critical point
            h = np.asarray(hess(x), np.float64)
            got = np.linalg.eigvalsh((h + h.T) / 2)
            want = np.sort(np.append(2 * (np.delete(lam, i) - lam[i]), c_r))
            np.testing.assert_allclose(got, want, atol=tol * 10)
            assert int(np.sum(got < -1e-3)) == i  # index i: u_0 is the minimum
            # The radial eigenvector is u_i itself.
            rad = np.argmin(np.abs(got - c_r))
            assert abs(np.linalg.eigh((h + h.T) / 2)[1][:, rad] @ vecs[:, i]) == pytest.approx(1.0, abs=1e-4)


def test_values_bitwise_equal_to_the_chart():
    # The correction adds an exact zero, so full_loss is the chart energy bit for bit (the
    # runner's reported numbers), here under jit(vmap) on the backend the tests run on.
    for p, n in [(2, 12), (3, 20), (4, 9)]:
        prob = problems.get("spin_glass", p=p, n=n, instance=0)
        t = symmetrize(couplings(p, n, 0))
        t *= np.float32(n ** (-(p - 1) / 2))
        energy = _energy(jnp.asarray(t))

        def chart(w, energy=energy, n=n):  # the loss as it was: the chart alone
            return energy(math.sqrt(n) * (w / jnp.linalg.norm(w))) / n

        ws = jax.vmap(prob.init)(jax.random.split(jax.random.key(1), 32))
        got = np.asarray(jax.jit(jax.vmap(prob.full_loss))(ws))
        want = np.asarray(jax.jit(jax.vmap(chart))(ws))
        np.testing.assert_array_equal(got, want)
        # Gradients agree to float32 round-off (the loss's is projected once more).
        g = jax.jit(jax.vmap(jax.grad(prob.full_loss)))(ws)
        gc = jax.jit(jax.vmap(jax.grad(chart)))(ws)
        np.testing.assert_allclose(g, gc, atol=1e-6 * float(jnp.max(jnp.abs(gc))))


def _newton_run(f, prob, w, steps):
    """The runner's update convention: update with value and value_fn, apply, retract."""
    tx = optimizers.get("newton")
    grad = jax.grad(prob.full_loss)

    def step(carry, key):
        w, state = carry
        value, g = jax.value_and_grad(f)(w)
        updates, state = tx.update(g, state, w, value=value, value_fn=f, key=key)
        w = prob.retract(optax.apply_updates(w, updates))
        return (w, state), (prob.full_loss(w), jnp.linalg.norm(grad(w)))

    keys = jax.random.split(jax.random.key(0), steps)
    return jax.lax.scan(step, (w, tx.init(w)), keys)[1]


def test_newton_step_is_tangent():
    # One step of optimizers' newton (damped, CG on HVPs) at random points: tangent with this
    # loss; with the chart alone (the loss composed with retract) H w = -g makes it mostly
    # radial, so the retraction undoes it. In exact arithmetic the Krylov space of a tangent
    # g stays tangent; in float32 the HVPs leak ~1e-6 relative radial parts, which CG on the
    # indefinite tangent system amplifies (default 20 iterations at N = 20, past the tangent
    # dimension 19): |s.w|/|s| up to ~6e-3 seen, so the bound is 5e-2; the chart gives 0.82-1.0 (bound 0.5).
    prob = problems.get("spin_glass", p=3, n=20, instance=0)

    def chart(w):
        return prob.full_loss(prob.retract(w))

    tx = optimizers.get("newton")
    ws = jax.vmap(prob.init)(jax.random.split(jax.random.key(2), 6))
    for f, tangent in [(prob.full_loss, True), (chart, False)]:

        def step(w, f=f):
            value, g = jax.value_and_grad(f)(w)
            return tx.update(g, tx.init(w), w, value=value, value_fn=f, key=jax.random.key(0))[0]

        s = jax.jit(jax.vmap(step))(ws)
        cos = np.abs(np.sum(np.asarray(s) * np.asarray(ws), axis=1)) / np.linalg.norm(s, axis=1)
        if tangent:
            assert np.all(cos < 5e-2), cos
        else:
            assert np.all(cos > 0.5), cos


def test_newton_converges_to_a_nearby_minimum():
    # Newton is attracted to the nearest critical point, so it is started in a minimum's basin:
    # gradient descent (1000 steps of 0.1, |grad| ~ 3e-7) finds local minima w*, and Newton
    # starts at geodesic distance 0.1 from w*, where the energy is 0.02 above E(w*). With the
    # Riemannian Hessian it converges quadratically (the gap and the gradient are at float32
    # round-off after 3 steps; 6 are run). With the chart's Hessian the step is radial and
    # Newton does not get closer: the gap stays (it grows slightly) and |grad| stays > 0.1.
    prob = problems.get("spin_glass", p=3, n=20, instance=0)
    grad = jax.grad(prob.full_loss)

    @jax.jit
    def descend(w):
        return jax.lax.scan(lambda w, _: (prob.retract(w - 0.1 * grad(w)), None), w, None, length=1000)[0]

    w_star = jax.vmap(descend)(jax.vmap(prob.init)(jax.random.split(jax.random.key(0), 4)))
    e_star = np.asarray(jax.vmap(prob.full_loss)(w_star))
    assert np.all(np.asarray(jnp.linalg.norm(jax.vmap(grad)(w_star), axis=1)) < 1e-5)
    t = jax.random.normal(jax.random.key(3), w_star.shape)
    t = t - jnp.sum(t * w_star, axis=1, keepdims=True) * w_star
    t = t / jnp.linalg.norm(t, axis=1, keepdims=True)
    w0 = jax.vmap(prob.retract)(w_star + 0.1 * t)
    gap0 = np.asarray(jax.vmap(prob.full_loss)(w0)) - e_star
    assert np.all(gap0 > 1e-2)

    def chart(w):
        return prob.full_loss(prob.retract(w))

    energy, gnorm = jax.jit(jax.vmap(lambda w: _newton_run(prob.full_loss, prob, w, 6)))(w0)
    gap = np.asarray(energy)[:, -1] - e_star
    assert np.all(np.abs(gap) < 1e-5), gap  # float32 energies of order 1: round-off ~1e-7
    assert np.all(np.asarray(gnorm)[:, -1] < 1e-5)
    energy, gnorm = jax.jit(jax.vmap(lambda w: _newton_run(chart, prob, w, 6)))(w0)
    assert np.all(np.asarray(energy)[:, -1] - e_star > 0.9 * gap0)
    assert np.all(np.asarray(gnorm)[:, -1] > 0.1)
