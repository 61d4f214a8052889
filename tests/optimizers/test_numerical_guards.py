"""Numerical guards: the second-order subsolvers never emit a NaN or Inf step on finite inputs.

Every optimizer that takes Hessian-vector products (cubic regularization and its stochastic and
sub-sampled variants, Newton-CG, saddle-free Newton, negative-curvature descent, ...) gets one
update, in float32 at its registered defaults, on the quadratic f(x) = s (x^T A x / 2 + b^T x) at
x0 = (1, ..., 1) (n = 4), for constructed A, b, s that break naive subsolvers:

* singular: A = 0 (no curvature at all: Lanczos breaks down at once, CG's p^T A p = 0) and
  A = diag(1, 1, 0, 0) with the gradient partly in the null space;
* indefinite: A = diag(1, -1, 2, -3) and the rank-one A = -u u^T;
* zero gradient: b = -A x0, a critical point (the strict saddle diag(1, -1, 1, -1)): the update
  must be finite (0, or a negative-curvature step);
* huge: s = 1e18 (gradients and HVPs of order 1e18, their squares 1e36, near float32's 3.4e38);
* tiny: s = 1e-30 (gradients of order 1e-30, squares under float32's smallest normal 1.2e-38).

Finite is the guarantee; a method may return a zero step where its arithmetic underflows (a Lanczos
start g / |g| with |g|^2 flushed to 0 is a zero gradient to it). Newton-CG is checked further: its
step is the same at every scale of the loss.

Each case is a lane of one program per optimizer (``lax.map`` over the cases, A, b and s traced), so
the whole test is one compile per optimizer. The sub-sampled methods draw from a finite sum of
identical copies of f (``SampleLoss``), so every sample is f itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optimizers

N = 4
X0 = np.ones(N, np.float32)
U = np.array([1.0, 2.0, -1.0, 0.5], np.float32)
_SADDLE = np.diag([1.0, -1.0, 1.0, -1.0]).astype(np.float32)
CASES = {  # name: (A, b, s)
    "zero_curvature": (np.zeros((N, N)), np.ones(N), 1.0),
    "singular": (np.diag([1.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0, 1.0]), 1.0),
    "indefinite": (np.diag([1.0, -1.0, 2.0, -3.0]), np.zeros(N), 1.0),
    "rank_one_negative": (-np.outer(U, U), np.zeros(N), 1.0),
    "zero_gradient_saddle": (_SADDLE, -_SADDLE @ X0, 1.0),
    "zero_gradient_min": (np.eye(N), -X0, 1.0),
    "huge": (np.diag([1.0, -1.0, 2.0, 0.5]), np.ones(N), 1e18),
    "tiny": (np.diag([1.0, -1.0, 2.0, 0.5]), np.ones(N), 1e-30),
}
A = jnp.asarray(np.stack([c[0] for c in CASES.values()]), jnp.float32)
B = jnp.asarray(np.stack([c[1] for c in CASES.values()]), jnp.float32)
S = jnp.asarray([c[2] for c in CASES.values()], jnp.float32)
HVP_METHODS = [n for n in optimizers.names() if optimizers.spec(n).needs_hvp]


def _loss(x, a, b, s):
    return s * (0.5 * x @ (a @ x) + b @ x)


def _update(name, **hparams):
    tx = optimizers.get(name, **hparams)

    def one(case):
        a, b, s = case

        def f(x):
            return _loss(x, a, b, s)

        x = jnp.asarray(X0)
        v, g = jax.value_and_grad(f)(x)
        # the sub-sampled methods draw from a finite sum of 64 copies of f; the others ignore it
        sample_loss = optimizers.SampleLoss(lambda p, idx: f(p), 64, 8)
        u, _ = tx.update(g, tx.init(x), x, value=v, value_fn=f, key=jax.random.key(0), sample_loss=sample_loss)
        return u

    return jax.jit(lambda a, b, s: jax.lax.map(one, (a, b, s)))


@pytest.mark.parametrize("name", HVP_METHODS)
def test_no_nan_or_inf_step_on_singular_indefinite_critical_huge_or_tiny_input(name):
    u = np.asarray(_update(name)(A, B, S))
    bad = [case for case, row in zip(CASES, u) if not np.all(np.isfinite(row))]
    assert not bad, f"{name}: non-finite update on {bad}: {u}"
    # at a minimizer (zero gradient, positive-definite A) no method has a reason to move far
    i = list(CASES).index("zero_gradient_min")
    assert np.linalg.norm(u[i]) <= 1e-3, (name, u[i])


def test_undamped_newton_step_is_the_same_at_every_scale_of_the_loss():
    # Newton's step -H^{-1} g does not depend on s: on A = diag(1, -1, 2, 0.5), b = 1 at x0 = 1 it is
    # -(2/1, 0/-1, 3/2, 1.5/0.5) = (-2, 0, -1.5, -3) for s = 1e18 and 1e-30 alike (CG on b / max|b|; on b
    # itself r.r overflows or flushes to 0 and the step is lost). Undamped: a damping of 1e-3 rightly
    # dominates a Hessian of 1e-30.
    u = np.asarray(_update("newton", damping=0.0)(A, B, S))
    expected = np.array([-2.0, 0.0, -1.5, -3.0])
    for case in ("huge", "tiny"):
        np.testing.assert_allclose(u[list(CASES).index(case)], expected, rtol=1e-5, atol=1e-6, err_msg=case)
