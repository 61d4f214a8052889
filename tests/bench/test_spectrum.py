"""Stochastic Lanczos quadrature (bench.spectrum) against dense numpy eigendecompositions.

Every reference is computed independently in float64 numpy: the eigenpairs (lambda_i, u_i) of the
Hessian, each probe's spectral measure mu_v = sum_i (u_i.v)^2/|v|^2 delta_{lambda_i} (the probes
are regenerated with ``spectrum.probes`` from the same key), its Gaussian smoothing, and its mass
below zero.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from bench import spectrum
from problems.spin_glass import couplings, radial_curvature, symmetrize


def _known_spectrum_quadratic(n=30, seed=0):
    """f(x) = x^T A x / 2 with A = Q diag(lam) Q^T, lam uniform on [-3, 5] (11 of 30 negative)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.linspace(-3.0, 5.0, n)
    a = (q * lam) @ q.T
    a32 = jnp.asarray(a, jnp.float32)
    return (lambda x: 0.5 * x @ (a32 @ x)), lam, q


def _probe_measures(lam, u, key, n, num_probes, kind):
    """(num_probes, n) weights (u_i.v)^2/|v|^2 of each probe's spectral measure, float64."""
    v = np.asarray(spectrum.probes(key, n, num_probes, kind), np.float64)
    c = (v @ u) ** 2
    return c / c.sum(axis=1, keepdims=True), v


def _smoothed(lam, w, grid, sigma):
    z = (grid[None, None, :] - lam[None, :, None]) / sigma
    return np.mean(np.sum(w[..., None] * np.exp(-0.5 * z * z), axis=1), axis=0) / (sigma * math.sqrt(2 * math.pi))


def _rademacher_sd(u, lam, num_probes):
    """Standard deviation of the mean over probes of v^T P v / n, P the negative eigenprojector.

    For Rademacher v, Var(v^T P v) = 2 (|P|_F^2 - sum_i P_ii^2) (the diagonal terms are constant).
    """
    un = u[:, lam < 0]
    p = un @ un.T
    n = len(lam)
    return math.sqrt(2.0 * (np.sum(p * p) - np.sum(np.diag(p) ** 2)) / num_probes) / n


def test_truncated_lanczos_brackets_and_interlaces():
    # k = 10 < n = 30: per probe, numpy's mu_v(< 0) lies in the Chebyshev-Markov-Stieltjes
    # bracket [E - tau_j, E + tau_{j+1}] (up to float32 round-off, 1e-5); the extreme Ritz
    # values interlace (inside [-3, 5]) and are within the Kaniel-Paige bound
    # (lambda_n - lambda_1) tan^2(v, u_n) / T_{k-1}(1 + 2 gamma)^2 of the extremes.
    n, k, num_probes = 30, 10, 8
    f, lam, u = _known_spectrum_quadratic(n)
    key = jax.random.key(2)
    d = spectrum.density(f, jnp.zeros(n), key, num_probes=num_probes, num_steps=k)
    assert d.nodes.shape == (num_probes, k)
    assert not np.any(np.asarray(d.exact))
    w, _ = _probe_measures(lam, u, key, n, num_probes, "rademacher")
    mu_neg = w[:, lam < 0].sum(axis=1)
    lo, hi = np.asarray(d.probe_neg_lo, np.float64), np.asarray(d.probe_neg_hi, np.float64)
    assert np.all(lo - 1e-5 <= mu_neg) and np.all(mu_neg <= hi + 1e-5), (lo, mu_neg, hi)
    assert np.all(hi - lo > 0)  # a genuine Gauss rule: the bracket is not trivially collapsed
    lmin, lmax = float(d.lambda_min), float(d.lambda_max)
    assert -3.0 - 1e-5 <= lmin and lmax <= 5.0 + 1e-5

    def kaniel_paige(c2, gap, rest):
        gamma = gap / rest
        t = math.cosh((k - 1) * math.acosh(1 + 2 * gamma))
        return np.min(8.0 * (1 - c2) / c2) / t**2

    bound_hi = kaniel_paige(w[:, -1], lam[-1] - lam[-2], lam[-2] - lam[0])
    bound_lo = kaniel_paige(w[:, 0], lam[1] - lam[0], lam[-1] - lam[1])
    assert 5.0 - lmax <= bound_hi + 1e-5, (5.0 - lmax, bound_hi)
    assert lmin + 3.0 <= bound_lo + 1e-5, (lmin + 3.0, bound_lo)
    assert float(jnp.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-4)
    # the mean estimate: within the mean bracket half-width plus 4 sampling standard deviations
    q = np.mean(lam < 0)
    slack = float(d.neg_fraction_hi - d.neg_fraction_lo) + 4 * _rademacher_sd(u, lam, num_probes)
    assert abs(float(d.neg_fraction) - q) <= slack


