"""Saddle functions and matrix factorization: critical points, values and Hessians vs closed forms."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from problems.chained_saddle import chained_saddle_value
from problems.matrix_factorization import matrix_factorization_factor


def _value_grad_hessian(f):
    """One compiled program for f, its gradient and its Hessian, vmapped over points."""
    return jax.jit(jax.vmap(lambda x: (f(x), jax.grad(f)(x), jax.hessian(f)(x))))


def _critical_data(p, points):
    """Values, gradients and Hessian eigenvalues (ascending) of p.full_loss at a batch of vectors."""
    values, grads, hessians = (np.asarray(a, np.float64) for a in _value_grad_hessian(p.full_loss)(points))
    return values, grads, np.linalg.eigvalsh(hessians)


# --- saddle_nd ---


def test_saddle_nd_critical_points_match_closed_form():
    neg, pos = 1.5, 0.5
    p = problems.get("saddle_nd", dim=4, index=2, neg_curvature=neg, pos_curvature=pos)
    f_star = -2 * neg**2 / 4
    assert p.reference.f_star == pytest.approx(f_star)
    (saddle,) = p.saddles
    assert saddle.index == 2 and saddle.value == 0.0
    r = math.sqrt(neg)
    minima = [[s1 * r, s2 * r, 0.0, 0.0] for s1, s2 in itertools.product((1, -1), repeat=2)]
    half = [r, 0.0, 0.0, 0.0]  # one negative direction at 0: index-1 saddle, value -neg^2/4
    points = jnp.asarray([np.asarray(saddle.point), *minima, half], jnp.float32)
    values, grads, eigs = _critical_data(p, points)
    np.testing.assert_allclose(grads, 0.0, atol=1e-6)
    np.testing.assert_allclose(values, [0.0] + [f_star] * 4 + [-(neg**2) / 4], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(eigs[0], [-neg, -neg, pos, pos], rtol=1e-6)
    assert int(np.sum(eigs[0] < 0)) == saddle.index
    for e in eigs[1:5]:  # Hessian at a minimum: 2 neg on the escaped directions, pos elsewhere
        np.testing.assert_allclose(e, [pos, pos, 2 * neg, 2 * neg], rtol=1e-5)
    assert int(np.sum(eigs[5] < 0)) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"dim": 0}, {"index": 0}, {"index": 11}, {"neg_curvature": 0.0}, {"pos_curvature": -1.0},
     {"init_radius": 0.0}],
)
def test_saddle_nd_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError, match="saddle_nd"):
        problems.get("saddle_nd", **kwargs)


# --- monkey saddle and degenerate saddle ---


def test_monkey_saddle_points_and_minima():
    p = problems.get("monkey_saddle")
    assert p.reference.f_star == -27 / 256
    (saddle,) = p.saddles
    assert saddle.index is None and saddle.value == 0.0
    r = 0.75
    minima = [[r * math.cos(t), r * math.sin(t)] for t in (math.pi, math.pi / 3, -math.pi / 3)]
    values, grads, eigs = _critical_data(p, jnp.asarray([[0.0, 0.0], *minima], jnp.float32))
    np.testing.assert_allclose(grads, 0.0, atol=1e-6)
    np.testing.assert_allclose(values, [0.0] + [-27 / 256] * 3, atol=1e-7)
    np.testing.assert_array_equal(eigs[0], [0.0, 0.0])  # the monkey saddle is flat to second order
    assert np.all(eigs[1:] > 0.1)
    # The minimum over a fine grid agrees with the closed form (numpy float64, same formula).
    g = np.linspace(-1.0, 1.0, 1601)
    grid = p.full_loss(np.stack(np.meshgrid(g, g)).reshape(2, -1))
    assert -27 / 256 - 1e-12 <= grid.min() <= -27 / 256 + 1e-5


def test_degenerate_saddle_points_and_minimum():
    p = problems.get("degenerate_saddle")
    assert p.reference.f_star == -27 / 256
    (saddle,) = p.saddles
    assert saddle.index is None and saddle.value == 0.0
    values, grads, eigs = _critical_data(p, jnp.asarray([[0.0, 0.0], [0.0, -0.75]], jnp.float32))
    np.testing.assert_allclose(grads, 0.0, atol=1e-6)
    np.testing.assert_allclose(values, [0.0, -27 / 256], atol=1e-7)
    np.testing.assert_array_equal(eigs[0], [0.0, 2.0])  # Hessian diag(2, 0): degenerate
    np.testing.assert_allclose(eigs[1], [2.0, 2.25], rtol=1e-6)
    g = np.linspace(-1.0, 1.0, 1601)
    grid = p.full_loss(np.stack(np.meshgrid(g, g)).reshape(2, -1))
    assert -27 / 256 - 1e-12 <= grid.min() <= -27 / 256 + 1e-5


@pytest.mark.parametrize("name", ["monkey_saddle", "degenerate_saddle"])
def test_two_dim_saddles_reject_invalid_values(name):
    with pytest.raises(ValueError, match=name):
        problems.get(name, init_radius=-1.0)


# --- chained saddle (Du et al. 2017) ---

TAU = L = math.e
GAMMA = 1.0


def _paper_g1(a):
    return (-GAMMA * a**2 + (-14 * L + 10 * GAMMA) / (3 * TAU) * (a - TAU) ** 3
            + (5 * L - 3 * GAMMA) / (2 * TAU**2) * (a - TAU) ** 4)


def _paper_g2(a):
    u = (a - 2 * TAU) / TAU
    return -GAMMA - (L + GAMMA) * (10 * u**3 + 15 * u**4 + 6 * u**5)


NU = -_paper_g1(2 * TAU) + 4 * L * TAU**2  # the paper's definition of nu
D_TEST = 4
_PAD = 2048  # every batch is padded to this size so that each dtype compiles once


@functools.cache
def _chained_program(x64):
    del x64  # part of the cache key: jit traces once per x64 setting
    return _value_grad_hessian(lambda x: chained_saddle_value(x, TAU, L, GAMMA))


def _chained_eval(points, x64=False):
    """f, grad f, Hessian of the chained saddle (d = D_TEST) at points, float64 or float32."""
    points = np.asarray(points, np.float64)
    padded = np.zeros((_PAD, D_TEST))
    padded[: len(points)] = points
    with jax.enable_x64(x64):
        x = jnp.asarray(padded, jnp.float64 if x64 else jnp.float32)
        out = _chained_program(x64)(x)
    return tuple(np.asarray(a, np.float64)[: len(points)] for a in out)


def _paper_octopus(x):
    """Du et al. 2017 eqs. (6)-(10) on the octopus domain, written out case by case (numpy)."""
    a = np.abs(x)
    d = len(a)
    i = next((j for j in range(d) if a[j] <= 2 * TAU), d)  # 0-based phase: first a_j <= 2 tau
    head = L * np.sum((a[:i] - 4 * TAU) ** 2) - i * NU
    if i == d:
        return head
    if a[i] <= TAU:
        return head - GAMMA * a[i] ** 2 + L * np.sum(a[i + 1:] ** 2)
    if i == d - 1:
        return head + _paper_g1(a[i])
    return head + _paper_g1(a[i]) + _paper_g2(a[i]) * a[i + 1] ** 2 + L * np.sum(a[i + 2:] ** 2)


def _octopus_domain_points(rng, d, per_region=20):
    """Random points of every box of the paper's domain, with random signs (the mirroring)."""
    points = []
    for i in range(d + 1):
        for lo, hi in ((0.0, TAU), (TAU, 2 * TAU)) if i < d else ((None, None),):
            for _ in range(per_region):
                a = np.concatenate([
                    rng.uniform(2 * TAU, 6 * TAU, i),
                    rng.uniform(lo, hi, 1) if i < d else [],
                    rng.uniform(0.0, TAU, max(d - i - 1, 0)),
                ])
                points.append(a * rng.choice([-1.0, 1.0], d))
    return np.asarray(points)


