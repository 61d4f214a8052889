"""Damped Newton's method with a matrix-free conjugate-gradient inner solve.

    (H(x) + damping I) s = g,      x <- x - learning_rate s,

with ``H s`` from Hessian-vector products of ``value_fn`` (forward-over-reverse) and the linear
system solved by at most ``cg_iters`` conjugate-gradient iterations ("Hessian-free" or
truncated Newton: Dembo, Eisenstat and Steihaug 1982; Nocedal and Wright, Numerical
Optimization, 2nd ed. 2006, sections 3.3 and 7.1; Martens 2010 for the deep-learning form).

CG here does not test ``p.Hp > 0``, unlike Newton-CG with a trust region or line search: on an
indefinite Hessian it keeps iterating towards the stationary point of the local quadratic
model. That is the textbook property this variant is in the suite to show: Newton's step is
invariant to the sign of the curvature, so Newton is attracted to saddle points as much as to
minima (Dauphin et al. 2014, section 3).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import OracleCounts, refuse_complex, require_update_args
from optimizers.linalg import conjugate_gradient, flat_hvp, working_dtype


class ScaleByNewtonState(NamedTuple):
    counts: OracleCounts  # HVPs spent by CG (one per iteration actually run)


def scale_by_newton(
    *,
    damping: float | jax.Array,
    cg_iters: int,
    cg_tol: float | jax.Array,
) -> optax.GradientTransformationExtraArgs:
    """Precondition the incoming gradient by ``(H + damping I)^{-1}``, solved by CG on HVPs.

    Returns ``s ~ (H + damping I)^{-1} g`` (no sign change: chain it with
    ``optax.scale_by_learning_rate``). ``value_fn`` (the loss whose Hessian is used) must be
    passed to ``update`` as an extra argument, together with ``params``.

    Args:
      damping: Levenberg-Marquardt / Tikhonov shift ``lambda >= 0`` added to the Hessian.
      cg_iters: maximum CG iterations (static Python int); each costs one HVP.
      cg_tol: CG stops when ``|r| <= cg_tol |g|``.

    Oracle cost per step: one HVP per CG iteration actually run (``<= cg_iters``; per problem,
    the same with or without ``vmap``), counted in ``state.counts.hvps``.

    Precision: for bfloat16 or float16 params the HVPs are taken at the params' precision and
    the CG recurrence runs in float32; the update comes back in the gradients' dtype.
    """
    cg_iters = int(cg_iters)

    def init_fn(params):
        refuse_complex("newton", params)
        return ScaleByNewtonState(OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, **extra_args):
        del extra_args
        require_update_args("newton", "Hessian-vector products of the loss", params=params, value_fn=value_fn)
        g, unravel = ravel_pytree(updates)
        hv, _, _ = flat_hvp(value_fn, params)
        dtype = working_dtype(g.dtype)
        lam = jax.numpy.asarray(damping, dtype)

        def matvec(v):
            return hv(v).astype(dtype) + lam * v

        res = conjugate_gradient(matvec, g.astype(dtype), cg_iters, cg_tol)
        return unravel(res.x.astype(g.dtype)), ScaleByNewtonState(state.counts.add(hvps=res.num_iters))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def newton(
    learning_rate: float | jax.Array = 1.0,
    damping: float | jax.Array = 1e-3,
    cg_iters: int = 20,
    cg_tol: float | jax.Array = 1e-6,
) -> optax.GradientTransformationExtraArgs:
    """Damped Newton: x <- x - lr (H + damping I)^{-1} g, the system solved by CG on HVPs.

    Needs ``value_fn`` (and ``params``) in ``update``. See ``scale_by_newton``.
    """
    return optax.chain(
        scale_by_newton(damping=damping, cg_iters=cg_iters, cg_tol=cg_tol),
        optax.scale_by_learning_rate(learning_rate),
    )
