"""Negative-curvature descent: gradient steps, and a Lanczos negative-curvature step near saddles.

At each step, with ``g`` the gradient,

  * if ``|g| > grad_threshold``: a gradient step ``x <- x - learning_rate g``;
  * otherwise ``k`` Lanczos steps from a random start give the smallest Ritz value
    ``lambda`` of ``H(x)`` and its unit Ritz vector ``u``, signed so that ``u.g <= 0`` (if
    ``u.g = 0``, so that ``u.v0 >= 0`` for the random start ``v0``: deterministic given the
    key, random across seeds); then if
    ``lambda < -curvature_threshold`` the step is

        x <- x + (|lambda| / L) u,          L = hessian_lipschitz,

    and otherwise (an approximate second-order stationary point) the gradient step.

With an ``L``-Lipschitz Hessian the cubic upper model gives
``f(x + t u) <= f(x) + t u.g - t^2 |lambda| / 2 + L t^3 / 6``, so the step ``t = |lambda| / L``
decreases ``f`` by at least ``|lambda|^3 / (3 L^2)``: the negative-curvature step of Carmon,
Duchi, Hinder and Sidford (``eta = alpha / L_2``; "Accelerated methods for nonconvex
optimization", SIAM J. Optim. 28(2) 2018) and of Curtis and Robinson ("Exploiting negative
curvature in deterministic and stochastic optimization", Math. Program. 176 2019; their
``2 |lambda| / L`` minimizes the same model). The gradient step gives ``|g|^2 / (2 L_1)`` for
``learning_rate = 1 / L_1``; every step decreases ``f`` by at least the smaller of the two until
an approximate second-order stationary point (``|g| <= grad_threshold``,
``lambda_min >= -curvature_threshold``) is reached. The Lanczos start is random (the per-step ``key``):
a start vector orthogonal to the negative eigenspace (``g`` itself at an exact saddle,
say ``g = 0`` or ``g`` along the positive directions) would never find it (Kuczynski and
Wozniakowski 1992 for the random-start Lanczos rate).

``L`` is a scale hyperparameter, not estimated: the step length is ``|lambda| / L``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import OracleCounts, batch_cond, refuse_complex, require_update_args, warn_no_key
from optimizers.linalg import extreme_eigs, flat_hvp, working_dtype


class NcDescentState(NamedTuple):
    step: jax.Array  # int32 step counter (seeds the Lanczos start when no key is passed)
    counts: OracleCounts  # Lanczos HVPs (<= k) on each step that ran it, 0 on the others


def scale_by_nc_descent(
    *,
    learning_rate: float | jax.Array,
    grad_threshold: float | jax.Array,
    curvature_threshold: float | jax.Array,
    hessian_lipschitz: float | jax.Array,
    k: int,
) -> optax.GradientTransformationExtraArgs:
    """Negative-curvature descent; the returned updates are the full step (apply them as is).

    ``update`` needs ``params`` and ``value_fn``; ``key`` (a PRNG key) seeds the Lanczos start
    vector (without it, a warning and a fixed key folded with the step count). For bfloat16 or
    float16 params the Lanczos process runs in float32 on HVPs taken at the params' precision.

    Args:
      learning_rate: gradient step size.
      grad_threshold: look for negative curvature only when ``|g| <= grad_threshold``.
      curvature_threshold: take the curvature step only when ``lambda_min < -curvature_threshold``.
      hessian_lipschitz: ``L``; the curvature step has length ``|lambda_min| / L``.
      k: Lanczos steps (static Python int).

    Oracle cost per step: when ``|g| <= grad_threshold`` one HVP per Lanczos step run
    (``k``, or fewer if the Krylov space is invariant first, e.g. ``n < k``), else 0.
    The branch is a ``batch_cond``: on its own only the taken branch runs; under the runner's
    ``vmap`` (``axis_name``) the search runs when some run of the batch needs it, and the count
    stays per run, independent of batching.
    """
    k = int(k)

    def init_fn(params):
        refuse_complex("nc_descent", params)
        return NcDescentState(jnp.zeros([], jnp.int32), OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, axis_name=None, **extra_args):
        del extra_args
        require_update_args("nc_descent", "Hessian-vector products of the loss", params=params, value_fn=value_fn)
        g, unravel = ravel_pytree(updates)
        dtype = g.dtype
        lr = jnp.asarray(learning_rate, dtype)
        if key is None:
            warn_no_key("nc_descent")
            key = jax.random.fold_in(jax.random.key(0), state.step)
        grad_step = -lr * g

        def curvature(_):
            hv, _, _ = flat_hvp(value_fn, params)
            v0 = jax.random.normal(key, g.shape, working_dtype(dtype))
            ext = extreme_eigs(hv, v0, k)
            lam, u = ext.min_value, ext.min_vector
            ug = jnp.vdot(u, g)
            # u.g = 0 (an exact saddle): the side the random start lies on, so seeds differ
            tie = jnp.where(jnp.vdot(u, v0) >= 0, 1.0, -1.0)
            sign = jnp.where(ug > 0, -1.0, jnp.where(ug < 0, 1.0, tie)).astype(u.dtype)
            t = jnp.abs(lam) / jnp.asarray(hessian_lipschitz, u.dtype)
            use = lam < -jnp.asarray(curvature_threshold, u.dtype)
            return jnp.where(use, t * sign * u, grad_step).astype(dtype), ext.lanczos.num_valid

        def gradient(_):
            return grad_step, jnp.int32(0)

        small = jnp.linalg.norm(g) <= jnp.asarray(grad_threshold, dtype)
        step, hvps = batch_cond(small, curvature, gradient, None, axis_name=axis_name)
        new_state = NcDescentState(state.step + 1, state.counts.add(hvps=hvps))
        return unravel(step.astype(dtype)), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def nc_descent(
    learning_rate: float | jax.Array = 1e-3,
    grad_threshold: float | jax.Array = 1e-3,
    curvature_threshold: float | jax.Array = 1e-3,
    hessian_lipschitz: float | jax.Array = 1.0,
    k: int = 10,
) -> optax.GradientTransformationExtraArgs:
    """Negative-curvature descent: gradient steps, and x + (|lambda_min|/L) u at small gradients.

    Carmon et al. 2018; Curtis and Robinson 2019. See ``scale_by_nc_descent``. The quick suite's best
    point (``python -m bench defaults``, docs/DEFAULTS.md) is not the default: its Lipschitz estimate
    0.0546 makes the negative-curvature step |lambda_min| / L ~ 18 |lambda_min|, which blows up on
    Rosenbrock (tests/optimizers/test_safeguards.py).
    """
    return scale_by_nc_descent(
        learning_rate=learning_rate,
        grad_threshold=grad_threshold,
        curvature_threshold=curvature_threshold,
        hessian_lipschitz=hessian_lipschitz,
        k=k,
    )