def test_chained_saddle_matches_the_paper_on_its_domain():
    pts = _octopus_domain_points(np.random.default_rng(0), D_TEST)
    expected = np.array([_paper_octopus(x) for x in pts])
    got = _chained_eval(pts, x64=True)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-10)


def test_chained_saddle_extension_is_c2_across_piece_boundaries():
    # Points with a_i exactly on a boundary (tau or 2 tau) and the other coordinates anywhere in
    # [0, 6 tau], most of them outside the paper's domain: value, gradient and Hessian must agree
    # on both sides up to O(eps) (a jump from a wrong gluing would be O(1)).
    d, eps = D_TEST, 1e-7
    rng = np.random.default_rng(1)
    base = rng.uniform(0.0, 6 * TAU, (64, d)) * rng.choice([-1.0, 1.0], (64, d))
    which = rng.integers(0, d, 64)
    edge = rng.choice([TAU, 2 * TAU], 64)
    base[np.arange(64), which] = edge
    step = np.zeros_like(base)
    step[np.arange(64), which] = eps
    for a in _chained_eval(np.concatenate([base - step, base + step]), x64=True):
        lo, hi = np.split(a, 2)
        # Third derivatives reach ~1e4 off the domain (L q S"'(t) / tau^3 with q up to ~3 (6 tau)^2),
        # so a C^2 function jumps by at most ~2e-3 over 2 eps; a mis-glued piece jumps by O(1)-O(nu).
        assert np.max(np.abs(lo - hi)) <= 1e-4 * (1 + np.max(np.abs(lo)))


