"""Saddle-free Newton in a Krylov subspace (Dauphin et al. 2014).

Newton's step ``-H^{-1} g`` rescales each eigendirection of the Hessian by ``1/lambda_i``; where
``lambda_i < 0`` it moves *towards* the critical point, so Newton is attracted to saddles.
Saddle-free Newton (SFN) rescales by ``1/|lambda_i|`` instead,

    x <- x - lr |H|^{-1} g,     |H| = U |Lambda| U^T,

which keeps Newton's curvature-adapted step sizes but always descends (``g.|H|^{-1} g > 0``) and
moves away from a saddle along its negative-curvature directions. Dauphin et al. derive it as
the minimizer of a first-order model in a trust region measured by the distance between the
function and its second-order Taylor expansion.

|H| cannot be formed in high dimension; as in the paper it is taken in a k-dimensional Krylov
subspace. Here ``k`` Lanczos steps from ``g`` give an orthonormal ``V`` (k x n) with
``T = V H V^T`` tridiagonal; with ``T = Y diag(theta) Y^T``,

    s = V^T Y (|theta| + damping)^{-1} Y^T V g,      x <- x - lr s.

With ``k >= n`` (or an invariant Krylov space) and a positive-definite Hessian, ``|T| = T`` and
``s`` is the exact damped Newton step. Differences from the paper: Dauphin et al. pick the
damping at each step by a line search over the subspace loss and use Krylov vectors of the
Hessian; here the damping and the learning rate are fixed hyperparameters (tuned by the suite)
and the Krylov space is ``K_k(H, g)``, which contains ``g`` so the step is never orthogonal to it.

Reference: Y. N. Dauphin, R. Pascanu, C. Gulcehre, K. Cho, S. Ganguli and Y. Bengio,
"Identifying and attacking the saddle point problem in high-dimensional non-convex
optimization", NeurIPS 2014, arXiv:1406.2572.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import OracleCounts, refuse_complex, require_update_args
from optimizers.linalg import flat_hvp, lanczos, tridiag_eigh, working_dtype


class ScaleBySaddleFreeNewtonState(NamedTuple):
    counts: OracleCounts  # one HVP per Lanczos step run (<= k per step)


def scale_by_saddle_free_newton(
    *,
    damping: float | jax.Array,
    k: int,
) -> optax.GradientTransformationExtraArgs:
    """Precondition the incoming gradient by ``(|H| + damping I)^{-1}`` in ``K_k(H, g)``.

    Returns ``s = V^T (|T| + damping I)^{-1} V g`` (no sign change: chain it with
    ``optax.scale_by_learning_rate``). ``value_fn`` and ``params`` must be passed to ``update``.
    Eigendirections with ``|theta| + damping = 0`` (only possible with ``damping = 0``) get no
    step (pseudo-inverse), so the result is always finite for finite inputs.

    Args:
      damping: shift added to the absolute Ritz values, ``>= 0``.
      k: Krylov dimension (static Python int); one HVP per Lanczos step.

    Oracle cost per step: one HVP per Lanczos step, ``num_valid <= k``: ``k`` unless the
    Krylov space ``K_j(H, g)`` becomes invariant first (always by ``j = n``; 0 when ``g = 0``).
    Lanczos stops at a breakdown, so this is what was computed, per problem, with or
    without ``vmap``.

    Precision: for bfloat16 or float16 params the HVPs are taken at the params' precision and
    the Lanczos basis and the eigendecomposition are computed in float32; the update comes back
    in the gradients' dtype.
    """
    k = int(k)

    def init_fn(params):
        refuse_complex("saddle_free_newton", params)
        return ScaleBySaddleFreeNewtonState(OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, **extra_args):
        del extra_args
        require_update_args("saddle_free_newton", "Hessian-vector products of the loss", params=params,
                            value_fn=value_fn)
        g_in, unravel = ravel_pytree(updates)
        g = g_in.astype(working_dtype(g_in.dtype))
        hv, _, _ = flat_hvp(value_fn, params)
        res = lanczos(hv, g, k)
        theta, Y = tridiag_eigh(res.alphas, res.betas, res.mask)
        coords = Y.T @ (res.basis @ g)
        denom = jnp.abs(theta) + jnp.asarray(damping, g.dtype)
        # genuine Ritz values come first; padding (past a breakdown) has zero coordinates anyway
        ok = (jnp.arange(k) < res.num_valid) & (denom > 0)
        scaled = jnp.where(ok, coords / jnp.where(ok, denom, 1.0), 0.0)
        s = res.basis.T @ (Y @ scaled)
        new_state = ScaleBySaddleFreeNewtonState(state.counts.add(hvps=res.num_valid))
        return unravel(s.astype(g_in.dtype)), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def saddle_free_newton(
    learning_rate: float | jax.Array = 1.0,
    damping: float | jax.Array = 1e-3,
    k: int = 10,
) -> optax.GradientTransformationExtraArgs:
    """Saddle-free Newton (Dauphin et al. 2014): x <- x - lr (|H| + damping I)^{-1} g in K_k(H, g).

    Needs ``value_fn`` (and ``params``) in ``update``. See ``scale_by_saddle_free_newton``.
    """
    return optax.chain(
        scale_by_saddle_free_newton(damping=damping, k=k),
        optax.scale_by_learning_rate(learning_rate),
    )
