"""Adaptive cubic regularization (ARC) with a Lanczos subproblem solver.

Nesterov & Polyak (2006) minimize, at each iterate x with g = grad f(x) and B = Hess f(x),

    m(s) = f(x) + g.s + 1/2 s.B s + sigma/3 |s|^3,

and Cartis, Gould & Toint (2011) make sigma adaptive, as a trust-region method does with its
radius: with the ratio of actual to predicted decrease

    rho = (f(x) - f(x + s)) / (f(x) - m(s)),

the step is accepted if rho >= eta1 and rejected (x unchanged) otherwise, and sigma is divided by
gamma (very successful, rho >= eta2), kept (successful) or multiplied by gamma (unsuccessful),
never below sigma_min.

B is only touched through Hessian-vector products of ``value_fn``. The subproblem is solved in
the Krylov space K_k(B, g): k steps of Lanczos with full reorthogonalization from g give an
orthonormal V (k x n) and the tridiagonal T = V B V^T; with b = V g (= |g| e1), the reduced
problem min_y b.y + 1/2 y.T y + sigma/3 |y|^3 is solved exactly (eigendecomposition of T and a
safeguarded Newton iteration on the secular equation |y(lambda)| = lambda/sigma,
y(lambda) = -(T + lambda I)^{-1} b, with the hard case handled; see
``optimizers.cubic_subproblem``) and s = V^T y. Because g lies in the Krylov space, the result is
never worse than the Cauchy point (the minimizer of m along -g), which is also computed as a
fallback for float32 round-off (Cartis et al. 2011, Sec. 6.2, "ARC with the Lanczos method").

When g = 0 (exactly at a critical point) the Krylov space of g is empty; Lanczos then starts
from a fixed pseudo-random vector (same for every call, so the method stays deterministic),
which lets the hard case of the subproblem step off a strict saddle.

Oracle cost per step, beyond the caller's value and gradient: one HVP per Lanczos step run,
m <= k (Lanczos stops at a breakdown, when the Krylov space is invariant: always by m = n, e.g.
m = 2 on a 2-D problem), and one function value f(x + s), counted in ``OracleCounts``. The
state's ``CachedValueGrad`` holds what the step leaves known at the point it returns: f(x + s)
after an accepted step, f(x) and g after a rejected one (x does not move); a caller with the same
objective at the next step (the runner, on deterministic problems) then only computes the
gradient after an accepted step, and nothing after a rejected one.

References:
  Yu. Nesterov and B. T. Polyak, "Cubic regularization of Newton method and its global
  performance", Math. Program. 108 (2006) 177-205.
  C. Cartis, N. I. M. Gould and Ph. L. Toint, "Adaptive cubic regularisation methods for
  unconstrained optimization. Part I: motivation, convergence and numerical results",
  Math. Program. 127 (2011) 245-295.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import CachedValueGrad, OracleCounts, refuse_complex, require_update_args
from optimizers.cubic_subproblem import solve_cubic_eig
from optimizers.linalg import flat_hvp, lanczos, tridiag_eigh, working_dtype

# sigma never grows past this (in units of the user's sigma_0 it is 2^50): keeps float32 finite
# when f(x + s) - f(x) is pure round-off near a minimizer and every step is "unsuccessful".
_SIGMA_SCALE_MAX = 2.0**50


class CubicRegState(NamedTuple):
    """State of ``scale_by_cubic_reg``.

    The hyperparameter ``sigma`` (in ``state.hyperparams`` of ``optimizers.get``) is the initial
    penalty sigma_0; the adaptive one is ``adaptive_sigma`` (``optax.tree.get(state,
    "adaptive_sigma")``).

    Attributes:
      sigma_scale: current sigma divided by the hyperparameter ``sigma`` (starts at 1); kept as
        a ratio so that changing the hyperparameter in a live state takes effect.
      adaptive_sigma: the sigma the next step uses, max(sigma * sigma_scale, sigma_min).
      num_rejected: steps rejected so far (rho < eta1 or a non-finite trial value): the
        safeguard of ARC, which returned a zero update and multiplied sigma by gamma.
      last_sigma: the sigma used by the last step (diagnostic).
      last_rho: the ratio rho of the last step (NaN when no decrease was predicted).
      last_accepted: whether the last step was accepted.
      counts: oracle calls spent by this transformation.
      cache: the value at the point returned (always, after the first update) and the gradient
        there (after a rejected step: the ``updates`` received, the gradient when this
        transformation comes first in its chain, as in ``cubic_reg``).
    """

    sigma_scale: jax.Array
    adaptive_sigma: jax.Array
    num_rejected: jax.Array
    last_sigma: jax.Array
    last_rho: jax.Array
    last_accepted: jax.Array
    counts: OracleCounts
    cache: CachedValueGrad


def _fallback_start(n: int, dtype) -> jax.Array:
    # deterministic, generic direction: no problem is symmetric with respect to it
    return jax.random.normal(jax.random.key(0), (n,), dtype)


def cubic_step(value_fn, params, grads, sigma, k: int):
    """Krylov solution of the cubic subproblem at ``params`` (no acceptance test).

    Returns ``(s, model, extras)`` with ``s`` the flat step, ``model = m(s) - f(x)`` and
    ``extras`` a dict with the Lanczos result, the reduced solution and ``b``.
    """
    matvec, x, _ = flat_hvp(value_fn, params)
    g, _ = ravel_pytree(grads)
    dtype = working_dtype(x.dtype)  # 16-bit params: the Krylov space and subproblem in float32
    g = g.astype(dtype)

    gnorm = jnp.linalg.norm(g)
    # same threshold as lanczos uses for a zero start vector
    v0 = jnp.where(gnorm > jnp.finfo(dtype).tiny, g, _fallback_start(x.shape[0], dtype))
    lz = lanczos(matvec, v0, k)
    theta, Q = tridiag_eigh(lz.alphas, lz.betas, lz.mask)
    b = lz.basis @ g
    sol = solve_cubic_eig(theta, Q, b, jnp.asarray(sigma, dtype))
    s = lz.basis.T @ sol.y
    return s, sol.model, {"lanczos": lz, "solution": sol, "b": b, "T": (Q * theta) @ Q.T}


class ArcTrial(NamedTuple):
    """One ARC trial step (``arc_trial_step``): the step, the trial value and the ratio test's verdict."""

    step: jax.Array  # flat learning_rate * s, in the working dtype
    f_new: jax.Array  # f(x + step)
    accepted: jax.Array  # bool
    rho: jax.Array  # actual / predicted decrease (NaN when none was predicted)
    new_sigma: jax.Array  # the sigma of the next step
    scale: jax.Array  # new_sigma / sigma_0, clipped
    hvps: jax.Array  # Lanczos steps run (HVPs of hess_fn)