def test_chained_saddle_saddles_and_minima():
    d = D_TEST
    p = problems.get("chained_saddle", dim=d)
    nu = p.reference.extra["nu"]
    assert nu == pytest.approx(NU, rel=1e-14)
    assert p.reference.f_star == pytest.approx(-d * NU, rel=1e-14)
    assert len(p.saddles) == d
    minima = [4 * TAU * np.ones(d), 4 * TAU * np.array([-1, 1, -1, 1.0])]
    # Nothing sampled in the box [-6 tau, 6 tau]^d goes below f* (evaluated in the same batch).
    samples = np.random.default_rng(2).uniform(-6 * TAU, 6 * TAU, (_PAD - d - 2, d))
    points = np.concatenate([[np.asarray(s.point) for s in p.saddles], minima, samples])
    values, grads, hessians = _chained_eval(points)  # the function behind p.full_loss
    eigs = np.linalg.eigvalsh(hessians)
    assert np.min(values[d + 2:]) > p.reference.f_star
    values, grads, eigs = values[: d + 2], grads[: d + 2], eigs[: d + 2]
    scale = d * NU
    np.testing.assert_allclose(grads, 0.0, atol=1e-5 * scale)
    for k, s in enumerate(p.saddles):
        np.testing.assert_allclose(np.asarray(s.point)[:k], 4 * TAU, rtol=1e-6)
        assert np.all(np.asarray(s.point)[k:] == 0.0)
        assert s.value == pytest.approx(-k * NU) and s.index == 1
        assert values[k] == pytest.approx(s.value, abs=1e-6 * scale)
        # Hessian diag(2L, .., 2L, -2 gamma, 2L, ..): one negative eigenvalue.
        np.testing.assert_allclose(eigs[k], [-2 * GAMMA] + [2 * L] * (d - 1), rtol=1e-4)
    np.testing.assert_allclose(values[d:], p.reference.f_star, rtol=1e-6)
    np.testing.assert_allclose(eigs[d:], 2 * L, rtol=1e-4)


