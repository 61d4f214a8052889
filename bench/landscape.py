"""Landscape diagnostics at a point: extreme Hessian eigenvalues of the full loss.

Up to ``DENSE_MAX`` parameters the Hessian is formed (``jax.hessian``: one forward-over-reverse
pass per coordinate, batched) and diagonalized (``eigvalsh``): exact up to rounding, and about
2.5x faster than Lanczos at these sizes (rosenbrock(dim=20), 32 points: 0.54 vs 1.37 ms on a
2-core CPU). Above it, Lanczos with full reorthogonalization (``optimizers.linalg``) on HVPs,
matrix-free: with k = MAX_LANCZOS iterations the extreme Ritz values converge first
(Kaniel-Paige theory). The runner calls this once per run, at the end point, to tell a saddle
(lambda_min < 0) from a minimum: ``dispatch_end_points`` runs that for a whole cell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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


# --- end points of a cell: one compiled program per problem ---------------------------------

# End points go through the landscape program in chunks of this many runs, so one compiled
# program per problem serves every cell of it, whatever its number of seeds and grid points.
CHUNK = 16

_PROGRAMS: dict[tuple, Any] = {}


def clear_cache() -> None:
    _PROGRAMS.clear()


def _program(full_loss, name: str, leaves: list[np.ndarray], treedef):
    from bench.program import compiler_options

    cache_key = (name, treedef, tuple((x.shape[1:], str(x.dtype)) for x in leaves))
    if cache_key not in _PROGRAMS:
        chunk = jax.tree_util.tree_unflatten(
            treedef, [jax.ShapeDtypeStruct((CHUNK,) + x.shape[1:], x.dtype) for x in leaves])
        fn = jax.vmap(lambda p: extreme_eigenvalues(full_loss, p))
        _PROGRAMS[cache_key] = jax.jit(fn).lower(chunk).compile(compiler_options())
    return _PROGRAMS[cache_key]


def dispatch_end_points(problem, params) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """Start the extreme-eigenvalue program on a batch of end points (leading axes H, S).

    Returns a function that waits for the results, ``(lambda_min, lambda_max)`` of shape (H, S).
    JAX dispatches asynchronously, so the caller builds its tables while the program runs.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    lead = leaves[0].shape[:2]
    n = lead[0] * lead[1]
    flat = [np.asarray(x).reshape((n,) + x.shape[2:]) for x in leaves]
    pad = -n % CHUNK
    if pad:  # repeat the last end point; its copies are computed and dropped
        flat = [np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) for x in flat]
    program = _program(problem.full_loss, problem.name, flat, treedef)
    outs = [program(jax.tree_util.tree_unflatten(treedef, [x[i:i + CHUNK] for x in flat]))
            for i in range(0, n + pad, CHUNK)]

    def wait() -> tuple[np.ndarray, np.ndarray]:
        lo = np.concatenate([np.asarray(o[0]) for o in outs])[:n].reshape(lead)
        hi = np.concatenate([np.asarray(o[1]) for o in outs])[:n].reshape(lead)
        return lo, hi

    return wait


def end_point_eigenvalues(problem, params) -> tuple[np.ndarray, np.ndarray]:
    """Extreme Hessian eigenvalues of ``problem.full_loss`` at a batch of end points (axes H, S).

    A program of its own, compiled once per problem (end points go through it ``CHUNK`` at a
    time) rather than once per cell: every cell of a problem shares it.
    """
    return dispatch_end_points(problem, params)()
