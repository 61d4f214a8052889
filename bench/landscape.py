"""Landscape diagnostics at a point: extreme Hessian eigenvalues and a probe for degenerate saddles.

Up to ``DENSE_MAX`` parameters the Hessian is formed (``jax.hessian``: one forward-over-reverse
pass per coordinate, batched) and diagonalized (``eigh``): exact up to rounding, and about
2.5x faster than Lanczos at these sizes (rosenbrock(dim=20), 32 points: 0.54 vs 1.37 ms on a
2-core CPU). Above it, Lanczos with full reorthogonalization (``optimizers.linalg``) on HVPs,
matrix-free: with k = MAX_LANCZOS iterations the extreme Ritz values converge first
(Kaniel-Paige theory). The runner calls this once per run, at the end point, to tell a saddle
(lambda_min < 0) from a minimum: ``dispatch_end_points`` runs that for a whole cell.

Second order is not enough when the Hessian is singular. At a critical point x (gradient 0) with
Hessian H >= 0, x is a local minimum iff f does not decrease along the null space of H at higher
order: restricted to a null direction d, f(x + t d) = f(x) + T[d,d,d] t^3 / 6 + Q[d,d,d,d] t^4 / 24
+ ..., so a nonzero cubic form T on the null space always makes one of +-d a descent direction
(x^2 + y^3 + y^4, the monkey saddle, a deep linear network of depth >= 3 at the origin, whose
Hessian there is 0 and whose loss is cubic in the weights), and with T = 0 the sign of the quartic
form (coupled to the range of H) decides, and so on; deciding local minimality at a degenerate
critical point is NP-hard in general (Murty and Kabadi 1987, "Some NP-complete problems in
quadratic and nonlinear programming"). ``end_point_probe`` therefore looks for descent instead of
proving minimality: "no descent found" is what a minimum label means.

The probe (all of it inside the landscape program, a fixed number of function values and
gradients per end point):

* directions: the eigenvector (Ritz vector above ``DENSE_MAX``) of lambda_min, and
  ``PROBE_RANDOM`` random directions in the near-null space (the complement of the eigen/Ritz
  vectors with lambda > ``NULL_RTOL`` max(1, |lambda_max|); above ``DENSE_MAX`` that includes the
  space Lanczos did not explore), each turned towards the cubic form by ``PROBE_POWER_STEPS``
  shifted power steps for symmetric tensors (SS-HOPM: Kolda and Mayo 2011, "Shifted power method
  for computing tensor eigenpairs"): u = P T[d, d, .] / |P T[d, d, .]|, d <- (sign(d.u) d + u) /
  |...|, which climbs |T[d, d, d]| monotonically where the unshifted step oscillates (it does on
  the deep linear net, between layer imbalances). T[d, d, .] comes from gradients,
  h^2 T[d, d, .] = grad f(x + h d) + grad f(x - h d) - 2 grad f(x) + O(h^4) (the Hessian and
  quartic terms cancel in the symmetric difference), P projects off the stiff eigenvectors.
  A random direction catches little of a cubic form spread over products of weights: at the
  depth-3 deep linear origin (48 weights) the median |T[d,d,d]| / 6 of a random d is 0.02,
  the maximum sigma_max(S_yx) / 3^(3/2) = 0.50; two shifted steps reach 0.2-0.5.
* radii r in ``PROBE_RADII`` times max(1, rms(x)), rms(x) = |x| / sqrt(n): absolute for
  parameters of order one, and relative to a typical coordinate above (a relative radius in |x|
  would grow like sqrt(n) with the width of a network and leave the basin of its minima).
  The largest radius, 0.1, is what the slow approach to a degenerate saddle needs: gradient
  descent on x^2 + y^3 + y^4 nears the origin as y ~ 1 / (3 lr t), where the Hessian diag(2, 6y)
  is still positive definite and the cubic drop y'^3 beats the curvature 3y r^2 only for r >> y.
* both signs, x +- r d, plus the points x +- h d (h = the largest radius) at which the power
  steps evaluated gradients.
* the excess of each probe over what the first-order model and the curvature the classifier
  counts as zero (lambda_min >= -EIG_TOL max(1, |lambda_max|) when it matters) explain:

      e(r, d) = f(x) + r g.d + r^2 min(0, lambda_min) / 2 - f(x + r d)    (g = grad f(x))

  ``probe_drop`` is the largest e over all probes (-inf if none is finite). The stalled end
  points the classifier reads it for have |g| <= 1e-3, not 0: the first-order term is the part of
  a drop that their residual gradient explains. Where f is convex along the segment,
  f(x + r d) >= f(x) + r g.d, so e <= 0 up to round-off: a positive e says f bends down below its
  tangent within radius r, which a point inside the (convex part of the) basin of a minimum never
  shows. Conversely, at a degenerate saddle with cubic coefficient c along d, e ~ |c| r^3 on one
  side. The probe can miss a descent direction its directions do not reach, or a cubic (quartic)
  term below round-off at these radii; and it can call a minimum whose basin is narrower than
  the radius in a near-flat direction a degenerate saddle.
  ``bench.schema.classify`` compares ``probe_drop`` with the round-off of the two loss values
  (``PROBE_RTOL`` |f|).

Cost per end point: (1 + 2 PROBE_RANDOM) PROBE_POWER_STEPS = 10 gradients and
2 len(PROBE_RADII) (1 + PROBE_RANDOM) = 18 function values, next to the dense Hessian or
MAX_LANCZOS = 20 HVPs (2-core CPU, one chunk of 16 end points: rosenbrock(dim=5) 0.27 -> 0.44 ms,
relu_mlp on digits (3466 weights) 0.64 -> 0.95 s; compile 2.4 -> 5.1 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from optimizers import linalg

MAX_LANCZOS = 20
DENSE_MAX = 64

# The degenerate-saddle probe (see the module docstring).
PROBE_RADII = (1e-3, 1e-2, 1e-1)  # times max(1, rms(x))
PROBE_RANDOM = 2  # random near-null directions, each after PROBE_POWER_STEPS power steps
PROBE_POWER_STEPS = 2
NULL_RTOL = 1e-2  # eigenvalues above NULL_RTOL max(1, |lambda_max|) are stiff: no probe along them


class EndPoint(NamedTuple):
    """What the landscape program measures at an end point (see the module docstring).

    Attributes:
      lambda_min, lambda_max: extreme Hessian eigenvalues (Ritz values above ``DENSE_MAX``).
      probe_drop: the largest decrease of f below its first-order model (less the curvature
        lambda_min, if negative) found by the probe; > 0 (beyond round-off) means descent.
    """

    lambda_min: Any
    lambda_max: Any
    probe_drop: Any


def _spectrum(f, params, k, key):
    """(ascending eigenvalues, eigenvectors as columns, valid mask, lambda_min, lambda_max).

    The same arithmetic as ``extreme_eigenvalues`` (dense ``eigh``, or ``linalg.extreme_eigs``'s
    steps), keeping every eigen/Ritz pair: the reported eigenvalues are those bits.
    """
    matvec, flat, unravel = linalg.flat_hvp(f, params)
    n = flat.shape[0]
    if k is None and n <= DENSE_MAX:
        w, v = jnp.linalg.eigh(jax.hessian(lambda x: f(unravel(x)))(flat))
        return w, v, jnp.ones(n, bool), w[0], w[-1]
    k = min(n, MAX_LANCZOS) if k is None else min(k, n)
    key = jax.random.key(0) if key is None else key
    v0 = jax.random.normal(key, (n,), flat.dtype)
    res = linalg.lanczos(matvec, v0, k)
    theta, y = linalg.tridiag_eigh(res.alphas, res.betas, res.mask)
    m = res.num_valid
    ok = m > 0
    valid = jnp.arange(k) < m
    lo = jnp.where(ok, theta[0], 0.0)
    hi = jnp.where(ok, theta[jnp.maximum(m - 1, 0)], 0.0)
    return theta, jnp.where(valid, res.basis.T @ y, 0.0), valid, lo, hi


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


class Curvature(NamedTuple):
    """The Hessian's extremes and index at a point (``curvature``), each a scalar."""

    lambda_min: Any
    lambda_max: Any
    index: Any  # int32


