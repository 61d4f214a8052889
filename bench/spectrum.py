"""Hessian spectral density by stochastic Lanczos quadrature (SLQ), from Hessian-vector products only.

The spectral density of the symmetric n x n Hessian H = sum_i lambda_i u_i u_i^T at a point is

    phi(t) = (1/n) sum_i delta(t - lambda_i),

and its Gaussian smoothing phi_sigma(t) = (1/n) sum_i g_sigma(t - lambda_i), g_sigma the N(0, sigma^2)
density. For a probe vector v with E[v v^T / |v|^2] = I/n (Rademacher entries, |v|^2 = n exactly, or
a Gaussian vector, whose direction is uniform on the sphere), the spectral measure of H seen from v,

    mu_v = sum_i (u_i . v)^2 / |v|^2  delta_{lambda_i},

is a probability measure with E[mu_v] = phi (Hutchinson's trace estimator applied to f(H) for every
f at once: E[v^T f(H) v / |v|^2] = tr f(H) / n). ``k`` steps of Lanczos from q_1 = v/|v| give the
tridiagonal T_k = Y diag(theta) Y^T, and the k-point Gauss quadrature of mu_v has nodes theta_j
(the Ritz values) and weights tau_j = Y_{1j}^2 (Golub and Meurant, "Matrices, Moments and
Quadrature with Applications", Princeton 2010, ch. 6): sum_j tau_j f(theta_j) = e_1^T f(T_k) e_1
matches v^T f(H) v / |v|^2 exactly for polynomials f of degree <= 2k - 1. Averaging over
``num_probes`` independent probes,

    phi_sigma(t) ~ (1/n_v) sum_l sum_j tau_{lj} g_sigma(t - theta_{lj}),

which is the SLQ estimator of Ghorbani, Krishnan and Xiao 2019 ("An investigation into neural net
optimization via Hessian eigenvalue density", ICML; also Lin, Saad and Yang 2016, "Approximating
spectral densities of large matrices", SIAM Review 58(1)). Each probe's weights sum to 1 (the first
row of the orthogonal Y), so the estimate integrates to exactly 1 in exact arithmetic, and with
k = n (or an invariant Krylov space, a Lanczos breakdown) the quadrature IS mu_v: nodes the
eigenvalues, weights the squared components.

Negative fraction. The fraction of negative eigenvalues q = #{lambda_i < 0}/n is the mass of phi
below 0; per probe it is estimated by E_v = sum_{theta_j < 0} tau_j. Two errors:

* quadrature (k < n): the step function 1(t < 0) is not a polynomial, but the
  Chebyshev-Markov-Stieltjes inequalities (Szego, "Orthogonal Polynomials", thm 3.41.1; Golub and
  Meurant 2010, sec. 6.3) bracket the true mass by the Gauss partial sums: for each node,
  sum_{i<r} tau_i <= mu_v((-inf, theta_r)) <= mu_v((-inf, theta_r]) <= sum_{i<=r} tau_i. With
  theta_j < 0 <= theta_{j+1} this gives

      E_v - tau_j <= mu_v((-inf, 0)) <= E_v + tau_{j+1},

  a rigorous a-posteriori interval (``neg_fraction_lo``, ``neg_fraction_hi``): the error is at most
  the weight of a node next to 0, about 1/k where the spectrum is spread out;
* sampling: mu_v((-inf, 0)) = v^T P v / |v|^2 with P the projector on the negative eigenspace.
  For Rademacher probes its variance is 2 (|P|_F^2 - sum_i P_ii^2) / n^2 <= 2 q / n, so the mean of
  n_v probes has standard deviation <= sqrt(2 q / (n n_v)) (zero when P is diagonal in the
  coordinate basis, as for a separable function); for Gaussian directions v^T P v / |v|^2 is
  Beta(qn/2, (1-q)n/2), variance 2 q (1-q) / (n + 2).

``neg_fraction_smoothed`` is the mass of the smoothed density below 0, sum tau Phi(-theta/sigma):
what the plotted curve shows, biased by eigenvalues within a few sigma of 0.

Extremes. ``lambda_min`` / ``lambda_max`` are the extreme Ritz values over all probes: by Cauchy
interlacing they lie inside [lambda_min(H), lambda_max(H)] and converge first (Kaniel-Paige), to
the exact values at k = n.

Kernel width. sigma defaults to ``sigma_rel`` (1%) of the Ritz spread theta_max - theta_min: wide
enough that the k n_v nodes merge into a curve, narrow enough to keep features of relative width
a few percent (Ghorbani et al. use sigma^2 = 1e-5 on a spectrum rescaled to [-1, 1], sigma ~ 0.16%
of the spread, with k = 90 and many more parameters). The grid extends ``GRID_PAD`` = 6 sigma
beyond the extreme nodes, so the Gaussian tails cut off hold at most 2 Phi(-6) = 2e-9 of the mass,
and has ``num_points`` (1024) points: spacing h = (1 + 12 sigma_rel) spread / 1023, sigma / h ~ 9;
the trapezoidal rule on a Gaussian is then exact to about exp(-2 pi^2 sigma^2 / h^2) (it is
spectrally accurate for smooth, rapidly decaying integrands), so the density integrates to 1
within float32 round-off.

Everything is one jitted program per (function, probe count, steps): probes drawn from the key,
``jax.vmap`` of ``optimizers.linalg.lanczos`` (full reorthogonalization) over them, on the HVP
``optimizers.linalg.flat_hvp``; no Hessian is formed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.scipy.special import ndtr

from optimizers import linalg

PROBES = ("rademacher", "gaussian")
GRID_PAD = 6.0  # grid margin beyond the extreme Ritz values, in kernel widths
DEFAULT_SIGMA_REL = 0.01  # kernel width relative to the Ritz spread (module doc)


class Quadrature(NamedTuple):
    """Gauss quadrature of each probe's spectral measure.

    Attributes:
      nodes: (num_probes, k) Ritz values, ascending in each row; entries past ``num_valid`` are
        padding (set to the row's largest valid node) with weight 0.
      weights: (num_probes, k) Gauss weights tau = (first row of Y)^2, summing to 1 per row.
      num_valid: (num_probes,) Krylov dimension reached (< k after a breakdown).
      exact: (num_probes,) whether the Krylov space is invariant (a breakdown, or k = n), so that
        the quadrature is the probe's spectral measure itself, not just a Gauss rule for it.
    """

    nodes: jax.Array
    weights: jax.Array
    num_valid: jax.Array
    exact: jax.Array


class SpectralDensity(NamedTuple):
    """SLQ estimate of the Hessian spectral density (module docstring for the maths).

    Attributes:
      grid: (num_points,) eigenvalue axis.
      density: (num_points,) smoothed density on ``grid`` (integrates to 1).
      sigma: the Gaussian kernel width used.
      nodes, weights, num_valid, exact: the ``Quadrature``.
      neg_fraction: mean over probes of the Gauss weight on negative Ritz values.
      neg_fraction_lo, neg_fraction_hi: mean over probes of the Chebyshev-Markov-Stieltjes bracket
        of each probe's negative mass (quadrature error only; the sampling error is separate).
      neg_fraction_smoothed: mass of ``density`` below 0 (closed form, no grid).
      lambda_min, lambda_max: extreme Ritz values over all probes.
      probe_neg_fraction, probe_neg_lo, probe_neg_hi: (num_probes,) the per-probe estimate and
        bracket (``negative_fraction``) that the three means above average.
    """

    grid: jax.Array
    density: jax.Array
    sigma: jax.Array
    nodes: jax.Array
    weights: jax.Array
    num_valid: jax.Array
    exact: jax.Array
    neg_fraction: jax.Array
    neg_fraction_lo: jax.Array
    neg_fraction_hi: jax.Array
    neg_fraction_smoothed: jax.Array
    lambda_min: jax.Array
    lambda_max: jax.Array
    probe_neg_fraction: jax.Array
    probe_neg_lo: jax.Array
    probe_neg_hi: jax.Array


def probes(key: jax.Array, n: int, num_probes: int, kind: str = "rademacher", dtype=jnp.float32) -> jax.Array:
    """(num_probes, n) probe vectors: iid Rademacher (+-1) or standard Gaussian entries."""
    if kind == "rademacher":
        return jax.random.rademacher(key, (num_probes, n), dtype=dtype)
    if kind == "gaussian":
        return jax.random.normal(key, (num_probes, n), dtype=dtype)
    raise ValueError(f"probe kind must be one of {PROBES}, got {kind!r}")


def _check(num_probes: int, num_steps: int, probe: str) -> None:
    if int(num_probes) < 1:
        raise ValueError(f"num_probes must be >= 1, got {num_probes}")
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if probe not in PROBES:
        raise ValueError(f"probe kind must be one of {PROBES}, got {probe!r}")


def _quadrature_impl(f, params, key, num_probes, num_steps, probe):
    matvec, flat, _ = linalg.flat_hvp(f, params)
    n = flat.shape[0]
    k = min(int(num_steps), n)
    v0 = probes(key, n, num_probes, probe, flat.dtype)

    def one(v):
        res = linalg.lanczos(matvec, v, k)
        theta, y = linalg.tridiag_eigh(res.alphas, res.betas, res.mask)
        # tridiag_eigh puts the num_valid genuine Ritz values first, the padding after
        valid = jnp.arange(k) < res.num_valid
        w = jnp.where(valid, y[0] ** 2, 0.0)
        top = theta[jnp.maximum(res.num_valid - 1, 0)]
        return jnp.where(valid, theta, top), w, res.num_valid

    nodes, weights, num_valid = jax.vmap(one)(v0)
    exact = (num_valid < k) | (k == n)
    return Quadrature(nodes, weights, num_valid, exact)


_quadrature = jax.jit(_quadrature_impl, static_argnames=("f", "num_probes", "num_steps", "probe"))


def quadrature(
    f: Callable[[Any], jax.Array],
    params: Any,
    key: jax.Array,
    *,
    num_probes: int = 8,
    num_steps: int = 64,
    probe: str = "rademacher",
) -> Quadrature:
    """Gauss quadrature (Ritz values, weights) of the Hessian of ``f`` at ``params`` seen from each probe.

    ``num_steps`` Lanczos steps (capped at the dimension) with full reorthogonalization, from each
    of ``num_probes`` probes drawn by ``probes(key, ...)``, vmapped; one jitted program per
    (f, num_probes, num_steps, probe). ``f`` must be hashable (a plain function is).
    """
    _check(num_probes, num_steps, probe)
    return _quadrature(f, params, key, int(num_probes), int(num_steps), probe)


@jax.jit
def smooth(nodes: jax.Array, weights: jax.Array, grid: jax.Array, sigma) -> jax.Array:
    """phi_sigma(t) = mean_l sum_j tau_lj g_sigma(t - theta_lj) on ``grid`` (the SLQ density)."""
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    kern = jnp.exp(-0.5 * z * z) / (sigma * jnp.sqrt(2.0 * jnp.pi))
    return jnp.einsum("lj,ljt->t", weights, kern) / nodes.shape[0]


@jax.jit
def negative_fraction(nodes: jax.Array, weights: jax.Array, exact: jax.Array | None = None):
    """Per probe: (estimate, lower, upper) of the mass below 0 (Chebyshev-Markov-Stieltjes bracket).

    estimate = sum_{theta_j < 0} tau_j; with theta_j < 0 <= theta_{j+1} (ascending nodes, zero-weight
    padding at the top), lower = estimate - tau_j and upper = estimate + tau_{j+1}. Where ``exact``
    (an invariant Krylov space) the quadrature is the measure itself and lower = upper = estimate.
    """
    neg = nodes < 0
    est = jnp.sum(jnp.where(neg, weights, 0.0), axis=-1)
    j = jnp.sum(neg, axis=-1)  # index of the first node >= 0
    k = nodes.shape[-1]
    below = jnp.take_along_axis(weights, jnp.maximum(j - 1, 0)[..., None], axis=-1)[..., 0]
    above = jnp.take_along_axis(weights, jnp.minimum(j, k - 1)[..., None], axis=-1)[..., 0]
    below = jnp.where(j > 0, below, 0.0)
    above = jnp.where(j < k, above, 0.0)
    if exact is not None:
        below = jnp.where(exact, 0.0, below)
        above = jnp.where(exact, 0.0, above)
    return est, jnp.maximum(est - below, 0.0), jnp.minimum(est + above, 1.0)


def _summarize(q: Quadrature, sigma, sigma_rel, grid, num_points):
    valid = jnp.arange(q.nodes.shape[1])[None, :] < q.num_valid[:, None]
    lo = jnp.min(jnp.where(valid, q.nodes, jnp.inf))
    hi = jnp.max(jnp.where(valid, q.nodes, -jnp.inf))
    spread = hi - lo
    scale = jnp.where(spread > 0, spread, jnp.maximum(jnp.abs(hi), 1.0))
    sigma = jnp.where(jnp.isnan(sigma), sigma_rel * scale, sigma).astype(q.nodes.dtype)
    if grid is None:
        grid = jnp.linspace(lo - GRID_PAD * sigma, hi + GRID_PAD * sigma, num_points, dtype=q.nodes.dtype)
    dens = smooth(q.nodes, q.weights, grid, sigma)
    est, nlo, nhi = negative_fraction(q.nodes, q.weights, q.exact)
    smoothed = jnp.mean(jnp.sum(q.weights * ndtr(-q.nodes / sigma), axis=-1))
    return SpectralDensity(
        grid=grid, density=dens, sigma=sigma, nodes=q.nodes, weights=q.weights, num_valid=q.num_valid, exact=q.exact,
        neg_fraction=jnp.mean(est), neg_fraction_lo=jnp.mean(nlo), neg_fraction_hi=jnp.mean(nhi),
        neg_fraction_smoothed=smoothed, lambda_min=lo, lambda_max=hi,
        probe_neg_fraction=est, probe_neg_lo=nlo, probe_neg_hi=nhi,
    )


@functools.partial(jax.jit, static_argnames=("f", "num_probes", "num_steps", "probe", "num_points"))
def _density(f, params, key, sigma, sigma_rel, grid, num_probes, num_steps, probe, num_points):
    # one program: quadrature and summary (one compilation per configuration)
    q = _quadrature_impl(f, params, key, num_probes, num_steps, probe)
    return _summarize(q, sigma, sigma_rel, grid, num_points)


def density(
    f: Callable[[Any], jax.Array],
    params: Any,
    key: jax.Array | None = None,
    *,
    num_probes: int = 8,
    num_steps: int = 64,
    probe: str = "rademacher",
    num_points: int = 1024,
    sigma: float | None = None,
    sigma_rel: float = DEFAULT_SIGMA_REL,
    grid: jax.Array | None = None,
) -> SpectralDensity:
    """SLQ spectral density of the Hessian of ``f`` at ``params`` (module docstring).

    Args:
      f: scalar function of a pytree (e.g. ``problem.full_loss``; for the spin glass its Hessian
        is the Riemannian one on the tangent space plus the radial constant c_r, one eigenvalue).
      params: the point.
      key: PRNG key of the probes (default ``jax.random.key(0)``).
      num_probes: independent probe vectors (the sampling error falls like 1/sqrt(num_probes)).
      num_steps: Lanczos steps per probe, capped at the dimension (k = n is exact per probe).
      probe: "rademacher" or "gaussian".
      num_points: grid size when ``grid`` is not given.
      sigma: absolute kernel width; default ``sigma_rel`` times the Ritz spread.
      grid: evaluation points (e.g. a common axis for several densities); default a uniform grid
        from the smallest to the largest Ritz value, padded by ``GRID_PAD`` sigma.

    Returns:
      A ``SpectralDensity`` of jax arrays.
    """
    _check(num_probes, num_steps, probe)
    if int(num_points) < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if not sigma_rel > 0:
        raise ValueError(f"sigma_rel must be > 0, got {sigma_rel}")
    key = jax.random.key(0) if key is None else key
    dtype = ravel_pytree(params)[0].dtype
    s = jnp.asarray(jnp.nan if sigma is None else sigma, dtype)
    g = None if grid is None else jnp.asarray(grid, dtype)
    return _density(f, params, key, s, jnp.asarray(sigma_rel, dtype), g, int(num_probes), int(num_steps), probe,
                    int(num_points))
