"""Exact solver for the small dense cubic-regularization subproblem (private helper).

Solves

    min_y  m(y) = b.y + 1/2 y.T y + sigma/3 |y|^3

for a small symmetric ``T`` (k x k, in practice the Lanczos tridiagonal of the Hessian in a
Krylov subspace), following Nesterov & Polyak (2006, Sec. 5) and Cartis, Gould & Toint (2011,
Sec. 6.1). Every global minimizer satisfies (Nesterov & Polyak 2006, Thm. 10)

    (T + lambda I) y = -b,   lambda = sigma |y|,   T + lambda I positive semidefinite,

so with T = Q diag(theta) Q^T and c = Q^T b, y(lambda) = -Q (c / (theta + lambda)) and lambda is the
root in [max(0, -theta_min), inf) of the secular equation |y(lambda)| = lambda / sigma.

Numerics (float32, jit and vmap friendly, no data-dependent Python control flow):

* lambda is parametrized as lambda = lambda_lo + delta with lambda_lo = max(0, -theta_min), and the
  shifted eigenvalues theta_i + lambda_lo = theta_i - theta_min (or theta_i) are formed once, so
  theta_min + lambda = delta is exact even when delta is far below float32 resolution of lambda
  (the "nearly hard" case).
* The root is found with a fixed number of safeguarded Newton iterations on
  phi(delta) = 1/|y| - sigma/lambda (increasing and concave, Cartis et al. 2011, Sec. 6.1) inside
  the bracket (0, delta_hi], delta_hi = 2 sigma |c| / (lambda_lo + sqrt(lambda_lo^2 + 4 sigma |c|)),
  falling back to bisection whenever a Newton iterate leaves the bracket.
* The hard case (c vanishes on the eigenspace of theta_min < 0 and |y_perp(-theta_min)| <= lambda_lo/sigma)
  gives y = y_perp + tau q_min with tau chosen so that |y| = lambda_lo / sigma; tau takes the sign
  that makes c_min tau <= 0 (the limit of the nearly hard case), and + when c_min is exactly zero, so
  that g = 0 at a strict saddle still gives a nonzero step.
* The secular root, the hard-case point and the Cauchy point (minimizer of m along -b) are all
  candidates; the one with the lowest model value is returned. This makes the choice between them
  robust to float32 round-off instead of depending on thresholds.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

NEWTON_ITERS = 60


class CubicSolution(NamedTuple):
    y: jax.Array  # minimizer (k,)
    model: jax.Array  # m(y) <= 0
    lam: jax.Array  # multiplier sigma |y|
    which: jax.Array  # int32: 0 secular root, 1 hard case, 2 Cauchy point


def cubic_model(b, T, sigma, y):
    """m(y) = b.y + 1/2 y.T y + sigma/3 |y|^3."""
    return b @ y + 0.5 * y @ (T @ y) + sigma / 3.0 * jnp.linalg.norm(y) ** 3


def cauchy_step_length(gnorm, curv, sigma):
    """alpha >= 0 minimizing -alpha |g|^2 + alpha^2/2 g.Bg + sigma/3 alpha^3 |g|^3 (curv = g.Bg).

    Written as 2|g|^2 / (g.Bg + sqrt((g.Bg)^2 + 4 sigma |g|^5)) to avoid cancellation; 0 when g = 0.
    """
    g2 = gnorm**2
    den = curv + jnp.sqrt(curv**2 + 4.0 * sigma * g2 * g2 * gnorm)
    return jnp.where(den > 0, 2.0 * g2 / jnp.where(den > 0, den, 1.0), 0.0)


def solve_cubic_eig(theta, Q, b, sigma, T=None, iters: int = NEWTON_ITERS) -> CubicSolution:
    """Global minimizer of b.y + 1/2 y.T y + sigma/3 |y|^3 given T = Q diag(theta) Q^T.

    Args:
      theta: eigenvalues of T, ascending (as ``jnp.linalg.eigh`` returns them), shape (k,).
      Q: eigenvectors (columns), shape (k, k).
      b: linear term, shape (k,).
      sigma: cubic weight (> 0), a traced scalar is fine.
      T: the matrix itself (only to evaluate model values; rebuilt from Q, theta if omitted).
      iters: safeguarded Newton iterations on the secular equation (static).
    """
    dtype = b.dtype
    if T is None:
        T = (Q * theta) @ Q.T
    sigma = jnp.asarray(sigma, dtype)
    tiny = jnp.finfo(dtype).tiny
    eps = jnp.finfo(dtype).eps
    c = Q.T @ b
    cnorm = jnp.linalg.norm(c)
    theta_min = theta[0]
    lam_lo = jnp.maximum(0.0, -theta_min)
    # theta_i + lam_lo, exact zero for the lowest eigenvalue when it is negative
    shift = jnp.where(theta_min < 0, theta - theta_min, theta)
    shift = jnp.maximum(shift, 0.0)

    def ynorm_and_slope(delta):
        d = shift + delta
        w = c / d
        yn = jnp.linalg.norm(w)
        # d|y|/d delta = -sum c^2 / d^3 / |y|
        s3 = jnp.sum(w * w / d)
        return yn, s3

    # ---- secular root (regular case) --------------------------------------------------------
    root = jnp.sqrt(lam_lo**2 + 4.0 * sigma * cnorm)
    delta_hi = 2.0 * sigma * cnorm / jnp.maximum(lam_lo + root, tiny)
    delta_hi = jnp.maximum(delta_hi, tiny)

    def newton(_, carry):
        lo, hi, delta = carry
        yn, s3 = ynorm_and_slope(delta)
        lam = lam_lo + delta
        phi = 1.0 / yn - sigma / lam
        dphi = s3 / yn**3 + sigma / lam**2
        neg = phi < 0
        lo = jnp.where(neg, delta, lo)
        hi = jnp.where(neg, hi, delta)
        step = delta - phi / dphi
        ok = jnp.isfinite(step) & (step > lo) & (step < hi)
        delta = jnp.where(ok, step, 0.5 * (lo + hi))
        return lo, hi, delta

    _, _, delta = jax.lax.fori_loop(0, iters, newton, (jnp.zeros((), dtype), delta_hi, delta_hi))
    d_reg = shift + delta
    y_reg = -Q @ jnp.where(d_reg > 0, c / jnp.where(d_reg > 0, d_reg, 1.0), 0.0)
    y_reg = jnp.where(cnorm > 0, y_reg, jnp.zeros_like(y_reg))
    m_reg = cubic_model(b, T, sigma, y_reg)
    m_reg = jnp.where(jnp.isfinite(m_reg), m_reg, jnp.inf)

    # ---- hard case ----------------------------------------------------------------------------
    scale = jnp.maximum(jnp.max(jnp.abs(theta)), tiny)
    in_min = shift <= 10.0 * eps * scale  # the eigenspace of theta_min (numerically)
    c_perp = jnp.where(in_min, 0.0, c)
    w_perp = c_perp / jnp.where(in_min, 1.0, shift)
    r = lam_lo / sigma
    t2 = r**2 - w_perp @ w_perp
    hard_ok = (theta_min < 0) & (t2 >= 0)
    c_min = c[0]
    sign = jnp.where(c_min > 0, -1.0, 1.0).astype(dtype)
    tau = sign * jnp.sqrt(jnp.maximum(t2, 0.0))
    y_hard = -Q @ w_perp + tau * Q[:, 0]
    m_hard = jnp.where(hard_ok, cubic_model(b, T, sigma, y_hard), jnp.inf)

    # ---- Cauchy point along -b ----------------------------------------------------------------
    alpha = cauchy_step_length(cnorm, b @ (T @ b), sigma)
    y_c = -alpha * b
    m_c = cubic_model(b, T, sigma, y_c)
    m_c = jnp.where(jnp.isfinite(m_c), m_c, 0.0)
    y_c = jnp.where(jnp.isfinite(m_c) & jnp.all(jnp.isfinite(y_c)), y_c, jnp.zeros_like(y_c))

    models = jnp.stack([m_reg, m_hard, m_c])
    which = jnp.argmin(models).astype(jnp.int32)
    y = jnp.stack([y_reg, y_hard, y_c])[which]
    model = models[which]
    return CubicSolution(y=y, model=model, lam=sigma * jnp.linalg.norm(y), which=which)


def solve_cubic_dense(T, b, sigma, iters: int = NEWTON_ITERS) -> CubicSolution:
    """Global minimizer of b.y + 1/2 y.T y + sigma/3 |y|^3 for a small dense symmetric T."""
    T = 0.5 * (T + T.T)
    theta, Q = jnp.linalg.eigh(T)
    return solve_cubic_eig(theta, Q, b, sigma, T=T, iters=iters)
