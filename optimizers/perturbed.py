"""Perturbed gradient descent (Jin, Ge, Netrapalli, Kakade and Jordan 2017, Algorithm 2).

The paper's PGD, for an l-gradient-Lipschitz, rho-Hessian-Lipschitz f on R^d:

    for t = 0, 1, ...
        if |grad f(x_t)| <= g_thres and t - t_noise > t_thres:
            x~ <- x_t,  t_noise <- t,  x_t <- x~ + xi,   xi ~ Unif(B_0(r))
        if t - t_noise = t_thres and f(x_t) - f(x~) > -f_thres:
            return x~
        x_{t+1} <- x_t - eta grad f(x_t)

It finds an eps-second-order stationary point (|grad f| <= eps, lambda_min(hess f) >= -sqrt(rho eps))
with probability 1 - delta in O(l Delta_f / eps^2 * log^4(d l Delta_f / (eps^2 delta))) gradient
steps, with the constants (c <= c_max an absolute constant, Delta_f >= f(x_0) - f*)

    chi = 3 max(ln(d l Delta_f / (c eps^2 delta)), 4),   eta = c / l,
    r = sqrt(c)/chi^2 * eps/l,   g_thres = sqrt(c)/chi^2 * eps,
    f_thres = c/chi^3 * sqrt(eps^3/rho),   t_thres = chi/c^2 * l/sqrt(rho eps),

which ``perturbed_gd_params`` computes. The registered optimizer takes the direct parameters
(traced, so sweeps do not recompile); pass it the derived ones.

How the paper's loop maps onto the runner's one gradient per step, with no extra oracle call:
the perturbation is a step of its own. On a step where the test fires, the update is xi alone
(the gradient at x~, already spent on the test, is not applied); the runner's next gradient is
then the one at x~ + xi, which is exactly the gradient the paper's step uses. So the iterates
are the paper's, and each perturbation costs one extra runner step (at most one in every
t_thres + 1 steps). ``t`` counts gradient steps as in the paper (t_noise is the step after the
perturbation).

The termination rule is optional: with ``f_thres > 0`` the optimizer jumps back to x~ when the
t_thres steps after a perturbation decreased f by less than f_thres, and stays there (all later
updates are zero); it uses only the ``value`` the runner passes. With mini-batch values the
comparison is between two different batches, so keep it for deterministic objectives. With
``f_thres = 0`` (the default) PGD never stops and keeps perturbing at t_thres intervals.

Exact gradients. The test |grad f| <= g_thres is the paper's, for the exact gradient: it asks
whether x is near a first-order stationary point. A mini-batch gradient has a noise floor
(|g| ~ sigma / sqrt(batch) even at a minimizer of f), and once that floor is above g_thres the
test never fires: with mini-batch gradients and the default g_thres = 3.19e-4, PGD is plain SGD
and never perturbs (the mini-batch noise does the escaping instead). Use it with exact
gradients, or raise g_thres above the noise floor; the f_thres termination rule likewise needs
exact values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.base import refuse_complex, require_update_args, warn_no_key
from optimizers.noise import sample_ball

# "never perturbed yet": t - t_noise is then larger than any t_thres, so the test can fire at t=0
_NEVER = -(2**30)


def _check_positive(fn, **kw):
    for name, v in kw.items():
        if not v > 0:
            raise ValueError(f"{fn}: {name} must be > 0, got {v!r}")


def perturbed_gd_chi(l: float, eps: float, c: float = 1.0, delta: float = 0.1, delta_f: float = 1.0,
                     dim: int = 1) -> float:
    """chi = 3 max(ln(d l Delta_f / (c eps^2 delta)), 4), the log factor of Jin et al. 2017."""
    _check_positive("perturbed_gd_chi", l=l, eps=eps, c=c, delta=delta, delta_f=delta_f, dim=dim)
    return 3.0 * max(math.log(dim * l * delta_f / (c * eps**2 * delta)), 4.0)


def perturbed_gd_params(l: float, rho: float, eps: float, c: float = 1.0, delta: float = 0.1,
                        delta_f: float = 1.0, dim: int = 1) -> dict[str, float]:
    """The hyperparameters of Jin et al. 2017 (Algorithm 2) from the problem constants.

    Args:
      l: gradient Lipschitz constant.
      rho: Hessian Lipschitz constant.
      eps: target accuracy (|grad| <= eps, lambda_min >= -sqrt(rho eps)).
      c: the step-size constant, eta = c / l (the theory needs c <= c_max, a small absolute
        constant; c = 1 is what one uses in practice).
      delta: failure probability.
      delta_f: an upper bound on f(x_0) - f*.
      dim: d, the number of parameters.

    Returns:
      dict of floats ``learning_rate`` (eta), ``radius`` (r), ``g_thres``, ``t_thres``,
      ``f_thres``: exactly the keyword arguments of ``perturbed_gd``, so
      ``optimizers.get("perturbed_gd", **perturbed_gd_params(...))`` runs the paper's algorithm
      (termination rule included, since f_thres > 0).
    """
    _check_positive("perturbed_gd_params", rho=rho)
    chi = perturbed_gd_chi(l, eps, c, delta, delta_f, dim)
    return {
        "learning_rate": c / l,
        "radius": math.sqrt(c) / chi**2 * eps / l,
        "g_thres": math.sqrt(c) / chi**2 * eps,
        "t_thres": chi / c**2 * l / math.sqrt(rho * eps),
        "f_thres": c / chi**3 * math.sqrt(eps**3 / rho),
    }


class PerturbedGDState(NamedTuple):
    """State of ``scale_by_perturbed_gd``.

    Attributes:
      count: runner steps so far (int32).
      t_noise: the step after the last perturbation (int32; a large negative number before any).
      x_tilde: the point x~ that was perturbed last (a copy of params).
      f_tilde: f(x~), the value the runner passed there.
      num_perturbations: perturbations so far (int32), for diagnostics.
      stopped: the termination rule fired; updates are zero from then on.
      rng_key: fallback key, split only when ``update`` gets no ``key``.
    """

    count: jax.Array
    t_noise: jax.Array
    x_tilde: optax.Params
    f_tilde: jax.Array
    num_perturbations: jax.Array
    stopped: jax.Array
    rng_key: jax.Array


def scale_by_perturbed_gd(*, learning_rate: float, radius: float, g_thres: float, t_thres: float,
                          f_thres: float, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """PGD's update, learning rate included: -eta g, or xi ~ Unif(B_0(r)) on a perturbation step.

    The perturbation is not a scaled gradient, so unlike the ``scale_by_*`` of optax this
    transformation returns the final update (``optax.apply_updates`` adds it). See the module
    docstring for the algorithm and ``perturbed_gd`` for the arguments. ``t_thres`` is rounded
    to the nearest integer number of steps.
    """

    def init_fn(params):
        refuse_complex("perturbed_gd", params)
        i0 = jnp.zeros([], jnp.int32)
        dtype = optax.tree.dtype(params, "lowest")
        return PerturbedGDState(
            count=i0, t_noise=jnp.asarray(_NEVER, jnp.int32), x_tilde=optax.tree.zeros_like(params),
            f_tilde=jnp.zeros([], dtype), num_perturbations=i0, stopped=jnp.zeros([], bool),
            rng_key=jax.random.key(seed),
        )

    def update_fn(updates, state, params=None, *, value=None, key=None, **extra_args):
        del extra_args
        require_update_args("perturbed_gd", "it keeps the perturbed point x~", params=params)
        if key is None:
            warn_no_key("perturbed_gd")
            rng_key, key = jax.random.split(state.rng_key)
        else:
            rng_key = state.rng_key
        grads = updates
        # clipped so that the int32 cast and t - t_noise cannot overflow
        t_th = jnp.clip(jnp.round(jnp.asarray(t_thres, jnp.float32)), 0, 2**30).astype(jnp.int32)
        never = state.t_noise == _NEVER
        since = jnp.where(never, 2**30 + 1, state.count - jnp.where(never, 0, state.t_noise))  # t - t_noise
        small = optax.tree.norm(grads) <= g_thres
        perturb = (~state.stopped) & small & (since > t_th)
        if value is None:
            terminate = jnp.zeros([], bool)
            value = state.f_tilde
        else:
            value = jnp.asarray(value, state.f_tilde.dtype)
            terminate = ((~state.stopped) & (f_thres > 0) & (since == t_th)
                         & (value - state.f_tilde > -f_thres))
        xi = sample_ball(key, grads, radius)
        back = optax.tree.sub(state.x_tilde, params)

        def pick(g, x, b):
            step = jnp.where(perturb, x, -learning_rate * g)
            step = jnp.where(terminate, b, step)
            return jnp.where(state.stopped, jnp.zeros_like(step), step).astype(g.dtype)

        new_updates = jax.tree.map(pick, grads, xi, back)
        new_state = PerturbedGDState(
            count=optax.safe_increment(state.count),
            t_noise=jnp.where(perturb, state.count + 1, state.t_noise),
            x_tilde=jax.tree.map(lambda xt, p: jnp.where(perturb, p, xt), state.x_tilde, params),
            f_tilde=jnp.where(perturb, value, state.f_tilde),
            num_perturbations=state.num_perturbations + perturb.astype(jnp.int32),
            stopped=state.stopped | terminate,
            rng_key=rng_key,
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def perturbed_gd(learning_rate: float = 0.249, radius: float = 9.78e-6, g_thres: float = 3.19e-4,
                 t_thres: float = 35.7, f_thres: float = 0.0) -> optax.GradientTransformationExtraArgs:
    r"""Perturbed gradient descent (Jin, Ge, Netrapalli, Kakade and Jordan 2017, Algorithm 2).

    Gradient descent x <- x - eta g, except that when |g| <= g_thres and no perturbation
    happened in the last t_thres steps, the iterate jumps to x + xi with xi ~ Unif(B_0(r)) drawn
    (over the whole flattened pytree) from the per-step key. With the paper's parameters
    (``perturbed_gd_params``) it reaches an eps-second-order stationary point w.h.p.

    Args:
      learning_rate: eta (paper: c/l). Default 0.249 (chosen on the quick suite, docs/DEFAULTS.md).
      radius: r, the perturbation radius (paper: sqrt(c)/chi^2 eps/l). Default 9.78e-6.
        The defaults here are the quick suite's best point of the search space, not the paper's
        constants (``perturbed_gd_params`` computes those from l, rho and eps).
      g_thres: gradient-norm threshold below which PGD perturbs (paper: sqrt(c)/chi^2 eps).
        Default 3.19e-4. The test needs exact gradients: a mini-batch gradient whose noise keeps
        its norm above g_thres never triggers a perturbation (see the module docstring).
      t_thres: minimum number of steps between perturbations (paper: chi/c^2 l/sqrt(rho eps)),
        rounded to an integer. Default 35.7 (36 steps).
      f_thres: decrease that counts as an escape for the optional termination rule (paper:
        c/chi^3 sqrt(eps^3/rho)); 0, the default, switches the rule off.

    The defaults are generic (no l, rho known); for a problem with known constants use
    ``optimizers.get("perturbed_gd", **perturbed_gd_params(...))``.

    Oracle cost: nothing beyond the runner's gradient and value; one runner step per
    perturbation (see the module docstring).

    Reference: C. Jin, R. Ge, P. Netrapalli, S. M. Kakade, M. I. Jordan, "How to Escape Saddle
    Points Efficiently", ICML 2017, Algorithm 2 (PGD).
    """
    return scale_by_perturbed_gd(learning_rate=learning_rate, radius=radius, g_thres=g_thres, t_thres=t_thres,
                                 f_thres=f_thres)
