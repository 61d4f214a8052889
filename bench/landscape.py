"""Landscape diagnostics at a point: extreme Hessian eigenvalues of the full loss.

Up to ``DENSE_MAX`` parameters the Hessian is formed (``jax.hessian``: one forward-over-reverse
pass per coordinate, batched) and diagonalized (``eigvalsh``): exact up to rounding, and about
2.5x faster than Lanczos at these sizes (rosenbrock(dim=20), 32 points: 0.54 vs 1.37 ms on a
2-core CPU). Above it, Lanczos with full reorthogonalization (``optimizers.linalg``) on HVPs,
matrix-free: with k = MAX_LANCZOS iterations the extreme Ritz values converge first
(Kaniel-Paige theory). The runner calls this once per run, at the end point, to tell a saddle
(lambda_min < 0) from a minimum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from optimizers import linalg

MAX_LANCZOS = 20
DENSE_MAX = 64


def extreme_eigenvalues(f, params, k: int | None = None, key=None):
    """(lambda_min, lambda_max) of the Hessian of ``f`` at ``params``.

    Args:
      f: scalar function of a pytree.
      params: the point (a pytree of arrays).
      k: Lanczos iterations (default ``min(dim, MAX_LANCZOS)``); with ``k`` given, or more than
        ``DENSE_MAX`` parameters, Lanczos is used, else the dense Hessian.
      key: PRNG key of Lanczos's random start vector (default ``jax.random.key(0)``).
    """
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    if k is None and n <= DENSE_MAX:
        w = jnp.linalg.eigvalsh(jax.hessian(lambda x: f(unravel(x)))(flat))
        return w[0], w[-1]
    matvec, flat, _ = linalg.flat_hvp(f, params)
    k = min(n, MAX_LANCZOS) if k is None else min(k, n)
    key = jax.random.key(0) if key is None else key
    v0 = jax.random.normal(key, (n,), flat.dtype)
    eig = linalg.extreme_eigs(matvec, v0, k)
    return eig.min_value, eig.max_value
