"""Large spin glasses: couplings as program arguments, and couplings generated inside the contraction.

``spin_glass`` hands its symmetric coupling tensor to compiled programs as an argument
(``Problem.constants`` / ``Problem.bind``): the bound functions are the captured ones bit for bit,
and the program text no longer holds the n^p numbers. ``spin_glass_generated`` draws the raw
couplings slab by slab from the instance key inside the contraction (O(n^2) memory); on small n its
energy is checked against a float64 numpy contraction of the same couplings built dense
(``generated_couplings``), and its gradient and HVP against the dense-tensor code path of
``spin_glass`` on the symmetrized tensor, to float32 round-off (sums of n^p terms of order one:
a few 1e-7 absolute measured, checked at 1e-5 of the scale).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from problems.spin_glass import _chart_functions, generated_couplings, symmetrize


def _brute(j, w):
    """float64 H(s)/N at s = sqrt(N) w/|w| over the raw couplings j."""
    p, n = j.ndim, j.shape[0]
    s = np.sqrt(n) * w / np.linalg.norm(w)
    letters = "abcd"[:p]
    return n ** (-(p - 1) / 2) * np.einsum(f"{letters}," + ",".join(letters) + "->", j, *([s] * p)) / n


@pytest.mark.parametrize("p,n", [(2, 7), (3, 6), (4, 5)])
def test_generated_couplings_match_the_dense_tensor(p, n):
    prob = problems.get("spin_glass_generated", p=p, n=n, instance=3)
    j = generated_couplings(p, n, 3)
    assert j.shape == (n,) * p and abs(float(j.std()) - 1.0) < 0.35  # iid N(0, 1): n^p >= 49 draws
    dense = _chart_functions(p, n)(jnp.asarray(symmetrize(j) * np.float32(n ** (-(p - 1) / 2))))
    ws = jax.vmap(prob.init)(jax.random.split(jax.random.key(p), 2))
    v = jax.random.normal(jax.random.key(7), (n,))

    def all_of(f, w):
        # values and gradients at both points; the HVP (forward over reverse) at the first (p = 3 only:
        # p = 2 and 4 run the same scan body, with zero and two leading indices)
        hvp = jax.jvp(jax.grad(f), (w[0],), (v,))[1] if p == 3 else jnp.zeros(n)
        return jax.vmap(f)(w), jax.vmap(jax.grad(f))(w), hvp

    (f_gen, g_gen, h_gen), (f_den, g_den, h_den) = jax.jit(
        lambda w: (all_of(prob.full_loss, w), all_of(dense["full_loss"], w)))(ws)
    want = np.array([_brute(j.astype(np.float64), np.asarray(w, np.float64)) for w in ws])
    np.testing.assert_allclose(f_gen, want, atol=1e-5)
    np.testing.assert_allclose(f_gen, f_den, atol=1e-5)
    for got, ref in ((g_gen, g_den), (h_gen, h_den)):
        np.testing.assert_allclose(got, ref, atol=1e-5 * float(np.max(np.abs(ref), initial=1.0)))


def test_generated_memory_is_quadratic():
    # The vmapped gradient at n = 128: XLA's temporary buffers hold a few n^2 slabs (16 n^2 floats
    # allowed; 6 n^2 measured at n = 64), an eighth of the n^3 tensor the dense problem would hold.
    n = 128
    prob = problems.get("spin_glass_generated", p=3, n=n, instance=0)
    compiled = jax.jit(jax.vmap(jax.grad(prob.full_loss))).lower(jnp.ones((4, n), jnp.float32)).compile()
    assert compiled.memory_analysis().temp_size_in_bytes <= 16 * n**2 * 4 <= n**3 * 4 // 8


def test_constants_are_arguments_bitwise():
    n = 12
    prob = problems.get("spin_glass", p=3, n=n, instance=1)
    assert prob.constants.shape == (n, n, n)
    w = jax.vmap(prob.init)(jax.random.split(jax.random.key(0), 2))

    def both(f):
        return jax.vmap(jax.value_and_grad(f))

    captured = jax.jit(both(prob.full_loss))
    lifted = jax.jit(lambda c, x: both(prob.bind(c).full_loss)(x))
    for a, b in zip(captured(w), lifted(prob.constants, w)):
        np.testing.assert_array_equal(a, b)
    # the program text holds no n^3 numbers: smaller than the captured program by more than the tensor's digits
    text_lifted = len(lifted.lower(prob.constants, w).as_text())
    assert len(captured.lower(w).as_text()) - text_lifted > 4 * n**3
    assert problems.get("rosenbrock(dim=2)").bind(None) is problems.get("rosenbrock(dim=2)")  # no constants
    # a field replaced after construction (bench.escape's start near a saddle) is kept, not rebuilt
    start = dataclasses.replace(prob, init=lambda key: jnp.ones(n) / np.sqrt(n))
    bound = start.bind(prob.constants)
    assert bound.init is start.init and bound.full_loss is not start.full_loss


@pytest.mark.parametrize("kwargs,match", [(dict(p=5), "p must be 2, 3 or 4"), (dict(n=1), "n must be >= 2"),
                                          (dict(instance=-1), "instance must be >= 0"),
                                          (dict(n=20_000), "exceeds the limit")])
def test_generated_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        problems.get("spin_glass_generated", **kwargs)
