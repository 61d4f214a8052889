"""Sub-sampled Newton: the step's gradient, Hessian-vector products on a sub-sample, a line search.

Roosta-Khorasani and Mahoney (2019, Algorithm 3, "SSN with inexact update") for a finite sum
f = (1/n) sum_i f_i: the full gradient g, the Hessian H_S = (1/|S|) sum_{i in S} Hess f_i of a
uniform sample S (here without replacement, of the ladder size of ``optimizers.subsample`` at or
above max(1, floor(hessian_fraction n))), the Newton
system solved inexactly by conjugate gradients (``optimizers.linalg.conjugate_gradient``, as
``newton``), and the Armijo backtracking line search on f:

    (H_S + damping I) p = g   (CG, at most cg_iters HVPs on S, |r| <= cg_tol |g|),
    alpha = the first of learning_rate * beta^j, j = 0..ls_steps-1, with
            f(x - alpha p) <= f(x) - c1 alpha g.p   (+ 4 eps |f(x)|, the resolution of f),
    x <- x - alpha p.

Non-convex f (Xu, Roosta-Khorasani and Mahoney 2020 treat it with sub-sampled trust-region and
cubic models; the cubic one is ``subsampled_cubic``): H_S may be indefinite and p then need not
be a descent direction. The damping (Levenberg-Marquardt shift) is the first guard; where still
g.p <= 0, p is replaced by g (a gradient step, counted in ``num_fallbacks``), so the line search
always searches along a descent direction. If no trial satisfies the Armijo condition the update
is zero (``num_failed``). Like ``newton`` without a trust region, the method may still be drawn
to saddles where H_S is positive definite along the escape direction's complement.

The gradient and the line search use the step's ``value_fn`` and its gradient ``updates`` (the
full objective on deterministic problems; a mini-batch on stochastic ones, where this is the
sub-sampled stochastic Newton method). The Hessian sample comes from the ``sample_loss`` extra
argument (``optimizers.SampleLoss``, passed by the runner for problems with a data set); without it
the HVPs are of ``value_fn`` (the sample is the whole objective) and the method is ``newton`` with
a line search.

Oracle counts: CG's HVPs on |S| samples each count |S| / unit HVPs (``optimizers.subsample``:
summed exactly, reported in whole units of a ``value_fn`` call); each line-search trial one value
of ``value_fn``. The accepted trial's value is the value at the point returned (a
``CachedValueGrad``, reused by the runner on deterministic problems).

References:
  F. Roosta-Khorasani and M. W. Mahoney, "Sub-sampled Newton methods", Math. Program. 174
  (2019) 293-326.
  P. Xu, F. Roosta-Khorasani and M. W. Mahoney, "Newton-type methods for non-convex optimization
  under inexact Hessian information", Math. Program. 184 (2020) 35-70.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers import subsample
from optimizers.base import CachedValueGrad, refuse_complex, require_update_args, warn_no_key
from optimizers.linalg import conjugate_gradient, flat_hvp, working_dtype


class SubsampledNewtonState(NamedTuple):
    """State of ``scale_by_subsampled_newton``.

    Attributes:
      num_steps: updates so far.
      num_fallbacks: steps where the CG direction was not a descent direction (replaced by g).
      num_failed: steps where no line-search trial was accepted (zero update).
      last_alpha: the step length of the last update (0 when it failed).
      counter: oracle calls (``subsample.ExampleCounter``).
      cache: f at the point returned (the accepted trial's value, or f(x) after a failed search).
    """

    num_steps: jax.Array
    num_fallbacks: jax.Array
    num_failed: jax.Array
    last_alpha: jax.Array
    counter: subsample.ExampleCounter
    cache: CachedValueGrad


def scale_by_subsampled_newton(*, learning_rate, damping, cg_tol, c1, beta, hessian_fraction, cg_iters: int,
                               ls_steps: int, ladder_depth: int) -> optax.GradientTransformationExtraArgs:
    """Sub-sampled Newton-CG with Armijo backtracking (see the module docstring); returns the update.

    Args:
      learning_rate: the first trial step length alpha_0.
      damping: shift added to H_S (>= 0).
      cg_tol: CG's relative residual tolerance.
      c1: Armijo's sufficient-decrease constant.
      beta: backtracking factor (0 < beta < 1).
      hessian_fraction: |S| / n, drawn at the ladder size above it (``optimizers.subsample``).
      cg_iters: most CG iterations (static).
      ls_steps: most line-search trials (static).
      ladder_depth: the sample sizes drawn are n, ceil(n/2), ..., ceil(n/2^ladder_depth) (static).
    """
    n_cg, n_ls, depth = int(cg_iters), int(ls_steps), int(ladder_depth)
    if n_ls < 1:
        raise ValueError(f"subsampled_newton: ls_steps must be >= 1, got {ls_steps}")

    def init_fn(params):
        refuse_complex("subsampled_newton", params)
        z = jnp.zeros([], jnp.int32)
        return SubsampledNewtonState(z, z, z, jnp.zeros([], jnp.float32), subsample.ExampleCounter.zeros(),
                                     CachedValueGrad.empty(params))

    def update_fn(updates, state, params=None, *, value=None, value_fn=None, key=None, sample_loss=None, **extra):
        del extra
        require_update_args("subsampled_newton", "Hessian-vector products and its line search",
                            params=params, value_fn=value_fn)
        subsample.check_sample_loss("subsampled_newton", sample_loss)
        x, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(updates)
        dtype = working_dtype(x.dtype)
        g = g.astype(dtype)
        unit = 1 if sample_loss is None else sample_loss.unit
        counter = state.counter
        if value is None:
            value = value_fn(params)
            counter = counter.add(unit, values=unit)
        f0 = jnp.asarray(value, dtype)

        m = jnp.ones([], jnp.int32)
        hess_fn = value_fn
        if sample_loss is not None:
            n = sample_loss.n
            if key is None:
                warn_no_key("subsampled_newton")
                key = jax.random.fold_in(jax.random.key(0), state.num_steps)
            sizes = subsample.ladder(n, depth)
            want = jnp.maximum(1, jnp.floor(jnp.asarray(hessian_fraction, jnp.float32) * n).astype(jnp.int32))
            j = subsample.bucket(sizes, want)
            m = jnp.asarray(sizes, jnp.int32)[j]
            full_fn, _ = subsample.full_objective(sample_loss, value_fn)
            hess_fn = subsample.SampleFunctions(full_fn, sample_loss, sizes,
                                                subsample.permutation(key, sample_loss)).fn(j)
        hv, _, _ = flat_hvp(hess_fn, params)
        lam = jnp.asarray(damping, dtype)
        res = conjugate_gradient(lambda v: hv(v).astype(dtype) + lam * v, g, n_cg, cg_tol)
        slope = g @ res.x
        descent = (slope > 0) & jnp.all(jnp.isfinite(res.x))
        p = jnp.where(descent, res.x, g)
        slope = jnp.where(descent, slope, g @ g)
        counter = counter.add(unit, hvps=res.num_iters * m)

        a0 = jnp.asarray(learning_rate, dtype)
        tol = 4.0 * jnp.finfo(x.dtype).eps * jnp.abs(f0)
        b = jnp.asarray(beta, dtype)
        c = jnp.asarray(c1, dtype)

        def trial(alpha):
            return jnp.asarray(value_fn(unravel(x - (alpha * p).astype(x.dtype))), dtype)

        def cond(carry):
            j, _, _, ok = carry
            return (j < n_ls) & ~ok

        def body(carry):
            j, alpha, _, _ = carry
            f = trial(alpha)
            # Armijo, less the resolution of f: at round-off level (a converged run) the first trial
            # is taken, not a cascade of halvings decided by noise (cf. ARC's negligible steps)
            ok = jnp.isfinite(f) & (f <= f0 - c * alpha * slope + tol)
            return j + 1, jnp.where(ok, alpha, alpha * b), f, ok

        trials, alpha, f_last, ok = jax.lax.while_loop(cond, body, (jnp.zeros([], jnp.int32), a0, f0,
                                                                     jnp.zeros([], bool)))
        counter = counter.add(unit, values=trials * unit)
        alpha = jnp.where(ok, alpha, 0.0)
        step = -(alpha * p)
        new_state = SubsampledNewtonState(
            num_steps=state.num_steps + 1,
            num_fallbacks=state.num_fallbacks + (~descent).astype(jnp.int32),
            num_failed=state.num_failed + (~ok).astype(jnp.int32),
            last_alpha=alpha.astype(jnp.float32),
            counter=counter,
            cache=state.cache.after_trial(ok, f_last, f0, updates),
        )
        return unravel(step.astype(x.dtype)), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def subsampled_newton(
    learning_rate: float = 1.0,
    damping: float = 1e-3,
    cg_tol: float = 1e-6,
    c1: float = 1e-4,
    beta: float = 0.5,
    hessian_fraction: float = 0.05,
    cg_iters: int = 10,
    ls_steps: int = 10,
    ladder_depth: int = 6,
) -> optax.GradientTransformationExtraArgs:
    """Sub-sampled Newton-CG (Roosta-Khorasani and Mahoney 2019): HVPs on a data sub-sample, Armijo line search.

    Solves (H_S + damping I) p = g by CG with HVPs on a sample S of hessian_fraction of the data
    (``sample_loss``; the whole ``value_fn`` without it) and backtracks from learning_rate until
    f(x - alpha p) <= f(x) - c1 alpha g.p. See ``scale_by_subsampled_newton``.
    """
    return scale_by_subsampled_newton(learning_rate=learning_rate, damping=damping, cg_tol=cg_tol, c1=c1,
                                      beta=beta, hessian_fraction=hessian_fraction, cg_iters=cg_iters,
                                      ls_steps=ls_steps, ladder_depth=ladder_depth)
