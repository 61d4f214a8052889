"""Hutchinson's estimator of the Hessian diagonal from one Hessian-vector product.

For z with independent Rademacher entries (+-1 with probability 1/2), E[z z^T] = I, so

    E[z * (H z)] = diag(H),   Var[(z * H z)_i] = sum_{j != i} H_ij^2

(Hutchinson 1990; Bekas, Kokiopoulou and Saad 2007 for the diagonal). The estimate is exact
when H is diagonal. One estimate costs one HVP of ``value_fn``, ``jax.jvp(jax.grad(value_fn),
(x,), (z,))`` (forward-over-reverse), and no value or gradient.

``hutchinson_diagonal`` is the estimate itself (AdaHessian calls it); ``scale_by_hutchinson_diagonal``
is the same as an optax transformation for ``optax.contrib.scale_by_sophia``'s
``hessian_diagonal_fn``: it returns the estimate as its "update", draws its probe from the
per-step ``key`` (optax's ``hutchinson_estimator_diag_hessian`` splits a key fixed at
construction, so every run would see the same probes), and counts its HVP in its state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.base import OracleCounts, require_update_args, warn_no_key


def rademacher_like(key: jax.Array, params: Any) -> Any:
    """A pytree like ``params`` of independent +-1 entries (drawn in float32, cast to each leaf's dtype)."""
    z = optax.tree.random_like(key, params, jax.random.rademacher, dtype=jnp.float32)
    return jax.tree.map(lambda r, p: r.astype(jnp.result_type(p)), z, params)


def hutchinson_diagonal(value_fn, params: Any, key: jax.Array) -> Any:
    """z * (H z) for a Rademacher probe z drawn from ``key``: an unbiased estimate of diag(H). One HVP."""
    z = rademacher_like(key, params)
    hz = jax.jvp(jax.grad(value_fn), (params,), (z,))[1]
    return jax.tree.map(lambda h, r: h * r, hz, z)


class HutchinsonDiagonalState(NamedTuple):
    """State of ``scale_by_hutchinson_diagonal``.

    Attributes:
      rng_key: fallback key, split only when ``update`` gets no ``key``.
      counts: the HVPs spent (one per estimate).
    """

    rng_key: jax.Array
    counts: OracleCounts


def scale_by_hutchinson_diagonal(optimizer: str, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """The Hutchinson estimate of diag(H) of ``value_fn`` at ``params`` as the update (ignores the incoming one).

    ``optimizer`` names the optimizer using it, in its errors and warnings.
    """

    def init_fn(params):
        del params
        return HutchinsonDiagonalState(jax.random.key(seed), OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, **extra_args):
        del updates, extra_args
        require_update_args(optimizer, "Hessian-vector products for its Hessian-diagonal estimate",
                            params=params, value_fn=value_fn)
        rng_key = state.rng_key
        if key is None:
            warn_no_key(optimizer)
            rng_key, key = jax.random.split(rng_key)
        diag = hutchinson_diagonal(value_fn, params, key)
        return diag, HutchinsonDiagonalState(rng_key, state.counts.add(hvps=1))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
