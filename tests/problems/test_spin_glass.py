"""Spherical p-spin glass: energy against brute force, the chart, and the published constants."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from problems.spin_glass import (
    P2_TARGET_TOLERANCE,
    complexity,
    couplings,
    ground_state_energy,
    symmetrize,
    threshold_energy,
)


def test_constants_match_auffinger_ben_arous_cerny():
    # Threshold and ground-state energies per spin (ABC 2013), to 1e-5.
    assert threshold_energy(3) == pytest.approx(1.632993, abs=1e-5)
    assert ground_state_energy(3) == pytest.approx(1.656998, abs=1e-5)
    assert ground_state_energy(4) == pytest.approx(1.794085, abs=1e-5)
    # The ground state is a zero of the complexity, below the threshold where it is positive.
    for p in (3, 4):
        e0, einf = ground_state_energy(p), threshold_energy(p)
        assert abs(complexity(-e0, p)) < 1e-10
        assert complexity(-einf, p) == pytest.approx(0.5 * np.log(p - 1) - (p - 2) / p, abs=1e-12)
        assert e0 > einf


@pytest.mark.parametrize("p", [3, 4])
def test_reference_p_ge_3(p):
    prob = problems.get("spin_glass", p=p, n=8, instance=0)
    ref = prob.reference
    assert ref.f_star == pytest.approx(-ground_state_energy(p), abs=1e-12)
    assert ref.f_target == pytest.approx(-threshold_energy(p), abs=1e-12)
    assert ref.extra["E_0"] == pytest.approx(ground_state_energy(p))
    assert ref.extra["E_inf"] == pytest.approx(threshold_energy(p))
    assert prob.name == f"spin_glass(p={p},n=8,instance=0)"


@pytest.mark.parametrize("p,n", [(2, 9), (3, 7), (4, 5)])
def test_energy_equals_brute_force_einsum(p, n):
    prob = problems.get("spin_glass", p=p, n=n, instance=3)
    j = couplings(p, n, 3).astype(np.float64)  # the raw, unsymmetrized couplings
    full_loss = jax.jit(prob.full_loss)
    rng = np.random.default_rng(1)
    for _ in range(3):
        w = rng.standard_normal(n) * rng.uniform(0.1, 10.0)
        got = float(full_loss(jnp.asarray(w, jnp.float32)))
        assert got == pytest.approx(_brute_energy_per_spin(j, w), rel=1e-4, abs=1e-5)


def _brute_energy_per_spin(j, w):
    """numpy float64 H(s)/N at s = sqrt(N) w/|w|, over the raw (unsymmetrized) couplings."""
    p, n = j.ndim, j.shape[0]
    s = np.sqrt(n) * w / np.linalg.norm(w)
    letters = "abcd"[:p]
    h = n ** (-(p - 1) / 2) * np.einsum(f"{letters}," + ",".join(letters) + "->", j, *([s] * p))
    return h / n


@pytest.mark.parametrize("p,n", [(3, 6), (4, 5)])
def test_gradient_and_hvp_against_finite_differences(p, n):
    # The energy's custom JVP (gradient = p T.s^{p-1} for the symmetrized T) against central
    # differences of the brute-force energy over the raw couplings, in float64.
    prob = problems.get("spin_glass", p=p, n=n, instance=1)
    j = couplings(p, n, 1).astype(np.float64)
    w = np.random.default_rng(2).standard_normal(n)
    f, h = _brute_energy_per_spin, 1e-6
    fd = [(f(j, w + h * e) - f(j, w - h * e)) / (2 * h) for e in np.eye(n)]
    grad = jax.jit(jax.grad(prob.full_loss))
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(grad(f32(w)), np.array(fd), rtol=1e-3, atol=1e-5)
    # Hessian-vector product (forward over reverse) against differences of the gradient. The
    # gradient field is the chart's, whose Hessian has the tangent block of the loss's Hessian
    # (the Riemannian one, scaled by 1/|w|^2 off the sphere) but couples tangent and radial
    # directions (H w = -g); the loss's Hessian has no such coupling. So for a tangent v the
    # tangent part of the HVP matches the differences and its radial part is zero.
    u = w / np.linalg.norm(w)
    v = np.random.default_rng(3).standard_normal(n)
    v -= (v @ u) * u
    hvp = np.asarray(jax.jit(lambda x, t: jax.jvp(grad, (x,), (t,))[1])(f32(w), f32(v)), np.float64)
    eps = 1e-3
    fd_hvp = np.asarray((grad(f32(w + eps * v)) - grad(f32(w - eps * v))) / (2 * eps), np.float64)
    scale = np.max(np.abs(fd_hvp))
    tangent = lambda x: x - (x @ u) * u
    np.testing.assert_allclose(tangent(hvp), tangent(fd_hvp), rtol=2e-2, atol=1e-3 * scale)
    assert abs(hvp @ u) <= 1e-5 * scale * np.linalg.norm(v)
    assert abs(fd_hvp @ u) > 1e-2 * scale  # the chart's coupling the loss removes is really there


def test_chart_is_scale_invariant_and_gradient_tangent():
    prob = problems.get("spin_glass", p=3, n=20, instance=0)
    w = prob.init(jax.random.key(0))
    f = jax.jit(prob.full_loss)
    f0 = f(w)
    for c in (1e-2, 0.5, 7.0, 1e3):
        assert float(f(c * w)) == pytest.approx(float(f0), rel=1e-5, abs=1e-6)
    g = jax.jit(jax.grad(prob.full_loss))(w)
    # Scale invariance: the gradient has no radial component.
    assert abs(float(jnp.dot(g, w))) < 1e-5 * float(jnp.linalg.norm(g) * jnp.linalg.norm(w))


def test_retract_and_init_on_sphere():
    n = 25
    prob = problems.get("spin_glass", p=3, n=n, instance=2)
    ws = jax.vmap(prob.init)(jax.random.split(jax.random.key(0), 6))
    np.testing.assert_allclose(jnp.linalg.norm(ws, axis=1), 1.0, rtol=1e-5)  # iterates on the unit sphere
    assert len({tuple(np.round(np.asarray(w), 5)) for w in ws}) == 6  # distinct seeds, distinct points
    w = 3.7 * jax.random.normal(jax.random.key(5), (n,))
    r = prob.retract(w)
    assert float(jnp.linalg.norm(r)) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(prob.retract(r), r, rtol=1e-6)
    np.testing.assert_allclose(r / jnp.linalg.norm(r), w / jnp.linalg.norm(w), rtol=1e-5)


@pytest.mark.parametrize("p", [2, 3, 4])
def test_symmetrize_is_the_full_permutation_average(p):
    j = couplings(p, 5, 0)
    s = symmetrize(j)
    assert s.dtype == np.float32
    perms = list(itertools.permutations(range(p)))
    j64 = j.astype(np.float64)
    want = sum(j64.transpose(perm) for perm in perms) / len(perms)
    np.testing.assert_allclose(s, want, rtol=1e-6, atol=1e-6)
    for perm in perms:
        np.testing.assert_array_equal(s, s.transpose(perm))  # bitwise: the custom gradient needs it


def test_p2_ground_state_is_lambda_min_and_projected_gd_reaches_it():
    n = 30
    prob = problems.get("spin_glass", p=2, n=n, instance=0)
    j = couplings(2, n, 0).astype(np.float64)
    lam = np.linalg.eigvalsh(n**-0.5 * (j + j.T) / 2)[0]
    assert prob.reference.f_star == pytest.approx(lam, abs=1e-5)
    assert prob.reference.f_target == pytest.approx(lam + P2_TARGET_TOLERANCE)

    # Projected gradient descent in the chart. At |w| = 1, s = sqrt(N) w and grad = 2 P_perp M w,
    # so a step 1/6 is a shifted power iteration with shift 3 > |spectrum| (about 2 sqrt 2).
    grad = jax.grad(prob.full_loss)

    @jax.jit
    def descend(w):
        def step(w, _):
            return prob.retract(w - grad(w) / 6.0), None

        return jax.lax.scan(step, w, None, length=300)[0]

    ws = jax.vmap(prob.init)(jax.random.split(jax.random.key(0), 4))
    final = jax.vmap(lambda w: prob.full_loss(descend(w)))(ws)
    assert np.all(np.asarray(final) >= lam - 1e-5)  # never below the exact minimum
    np.testing.assert_array_less(np.asarray(final) - lam, 1e-3)


def test_energy_bounded_below_by_exact_p2_ground_state():
    prob = problems.get("spin_glass", p=2, n=12, instance=4)
    ws = jax.random.normal(jax.random.key(0), (200, 12))
    assert float(jnp.min(jax.jit(jax.vmap(prob.full_loss))(ws))) >= prob.reference.f_star - 1e-5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(p=5), "p must be 2, 3 or 4"),
        (dict(p=3, n=1), "n must be >= 2"),
        (dict(p=2, n=20_000), "exceeds the limit"),
        (dict(p=4, n=200), "exceeds the limit"),
        (dict(instance=-1), "instance must be >= 0"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        problems.get("spin_glass", **kwargs)