def arc_trial_step(hess_fn, trial_fn, params, grads, f0, cur_sigma, sig0, smin, learning_rate, eta1, eta2, gamma,
                   k: int) -> ArcTrial:
    """ARC's step at ``params``: the Krylov cubic step, the trial value and the ratio test.

    ``hess_fn``'s Hessian-vector products build the cubic model (with the gradient ``grads`` and
    the penalty ``cur_sigma``); ``trial_fn`` gives f(x + learning_rate s) for the ratio
    rho = (f0 - f(x + lr s)) / (m(0) - m(lr s)). ``scale_by_cubic_reg`` calls it with both the
    step's ``value_fn``; sub-sampled cubic regularization (``optimizers.subsampled_cubic``) with
    a sub-sampled Hessian and the full objective.
    """
    x, unravel = ravel_pytree(params)
    dtype = working_dtype(x.dtype)
    s, _, ex = cubic_step(hess_fn, params, grads, cur_sigma, k)
    y, b, T = ex["solution"].y, ex["b"], ex["T"]
    hvps = ex["lanczos"].num_valid  # Lanczos stops at a breakdown: the HVPs it ran
    t = jnp.asarray(learning_rate, dtype)
    ynorm = jnp.linalg.norm(y)
    # m(t s) - f(x) in the reduced coordinates (|s| = |y| since V is orthonormal)
    model = t * (b @ y) + 0.5 * t * t * (y @ (T @ y)) + cur_sigma / 3.0 * (t * ynorm) ** 3
    step = t * s
    f_new = jnp.asarray(trial_fn(unravel((x + step).astype(x.dtype))), dtype)

    pred = -model
    has_pred = (pred > 0) & jnp.isfinite(pred)
    rho = jnp.where(has_pred, (f0 - f_new) / jnp.where(has_pred, pred, 1.0), jnp.nan)
    finite = jnp.isfinite(f_new) & jnp.all(jnp.isfinite(step))
    # both decreases below the float resolution of f: rho is round-off; take the (tiny) step
    # and leave sigma alone (Conn, Gould and Toint 2000, Sec. 17.4.2)
    tol = 4.0 * jnp.finfo(x.dtype).eps * jnp.abs(f0)  # the resolution of f at the params' precision
    negligible = has_pred & finite & (pred <= tol) & (jnp.abs(f0 - f_new) <= tol)
    accepted = has_pred & finite & ((rho >= eta1) | negligible)
    very = accepted & (rho >= eta2) & ~negligible
    g_ = jnp.asarray(gamma, dtype)
    new_sigma = jnp.where(very, cur_sigma / g_, jnp.where(accepted, cur_sigma, cur_sigma * g_))
    # no predicted decrease (s = 0: a minimizer of the model at y = 0): nothing to learn
    new_sigma = jnp.where(has_pred | ~finite, new_sigma, cur_sigma)
    new_sigma = jnp.maximum(new_sigma, smin)
    scale = jnp.clip(new_sigma / sig0, 0.0, _SIGMA_SCALE_MAX)

    return ArcTrial(step, f_new, accepted, rho, new_sigma, scale, hvps)