def curvature(f, params, eig_tol: float) -> Curvature:
    """lambda_min, lambda_max and the Morse index of the Hessian of ``f`` at ``params``.

    The index counts the eigenvalues below ``-eig_tol max(1, |lambda_max|)`` (the classifier's
    threshold for negative curvature, ``bench.schema.EIG_TOL``). Up to ``DENSE_MAX`` parameters
    they are the dense Hessian's (exact up to rounding); above it the Ritz values of
    ``MAX_LANCZOS`` Lanczos steps from a fixed start vector: the extremes converge first, and the
    count of negative Ritz values is a lower bound on the index (each negative Ritz value lies above
    a distinct negative eigenvalue, Cauchy interlacing), exact when the index is below
    ``MAX_LANCZOS`` and the negative eigenvalues are separated. Works under ``jit`` and ``vmap``:
    what the runner's ``curvature`` flag computes at every logged step.
    """
    lam, _, valid, lo, hi = _spectrum(f, params, None, None)
    negative = valid & (lam < -eig_tol * jnp.maximum(1.0, jnp.abs(hi)))
    return Curvature(lo, hi, jnp.sum(negative).astype(jnp.int32))


def end_point_probe(f, params, k: int | None = None, key=None) -> EndPoint:
    """Extreme Hessian eigenvalues of ``f`` at ``params`` and the degenerate-saddle probe.

    ``lambda_min, lambda_max`` are those of ``extreme_eigenvalues`` (same arguments, same path);
    ``probe_drop`` is the probe's largest excess drop (module docstring). Works under ``jit``
    and ``vmap``; a fixed number of function values and gradients, whatever the point.
    """
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    dtype = flat.dtype

    def fx(v):
        return f(unravel(v.astype(dtype)))

    lam, vecs, valid, lo, hi = _spectrum(f, params, k, key)
    scale = jnp.maximum(1.0, jnp.abs(hi))
    stiff = valid & (lam > NULL_RTOL * scale)
    stiff_vecs = jnp.where(stiff, vecs, 0.0)
    d0 = vecs[:, 0]

    def project(u):  # off the stiff eigenvectors: onto the (known or unexplored) near-null space
        return u - stiff_vecs @ (stiff_vecs.T @ u)

    def unit(u, size, fallback):  # u / |u|, or the fallback where |u| is round-off of size
        nu = jnp.linalg.norm(u)
        ok = nu > 1e-4 * size + jnp.finfo(dtype).tiny
        return jnp.where(ok, u / jnp.where(ok, nu, 1.0), fallback)

    def power_step(u, d):  # shifted power step towards the largest |T[d, d, d]|, u = T[d, d, .] h^2
        u = unit(project(u), 0.0, jnp.zeros_like(u))
        s = jnp.where(jnp.vdot(d, u) < 0, -1.0, 1.0)  # T[-d, -d, .] = T[d, d, .]: climb |T| on the side T > 0
        return unit(s * d + u, 0.0, d)

    radii = jnp.asarray(PROBE_RADII, dtype) * jnp.maximum(1.0, jnp.linalg.norm(flat) / np.sqrt(n))
    h = radii[-1]  # the power step's difference step: the cubic term at the probe's own scale
    z = jax.random.normal(jax.random.key(1), (PROBE_RANDOM, n), dtype)
    dirs = jax.vmap(lambda u: unit(project(u), jnp.linalg.norm(u), d0))(z)
    value_and_grads = jax.vmap(jax.value_and_grad(fx))

    def power(dirs, _):  # one batch of gradients (x, x + h d, x - h d) per step: one copy compiled
        fs, gs = value_and_grads(jnp.concatenate([flat[None], flat + h * dirs, flat - h * dirs]))
        fp, fm = jnp.split(fs[1:], 2)
        gp, gm = jnp.split(gs[1:], 2)
        return jax.vmap(power_step)(gp + gm - 2.0 * gs[0], dirs), (dirs, fp, fm, fs[0], gs[0])

    dirs, (seen, fp, fm, f0, g) = jax.lax.scan(power, dirs, None, length=PROBE_POWER_STEPS)
    f0, g = f0[0], g[0]
    probes = [(seen, h, fp), (seen, -h, fm)]  # (directions, signed radii, f at x + radius * direction)
    dirs = jnp.concatenate([d0[None], dirs])
    signed = jnp.concatenate([radii, -radii])[:, None]
    probes.append((dirs, signed, jax.vmap(jax.vmap(fx))(flat + signed[..., None] * dirs[None])))
    neg = jnp.minimum(lo, 0.0)  # curvature the classifier counts as zero, if negative
    e = jnp.concatenate([(f0 + s * (d @ g) + 0.5 * s**2 * neg - fv).ravel() for d, s, fv in probes])
    e = jnp.where(jnp.isfinite(e), e, -jnp.inf)
    return EndPoint(lo, hi, jnp.max(e))


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
        fn = jax.vmap(lambda p: end_point_probe(full_loss, p))
        _PROGRAMS[cache_key] = jax.jit(fn).lower(chunk).compile(compiler_options())
    return _PROGRAMS[cache_key]


def dispatch_end_points(problem, params) -> Callable[[], EndPoint]:
    """Start the landscape program on a batch of end points (leading axes H, S).

    Returns a function that waits for the results: an ``EndPoint`` of numpy arrays of shape
    (H, S), ``(lambda_min, lambda_max, probe_drop)``. JAX dispatches asynchronously, so the
    caller builds its tables while the program runs.
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

    def wait() -> EndPoint:
        return EndPoint(*(np.concatenate([np.asarray(o[j]) for o in outs])[:n].reshape(lead)
                          for j in range(len(EndPoint._fields))))

    return wait


def end_points(problem, params) -> EndPoint:
    """``EndPoint`` of ``problem.full_loss`` at a batch of end points (axes H, S), each (H, S).

    A program of its own, compiled once per problem (end points go through it ``CHUNK`` at a
    time) rather than once per cell: every cell of a problem shares it.
    """
    return dispatch_end_points(problem, params)()
