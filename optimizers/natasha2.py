"""Natasha2 in its first-order form (Allen-Zhu 2018, with Neon2), simplified.

Natasha2 alternates two moves at the current point x (Allen-Zhu 2018, Algorithm 2, with the
Hessian-vector products of its Oja search replaced by Neon2's gradient differences, as Allen-Zhu
and Li 2018, Section 5, do):

1. a negative-curvature search (here ``neon2.neon2_search``); if it finds a direction v of
   curvature below about -delta, the step x <- x +- (delta / L2) v with a random sign;
2. otherwise the Hessian has no eigenvalue below -delta near x, so the regularized objective
   phi(y) = f(y) + delta |y - x|^2 is convex around x, and Natasha1.5 makes progress on it:
   x <- an approximate minimizer of phi.

What is kept: the alternation; the first-order curvature search and its step; the proximal
regularization with weight sigma = delta (Natasha1.5's "sigma-strongly nonconvex" device, which
makes phi strongly convex where lambda_min >= -delta). What is left out: Natasha1.5 itself,
i.e. SVRG's variance reduction (snapshot full gradients, per-sample gradient corrections), its
epochs of random length and the averaging of its iterates, and the stochastic sampling of
Neon2^online; here phi is minimized by ``inner_steps`` gradient steps of size learning_rate on the
step's ``value_fn`` plus the proximal term, starting at y = x (whose gradient is the step's
gradient ``updates``). With mini-batch problems this is a stochastic proximal-point method between
curvature searches, not the paper's variance-reduced one, and it carries none of its rates.

Every step searches (as Natasha2 does at each outer iteration) unless the last search from a point
with |g| <= grad_threshold found nothing and |g| has stayed below the threshold since (as in
``neon2_sgd``); and it searches only where |g| <= grad_threshold (far from stationary points the
gradient dominates and the paper's analysis charges the search nothing useful).

Oracle counts: per step, the Neon2 iterations run (one gradient each) and inner_steps - 1
gradients of ``value_fn`` (the first inner gradient is the step's), all counted exactly; no HVPs.

References:
  Z. Allen-Zhu, "Natasha 2: Faster Non-Convex Optimization Than SGD", NeurIPS 2018 (arXiv:1708.08694).
  Z. Allen-Zhu and Y. Li, "NEON2: Finding Local Minima via First-Order Oracles", NeurIPS 2018.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import OracleCounts, batch_cond, refuse_complex, require_update_args, warn_no_key
from optimizers.linalg import working_dtype
from optimizers.neon2 import curvature_step, flat_grad_fn, neon2_search, search_bookkeeping


class Natasha2State(NamedTuple):
    """State of ``scale_by_natasha2`` (fields as ``Neon2SGDState``)."""

    certified: jax.Array
    num_searches: jax.Array
    num_escapes: jax.Array
    counts: OracleCounts


def scale_by_natasha2(*, learning_rate, grad_threshold, delta, neon_lr, sigma, radius, hessian_lipschitz,
                      neon_iters: int, inner_steps: int) -> optax.GradientTransformationExtraArgs:
    """Simplified first-order Natasha2 (see the module docstring); returns the update.

    Args: as ``scale_by_neon2_sgd``, and
      inner_steps: gradient steps on the regularized objective phi per non-curvature step (static, >= 1).
    """
    t_max, n_inner = int(neon_iters), int(inner_steps)
    if n_inner < 1:
        raise ValueError(f"natasha2: inner_steps must be >= 1, got {inner_steps}")

    def init_fn(params):
        refuse_complex("natasha2", params)
        z = jnp.zeros([], jnp.int32)
        return Natasha2State(jnp.zeros([], bool), z, z, OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, axis_name=None, **extra):
        del extra
        require_update_args("natasha2", "Neon2's gradient differences and its inner gradient steps",
                            params=params, value_fn=value_fn)
        if key is None:
            warn_no_key("natasha2")
            key = jax.random.fold_in(jax.random.key(0), state.num_searches)
        k_xi, k_sign = jax.random.split(key)
        x, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(updates)
        dtype = working_dtype(g.dtype)
        g = g.astype(dtype)
        grad_fn = flat_grad_fn(value_fn, unravel)
        lr = jnp.asarray(learning_rate, dtype)
        reg = jnp.asarray(delta, dtype)
        xw = x.astype(dtype)

        def proximal():
            # gradient steps on phi(y) = f(y) + delta |y - x|^2 from y = x (grad phi(x) = g)
            def body(_, carry):
                y, gy = carry
                y = y - lr * (gy + 2.0 * reg * (y - xw))
                return y, grad_fn(y.astype(x.dtype)).astype(dtype)

            y = xw - lr * g
            if n_inner > 1:
                y, gy = jax.lax.fori_loop(0, n_inner - 2, body, (y, grad_fn(y.astype(x.dtype)).astype(dtype)))
                y = y - lr * (gy + 2.0 * reg * (y - xw))
            return y - xw

        gnorm = jnp.linalg.norm(g)
        small = gnorm <= grad_threshold
        search = small & ~state.certified

        def do_search():
            res = neon2_search(grad_fn, x, g, k_xi, neon_lr, sigma, radius, t_max)
            nc = curvature_step(res, k_sign, reg, hessian_lipschitz, dtype)
            step = batch_cond(res.found, lambda: nc, proximal, axis_name=axis_name)
            grads = res.iterations + jnp.where(res.found, 0, n_inner - 1)
            return step, res.found, grads

        def no_search():
            return proximal(), jnp.zeros([], bool), jnp.full([], n_inner - 1, jnp.int32)

        step, found, grads = batch_cond(search, do_search, no_search, axis_name=axis_name)
        new_state = Natasha2State(**search_bookkeeping(state, small, search, found, grads))
        return unravel(step.astype(x.dtype)), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def natasha2(
    learning_rate: float = 1e-2,
    grad_threshold: float = 1e-3,
    delta: float = 0.5,
    neon_lr: float = 0.1,
    sigma: float = 1e-5,
    radius: float = 1e-3,
    hessian_lipschitz: float = 1.0,
    neon_iters: int = 200,
    inner_steps: int = 2,
) -> optax.GradientTransformationExtraArgs:
    """Natasha2, first-order and simplified (Allen-Zhu 2018 with Neon2): curvature search, else proximal steps.

    Where |g| <= grad_threshold, a Neon2 search for curvature below -delta and a step
    +-(delta / hessian_lipschitz) along it; otherwise (or when none is found) inner_steps gradient
    steps on f(y) + delta |y - x|^2. Natasha1.5's variance reduction is left out; see
    ``scale_by_natasha2``.
    """
    return scale_by_natasha2(learning_rate=learning_rate, grad_threshold=grad_threshold, delta=delta,
                             neon_lr=neon_lr, sigma=sigma, radius=radius, hessian_lipschitz=hessian_lipschitz,
                             neon_iters=neon_iters, inner_steps=inner_steps)