def test_saddle_nd_origin_breaks_down_to_the_exact_two_point_spectrum():
    # saddle_nd(dim=20, index=5) at the origin: Hessian diag(-1 x 5, +1 x 15). Two distinct
    # eigenvalues, so Lanczos breaks down after 2 steps (invariant Krylov space) and every
    # Rademacher probe sees the negative mass sum_{i<5} v_i^2 / 20 = 5/20 exactly: no sampling
    # error, because the negative eigenprojector is diagonal. The smoothed density at -1 is
    # (1/4) g_sigma(0) + (3/4) g_sigma(2).
    prob = problems.get("saddle_nd", dim=20, index=5)
    d = spectrum.density(prob.full_loss, jnp.zeros(20), jax.random.key(3), num_probes=4, num_steps=12)
    assert np.all(np.asarray(d.num_valid) == 2) and np.all(np.asarray(d.exact))
    assert float(d.neg_fraction) == pytest.approx(0.25, abs=1e-6)
    assert float(d.neg_fraction_lo) == float(d.neg_fraction_hi) == float(d.neg_fraction)
    assert float(d.lambda_min) == pytest.approx(-1.0, abs=1e-6)
    assert float(d.lambda_max) == pytest.approx(1.0, abs=1e-6)
    s = float(d.sigma)
    assert s == pytest.approx(spectrum.DEFAULT_SIGMA_REL * 2.0, rel=1e-5)
    t = np.asarray(d.grid, np.float64)
    g = lambda z: np.exp(-0.5 * (z / s) ** 2) / (s * math.sqrt(2 * math.pi))
    ref = 0.25 * g(t + 1) + 0.75 * g(t - 1)
    np.testing.assert_allclose(np.asarray(d.density), ref, rtol=1e-4, atol=1e-6 * ref.max())
    assert float(d.neg_fraction_smoothed) == pytest.approx(0.25, abs=1e-6)  # Phi(-1/sigma) ~ 0
    assert float(jnp.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-4)


def _spin_glass_hessian(p, n, instance, w):
    """The loss's Hessian at a unit w in float64 numpy, from the coupling tensor (module doc of
    problems.spin_glass): P grad^2 F P - (w.grad F) P + c_r w w^T, F(w) = N^{p/2-1} S(w,..,w)."""
    s = symmetrize(couplings(p, n, instance))
    s = (s * np.float32(n ** (-(p - 1) / 2))).astype(np.float64)  # the problem's float32 tensor
    t = s
    for _ in range(p - 2):
        t = t @ w
    hess_f = p * (p - 1) * n ** (p / 2 - 1) * t
    grad_f = p * n ** (p / 2 - 1) * (t @ w)
    proj = np.eye(n) - np.outer(w, w)
    return proj @ hess_f @ proj - (w @ grad_f) * proj + radial_curvature(p) * np.outer(w, w)


def test_spin_glass_full_lanczos_is_each_probes_spectral_measure():
    # spin_glass(p=3, n=20) at a random point of the sphere, Hessian from numpy (Riemannian part
    # on the tangent space, c_r radially). k = n = 20: the Krylov space is the whole space, so
    # each probe's Gauss quadrature IS mu_v: nodes = eigenvalues, weights = squared components,
    # and the negative-mass bracket collapses. float32 Lanczos with full reorthogonalization on
    # eigenvalues of order 5: errors ~ n eps |H| ~ 1e-5 (tolerance 1e-3 on nodes); weights to
    # ~ eps |H| / gap (smallest gap here ~ 0.05: ~1e-5; tolerance 1e-3).
    p, n, num_probes = 3, 20, 16
    prob = problems.get("spin_glass", p=p, n=n, instance=0)
    x = prob.init(jax.random.key(4))
    h = _spin_glass_hessian(p, n, 0, np.asarray(x, np.float64))
    lam, u = np.linalg.eigh(h)
    key = jax.random.key(5)
    d = spectrum.density(prob.full_loss, x, key, num_probes=num_probes, num_steps=64, probe="gaussian")
    assert d.nodes.shape == (num_probes, n)  # num_steps capped at the dimension
    assert np.all(np.asarray(d.exact))
    w, _ = _probe_measures(lam, u, key, n, num_probes, "gaussian")
    np.testing.assert_allclose(np.asarray(d.nodes), np.broadcast_to(lam, (num_probes, n)), atol=1e-3)
    np.testing.assert_allclose(np.asarray(d.weights), w, atol=1e-3)
    assert float(d.lambda_min) == pytest.approx(lam[0], abs=1e-3)
    assert float(d.lambda_max) == pytest.approx(lam[-1], abs=1e-3)
    # the density is the smoothed average of the probes' measures (to 1e-3 of its peak)
    ref = _smoothed(lam, w, np.asarray(d.grid, np.float64), float(d.sigma))
    np.testing.assert_allclose(np.asarray(d.density), ref, atol=1e-3 * ref.max())
    # integrates to 1: Gaussian tails beyond 6 sigma hold 2e-9, the trapezoid rule with
    # sigma/h ~ 9 is exact to exp(-2 pi^2 81) (spectrally accurate); float32 sums ~ 1e-6
    assert float(jnp.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-4)
    # per probe the negative mass is exact (bracket collapsed) and equals numpy's mu_v(< 0)
    est = np.asarray(d.probe_neg_fraction)
    np.testing.assert_allclose(est, w[:, lam < 0].sum(axis=1), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(d.probe_neg_lo), est)
    np.testing.assert_array_equal(np.asarray(d.probe_neg_hi), est)
    # the mean over 16 Gaussian directions: v^T P v / |v|^2 ~ Beta(m/2, (n-m)/2), variance
    # 2 q (1-q) / (n + 2); within 4 standard deviations of q = m/n
    q = np.mean(lam < 0)
    sd = math.sqrt(2 * q * (1 - q) / (n + 2) / num_probes)
    assert abs(float(d.neg_fraction) - q) <= 4 * sd, (float(d.neg_fraction), q, sd)
    assert 0.0 < float(d.neg_fraction_smoothed) < 1.0


def test_bad_arguments_raise():
    f, _, _ = _known_spectrum_quadratic(4)
    with pytest.raises(ValueError, match="probe kind"):
        spectrum.density(f, jnp.zeros(4), probe="cauchy")
    with pytest.raises(ValueError, match="num_probes"):
        spectrum.density(f, jnp.zeros(4), num_probes=0)
    with pytest.raises(ValueError, match="sigma"):
        spectrum.density(f, jnp.zeros(4), sigma=-1.0)
