"""Neon2: negative curvature from gradients only, and SGD + Neon2 (Allen-Zhu and Li 2018).

Near a point x0 the gradient is linear in the displacement z, grad f(x0 + z) - grad f(x0) =
H z + O(L2 |z|^2), so the iteration (Neon2^online's, with the step's deterministic ``value_fn``)

    z_0 = xi (uniform on the sphere of radius sigma),
    z_{t+1} = z_t - eta (grad f(x0 + z_t) - grad f(x0))  ~  (I - eta H) z_t,

is the power method on I - eta H (Oja's iteration for the bottom eigenvector of H) with
Hessian-vector products replaced by gradient differences: with eta <= 1/L, the component of z
along an eigenvector of eigenvalue lambda is multiplied by 1 - eta lambda per step, so directions
of curvature <= -delta grow by at least (1 + eta delta) while the others shrink or grow by less.
The search stops at the first t with |z_t| >= radius and returns v = z_t / |z_t| (Neon2 found
negative curvature), or after T steps with nothing (no curvature below about -delta). Starting
from |<xi, e_min>| >= sigma p / sqrt(d) (which holds with probability about 1 - p), the bottom
component reaches ``radius`` within

    T(delta, p) = ceil(log(radius sqrt(d) / (sigma p)) / log(1 + eta delta))
               <= ceil(log(radius sqrt(d) / (sigma p)) / (eta delta) (1 + eta delta))

steps: the paper's T = Theta(log(d/p) / (eta delta)) (their r / sigma is a power of d/p) in
explicit form (``neon2_iterations``). Keeping |z| <= radius small keeps the O(L2 |z|^2) error of
the gradient differences below the curvature it measures.

SGD + Neon2 (the paper's Theorem 3, Neon2 applied to SGD): while |g| > grad_threshold, an SGD
step x <- x - lr g; at a point with |g| <= grad_threshold, a Neon2 search from x; if it returns
v, the step x <- x +- (delta / L2) v with a random sign (the paper's negative-curvature step,
which decreases f by about delta^3 / L2^2 in expectation); if it returns nothing, the point is an
approximate local minimum: the paper stops there, here the SGD step is taken and the search is not
repeated (``certified``) until |g| exceeds the threshold again, so a run that has converged does
not pay T gradients per step.

Oracle counts: one gradient of ``value_fn`` per Neon2 iteration run (the search is a
``lax.while_loop`` that stops when |z| >= radius; grad f(x0) is the step's gradient ``updates``,
so this transformation must come first in its chain); SGD steps spend nothing beyond the
runner's gradient. No Hessian-vector product is ever taken.

References:
  Z. Allen-Zhu and Y. Li, "NEON2: Finding Local Minima via First-Order Oracles", NeurIPS 2018
  (arXiv:1711.06673), Neon2^online (Algorithm 1 and Theorem 1) and its application to SGD.
  E. Oja, "Simplified neuron model as a principal component analyzer", J. Math. Biol. 15 (1982).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import OracleCounts, batch_cond, refuse_complex, require_update_args, warn_no_key
from optimizers.linalg import working_dtype


def neon2_iterations(dim: int, eta: float, delta: float, sigma: float, radius: float, p: float) -> int:
    """T(delta, p): power-method steps that grow a start component sigma p / sqrt(d) past ``radius``
    at curvature -delta (see the module docstring)."""
    if not (eta > 0 and delta > 0 and 0 < sigma < radius and 0 < p < 1 and dim >= 1):
        raise ValueError(f"neon2_iterations: need eta, delta > 0, 0 < sigma < radius, 0 < p < 1; got "
                         f"eta={eta}, delta={delta}, sigma={sigma}, radius={radius}, p={p}")
    return math.ceil(math.log(radius * math.sqrt(dim) / (sigma * p)) / math.log1p(eta * delta))


class Neon2Result(NamedTuple):
    found: jax.Array  # bool: |z| reached the radius
    direction: jax.Array  # flat unit vector z / |z| (meaningful when found)
    iterations: jax.Array  # int32: gradients spent


def neon2_search(grad_fn, x0, g0, key, eta, sigma, radius, max_iters: int) -> Neon2Result:
    """Neon2's gradient-difference power iteration from the flat point ``x0`` (gradient ``g0``).

    ``grad_fn`` maps a flat point to the flat gradient of the same deterministic function; it is
    called once per iteration run (at most ``max_iters``, static).
    """
    dtype = g0.dtype
    xi = jax.random.normal(key, x0.shape, dtype)
    z0 = jnp.asarray(sigma, dtype) * xi / jnp.linalg.norm(xi)
    eta = jnp.asarray(eta, dtype)
    radius = jnp.asarray(radius, dtype)

    def cond(carry):
        t, z = carry
        return (t < max_iters) & (jnp.linalg.norm(z) < radius)

    def body(carry):
        t, z = carry
        diff = grad_fn(x0 + z.astype(x0.dtype)).astype(dtype) - g0
        return t + 1, z - eta * diff

    t, z = jax.lax.while_loop(cond, body, (jnp.zeros([], jnp.int32), z0))
    znorm = jnp.linalg.norm(z)
    found = (znorm >= radius) & jnp.isfinite(znorm)
    v = jnp.where(found, z / jnp.where(found, znorm, 1.0), jnp.zeros_like(z))
    return Neon2Result(found, v, t)


def curvature_step(res: Neon2Result, key: jax.Array, size, hessian_lipschitz, dtype) -> jax.Array:
    """Neon2's escape step: +-(size / L) along the direction the search found, the sign a fair coin."""
    sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(dtype)
    return sign * jnp.asarray(size, dtype) / jnp.asarray(hessian_lipschitz, dtype) * res.direction