def scale_by_cubic_reg(
    *,
    sigma: float,
    learning_rate: float,
    sigma_min: float,
    eta1: float,
    eta2: float,
    gamma: float,
    krylov_dim: int,
) -> optax.GradientTransformationExtraArgs:
    """Adaptive cubic regularization step (ARC); returns the update ``+s`` (already a descent step).

    Needs ``value_fn`` (the loss at this step, as a function of params) as an extra argument of
    ``update``; ``value`` (= value_fn(params)) is used when given, else computed and counted.

    Args:
      sigma: initial cubic penalty sigma_0 (> 0).
      learning_rate: the trial point is x + learning_rate * s and the model decrease is that of
        learning_rate * s, so the acceptance test is always about the step actually taken.
      sigma_min: floor on sigma.
      eta1: acceptance threshold on rho (successful).
      eta2: very-successful threshold on rho (sigma /= gamma).
      gamma: sigma factor on (very) unsuccessful / successful steps.
      krylov_dim: Lanczos steps k (static): at most k HVPs per update (fewer at a breakdown).
    """
    k = int(krylov_dim)

    def init_fn(params):
        refuse_complex("cubic_reg", params)
        f32 = jnp.float32
        return CubicRegState(
            sigma_scale=jnp.ones([], f32),
            adaptive_sigma=jnp.maximum(jnp.asarray(sigma, f32), jnp.asarray(sigma_min, f32)),
            num_rejected=jnp.zeros([], jnp.int32),
            last_sigma=jnp.asarray(sigma, f32),
            last_rho=jnp.zeros([], f32),
            last_accepted=jnp.zeros([], bool),
            counts=OracleCounts.zeros(),
            cache=CachedValueGrad.empty(params),
        )

    def update_fn(updates, state, params=None, *, value=None, value_fn=None, **extra):
        del extra
        require_update_args("cubic_reg", "Hessian-vector products and the trial value f(x + s)",
                            params=params, value_fn=value_fn)
        x, unravel = ravel_pytree(params)
        dtype = working_dtype(x.dtype)
        counts = state.counts
        if value is None:
            value = value_fn(params)
            counts = counts.add(values=1)
        f0 = jnp.asarray(value, dtype)
        sig0 = jnp.asarray(sigma, dtype)
        smin = jnp.asarray(sigma_min, dtype)
        cur_sigma = jnp.maximum(sig0 * state.sigma_scale.astype(dtype), smin)

        tr = arc_trial_step(value_fn, value_fn, params, updates, f0, cur_sigma, sig0, smin, learning_rate, eta1,
                            eta2, gamma, k)
        step, f_new, accepted, rho = tr.step, tr.f_new, tr.accepted, tr.rho
        scale = tr.scale
        counts = counts.add(values=1, hvps=tr.hvps)

        out = unravel(jnp.where(accepted, step, jnp.zeros_like(step)).astype(x.dtype))
        new_state = CubicRegState(
            sigma_scale=scale.astype(jnp.float32),
            adaptive_sigma=jnp.maximum(sig0 * scale, smin).astype(jnp.float32),
            num_rejected=state.num_rejected + (~accepted).astype(jnp.int32),
            last_sigma=cur_sigma.astype(jnp.float32),
            last_rho=rho.astype(jnp.float32),
            last_accepted=accepted,
            counts=counts,
            cache=state.cache.after_trial(accepted, f_new, f0, updates),
        )
        return out, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cubic_reg(
    learning_rate: float = 1.0,
    sigma: float = 1.0,
    sigma_min: float = 1e-8,
    eta1: float = 0.1,
    eta2: float = 0.9,
    gamma: float = 2.0,
    krylov_dim: int = 10,
) -> optax.GradientTransformationExtraArgs:
    """Adaptive cubic regularization (Nesterov-Polyak 2006; ARC, Cartis-Gould-Toint 2011), Lanczos solver.

    Each step minimizes g.s + 1/2 s.Hs + sigma/3 |s|^3 over the Krylov space K_k(H, g) (<= k HVPs),
    evaluates f(x + lr s) (one value), accepts the step if the actual/predicted decrease ratio
    rho >= eta1 and adapts sigma (/gamma if rho >= eta2, *gamma if rho < eta1). Rejected steps
    return a zero update. See ``scale_by_cubic_reg`` for the arguments.

    Usable in any optax chain: ``tx.update(grads, state, params, value=f(params), value_fn=f)``.
    """
    return scale_by_cubic_reg(
        sigma=sigma,
        learning_rate=learning_rate,
        sigma_min=sigma_min,
        eta1=eta1,
        eta2=eta2,
        gamma=gamma,
        krylov_dim=krylov_dim,
    )