def test_gradient_descent_visits_the_saddles_with_growing_escape_times():
    # The paper's experiment: step 1/(4L) from uniform [-1, 1]^d. Escaping saddle k takes a
    # constant factor (~ log 2 / log(1 + 1/(2e)) ~ 4) longer than escaping saddle k-1. In float32
    # the later coordinates, halved every step, underflow to exactly 0 after ~150 steps: GD then
    # sits on the saddle s_3 for good (at d = 5), which this test also pins down.
    d, steps = 5, 600
    p = problems.get("chained_saddle", dim=d)
    x0 = p.init(jax.random.key(0))
    assert float(jnp.max(jnp.abs(x0))) <= 1.0
    # A jitted step in a Python loop compiles several times faster than the same loop in lax.scan.
    step = jax.jit(lambda x: x - jax.grad(p.full_loss)(x) / (4 * L))
    path = [x0]
    for _ in range(steps - 1):
        path.append(step(path[-1]))
    a = np.abs(np.stack([np.asarray(x, np.float64) for x in path]))
    # phase(t) = number of leading coordinates past 2 tau, i.e. how many saddles were escaped.
    phase = np.argmin(np.concatenate([a > 2 * TAU, np.zeros((steps, 1), bool)], axis=1), axis=1)
    assert np.all(np.diff(phase) >= 0)  # the saddles are visited in order, never revisited
    # The trajectory stays in the paper's domain: coordinates after the active one stay <= tau.
    for t in range(steps):
        assert np.all(a[t, phase[t] + 1:] <= TAU)
    escape = [int(np.argmax(phase >= k)) for k in (1, 2, 3)]
    assert phase[-1] == 3 and 0 < escape[0] < escape[1] < escape[2]
    gaps = np.diff([0, *escape])
    assert gaps[1] > 2 * gaps[0] and gaps[2] > 2 * gaps[1], escape
    # Between escapes the iterate comes close to each saddle s_k.
    for k in (1, 2, 3):
        s = np.asarray(p.saddles[k].point, np.float64)
        assert np.min(np.linalg.norm(a - s, axis=1)) < 0.1  # saddles are 4 tau ~ 11 apart
    assert np.all(a[-1, 3:] == 0.0)  # underflowed: exactly on s_3's stable manifold
    np.testing.assert_allclose(a[-1], np.asarray(p.saddles[3].point), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"dim": 1}, {"tau": 0.0}, {"L": -1.0}, {"gamma": 0.0}, {"init_radius": 0.0}]
)
def test_chained_saddle_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError, match="chained_saddle"):
        problems.get("chained_saddle", **kwargs)


# --- matrix factorization ---


def test_matrix_factorization_saddle_and_minima():
    n, r = 6, 2
    p = problems.get("matrix_factorization", n=n, rank=r, instance=3)
    u_star = matrix_factorization_factor(n, r, 3).astype(np.float64)
    m = u_star @ u_star.T
    mu, vecs = np.linalg.eigh(m)
    mu, vecs = mu[::-1], vecs[:, ::-1]
    assert p.reference.f_star == 0.0
    (saddle,) = p.saddles
    assert saddle.value == pytest.approx(0.5 * np.sum(m * m), rel=1e-6)
    assert saddle.index == r * r
    rot = np.array([[0.6, -0.8], [0.8, 0.6]])
    partial = np.zeros((n, r))
    partial[:, 0] = np.sqrt(mu[0]) * vecs[:, 0]  # top eigen-direction learned only: a saddle
    points = jnp.asarray([np.zeros((n, r)), u_star, u_star @ rot, partial], jnp.float32)
    values, grads, hessians = (np.asarray(a, np.float64) for a in _value_grad_hessian(p.full_loss)(points))
    eigs = np.linalg.eigvalsh(hessians.reshape(4, n * r, n * r))
    np.testing.assert_allclose(grads, 0.0, atol=1e-6)
    np.testing.assert_allclose(values, [saddle.value, 0.0, 0.0, 0.5 * mu[1] ** 2], rtol=1e-5, atol=1e-10)
    # At U = 0 the Hessian is -2 (I_r kron M*): eigenvalues -2 mu_j, each r times.
    np.testing.assert_allclose(eigs[0], np.sort(np.repeat(-2 * np.clip(mu, 0, None), r)), atol=1e-5)
    assert int(np.sum(eigs[0] < -1e-5)) == saddle.index
    assert eigs[1][0] > -1e-5 and eigs[2][0] > -1e-5  # minima: PSD (flat along rotations)
    assert eigs[3][0] < -1e-3  # the partial solution is a strict saddle


@pytest.mark.parametrize(
    "kwargs", [{"n": 0}, {"rank": 0}, {"rank": 11}, {"instance": -1}, {"init_scale": 0.0}]
)
def test_matrix_factorization_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError, match="matrix_factorization"):
        problems.get("matrix_factorization", **kwargs)