def search_bookkeeping(state, small, search, found, grads) -> dict:
    """The search fields after a step, for a state with ``certified``, ``num_searches``,
    ``num_escapes`` and ``counts`` (a search from a small gradient that finds nothing certifies the
    point until |g| rises again); ``grads`` the gradients spent."""
    return dict(certified=small & (state.certified | (search & ~found)),
                num_searches=state.num_searches + search.astype(jnp.int32),
                num_escapes=state.num_escapes + found.astype(jnp.int32),
                counts=state.counts.add(grads=grads))


class Neon2SGDState(NamedTuple):
    """State of ``scale_by_neon2_sgd``.

    Attributes:
      certified: the last search from a point with |g| <= grad_threshold found no negative
        curvature, and |g| has stayed below the threshold since (no new search until it rises).
      num_searches: Neon2 searches run.
      num_escapes: searches that found a direction (and took the negative-curvature step).
      counts: gradients spent by the searches.
    """

    certified: jax.Array
    num_searches: jax.Array
    num_escapes: jax.Array
    counts: OracleCounts


def flat_grad_fn(value_fn, unravel):
    """The flat gradient of ``value_fn`` at a flat point."""
    return lambda x: ravel_pytree(jax.grad(value_fn)(unravel(x)))[0]


def scale_by_neon2_sgd(*, learning_rate, grad_threshold, delta, neon_lr, sigma, radius, hessian_lipschitz,
                       neon_iters: int) -> optax.GradientTransformationExtraArgs:
    """SGD + Neon2 (see the module docstring); returns the update (already a descent step).

    Args:
      learning_rate: the SGD step.
      grad_threshold: |g| at or below which Neon2 searches (the epsilon of an approximate
        stationary point).
      delta: the curvature -delta to detect; the negative-curvature step is delta / hessian_lipschitz.
      neon_lr: Neon2's step eta (<= 1 / L, the gradient's Lipschitz constant).
      sigma: radius of Neon2's random start.
      radius: |z| at which Neon2 stops and reports the direction (> sigma).
      hessian_lipschitz: L2, the Hessian's Lipschitz constant (sets the step delta / L2).
      neon_iters: T, the most Neon2 iterations per search (static; ``neon2_iterations``).
    """
    t_max = int(neon_iters)

    def init_fn(params):
        refuse_complex("neon2_sgd", params)
        z = jnp.zeros([], jnp.int32)
        return Neon2SGDState(jnp.zeros([], bool), z, z, OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, axis_name=None, **extra):
        del extra
        require_update_args("neon2_sgd", "Neon2's gradient differences", params=params, value_fn=value_fn)
        if key is None:
            warn_no_key("neon2_sgd")
            key = jax.random.fold_in(jax.random.key(0), state.num_searches)
        k_xi, k_sign = jax.random.split(key)
        x, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(updates)
        dtype = working_dtype(g.dtype)
        g = g.astype(dtype)
        gnorm = jnp.linalg.norm(g)
        small = gnorm <= grad_threshold
        search = small & ~state.certified
        sgd = -jnp.asarray(learning_rate, dtype) * g

        def do_search():
            res = neon2_search(flat_grad_fn(value_fn, unravel), x, g, k_xi, neon_lr, sigma, radius, t_max)
            step = curvature_step(res, k_sign, delta, hessian_lipschitz, dtype)
            return jnp.where(res.found, step, sgd), res.found, res.iterations

        def no_search():
            return sgd, jnp.zeros([], bool), jnp.zeros([], jnp.int32)

        step, found, iters = batch_cond(search, do_search, no_search, axis_name=axis_name)
        new_state = Neon2SGDState(**search_bookkeeping(state, small, search, found, iters))
        return unravel(step.astype(x.dtype)), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def neon2_sgd(
    learning_rate: float = 1e-2,
    grad_threshold: float = 1e-3,
    delta: float = 0.5,
    neon_lr: float = 0.1,
    sigma: float = 1e-5,
    radius: float = 1e-3,
    hessian_lipschitz: float = 1.0,
    neon_iters: int = 200,
) -> optax.GradientTransformationExtraArgs:
    """SGD + Neon2 (Allen-Zhu and Li 2018): SGD, and a first-order negative-curvature search where |g| is small.

    Where |g| <= grad_threshold, Neon2's gradient-difference power iteration (at most neon_iters
    gradients) looks for curvature below -delta and steps +-(delta / hessian_lipschitz) along it.
    See ``scale_by_neon2_sgd``. The default neon_iters = 200 is ``neon2_iterations(d=100, eta=0.1,
    delta=0.5, sigma=1e-5, radius=1e-3, p=0.1)`` = 189, rounded up.
    """
    return scale_by_neon2_sgd(learning_rate=learning_rate, grad_threshold=grad_threshold, delta=delta,
                              neon_lr=neon_lr, sigma=sigma, radius=radius, hessian_lipschitz=hessian_lipschitz,
                              neon_iters=neon_iters)
