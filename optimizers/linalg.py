"""Matrix-free linear algebra on Hessians: HVPs, Lanczos, extreme Ritz pairs, conjugate gradients.

Everything here works on a symmetric operator ``A`` given only as ``matvec(v) = A v`` on flat
vectors (for a Hessian, ``v -> H(x) v`` by forward-over-reverse differentiation), runs a fixed
number of iterations so that it compiles under ``jit``, ``vmap`` and ``lax.scan``, and never
produces NaN from a breakdown or a zero start vector.

    hvp(f, params, v)                       # H(params) v, pytree in, pytree out
    flat_hvp(f, params)                     # (matvec on flat vectors, flat params, unravel)
    lanczos(matvec, v0, k)                  # LanczosResult(alphas, betas, basis, mask, num_valid, residual)
    tridiag_eigh(alphas, betas, mask=None)  # (eigenvalues ascending, eigenvectors) of T
    extreme_eigs(matvec, v0, k)             # ExtremeEigs(min_value, max_value, min_vector, max_vector, ...)
    conjugate_gradient(matvec, b, max_iters, tol)  # CGResult(x, num_iters, residual_norm)

References:
  C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
  differential and integral operators", J. Res. Nat. Bur. Standards 45 (1950) 255-282.
  C. C. Paige, "The computation of eigenvalues and eigenvectors of very large sparse matrices",
  PhD thesis, London 1971; and "Accuracy and effectiveness of the Lanczos algorithm for the
  symmetric eigenproblem", Linear Algebra Appl. 34 (1980) 235-258.
  G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., Johns Hopkins 2013,
  sections 10.1-10.3 (Lanczos, full reorthogonalization) and 11.3 (conjugate gradients).
  M. R. Hestenes and E. Stiefel, "Methods of conjugate gradients for solving linear systems",
  J. Res. Nat. Bur. Standards 49 (1952) 409-436.
  B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6 (1994).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

Matvec = Callable[[jax.Array], jax.Array]


# --------------------------------------------------------------------------------------------
# Precision


def working_dtype(dtype) -> jnp.dtype:
    """The dtype small dense pieces are computed in: ``dtype``, at least float32.

    Krylov bases, tridiagonal eigenproblems, secular equations and CG recurrences for bfloat16
    or float16 parameters run in float32 (8 or 11 bits of mantissa lose orthogonality at the
    first step, and ``eigh`` has no 16-bit kernel); float32 and float64 stay as they are.
    """
    return jnp.promote_types(dtype, jnp.float32)


# --------------------------------------------------------------------------------------------
# Hessian-vector products


def hvp(f: Callable[[Any], jax.Array], params: Any, v: Any) -> Any:
    """Hessian-vector product ``H(params) v`` of a scalar function, by forward-over-reverse.

    ``H v = d/dt grad f(params + t v) |_{t=0}``, computed as ``jvp(grad f, (params,), (v,))``:
    one forward-mode pass through the reverse-mode gradient, at about the cost of two to
    three gradients and without forming ``H`` (Pearlmutter 1994). ``params`` and ``v`` are
    pytrees of the same structure; so is the result.
    """
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def flat_hvp(f: Callable[[Any], jax.Array], params: Any) -> tuple[Matvec, jax.Array, Callable]:
    """The Hessian of ``f`` at ``params`` as an operator on flat vectors.

    Returns ``(matvec, x, unravel)``: ``x = ravel_pytree(params)[0]``, ``unravel`` maps a flat
    vector back to the pytree of ``params`` and ``matvec(v) = ravel(H unravel(v))``, with the
    result cast to the dtype of ``x``.
    """
    x, unravel = ravel_pytree(params)

    def matvec(v):
        out, _ = ravel_pytree(hvp(f, params, unravel(v.astype(x.dtype))))
        return out.astype(x.dtype)

    return matvec, x, unravel


# --------------------------------------------------------------------------------------------
# Lanczos


class LanczosResult(NamedTuple):
    """Output of ``lanczos``; ``k`` steps on an operator of size ``n``.

    Attributes:
      alphas: (k,) diagonal of the tridiagonal ``T = V A V^T``; zero past a breakdown.
      betas: (k-1,) off-diagonal of ``T``; zero at and past a breakdown.
      basis: (k, n) orthonormal Lanczos vectors ``V`` (rows); zero rows past a breakdown.
      mask: (k,) bool, which rows of ``basis`` (and entries of ``alphas``) are valid.
      num_valid: int32 scalar ``m = sum(mask)``, the dimension of the Krylov space reached
        (0 when ``v0 = 0``), and the number of matvecs spent.
      residual: scalar ``beta_k = |r_k|``, the norm of the residual after the last valid
        step: ``A V^T = V^T T + r e_m^T`` and every Ritz pair ``(theta, V^T y)`` has residual
        ``|A V^T y - theta V^T y| = beta_k |y_m|`` (Paige 1980); zero when the Krylov space is
        invariant.
    """

    alphas: jax.Array
    betas: jax.Array
    basis: jax.Array
    mask: jax.Array
    num_valid: jax.Array
    residual: jax.Array


def lanczos(matvec: Matvec, v0: jax.Array, k: int, tol: float | None = None) -> LanczosResult:
    """``k`` steps of the symmetric Lanczos process with full reorthogonalization.

    With ``q_1 = v0 / |v0|`` and ``beta_0 q_0 = 0``, step ``j = 1..k`` computes

        w = A q_j,   alpha_j = q_j . w,   w <- w - alpha_j q_j - beta_{j-1} q_{j-1},
        w <- w - V_j^T (V_j w)   (twice: "twice is enough", Golub and Van Loan 10.3.1),
        beta_j = |w|,   q_{j+1} = w / beta_j,

    so that ``V A V^T = T = tridiag(betas, alphas, betas)`` with ``V = [q_1 .. q_k]`` orthonormal
    (Lanczos 1950). In floating point the plain three-term recurrence loses orthogonality as
    soon as a Ritz value converges (Paige 1971) and produces spurious copies of eigenvalues;
    reorthogonalizing against all previous vectors (classical Gram-Schmidt, applied twice)
    keeps ``V`` orthonormal to working precision at ``O(k n)`` extra cost per step.

    Breakdown: if ``beta_j <= tol * |T|`` the Krylov space ``K_j(A, v0)`` is invariant, its
    Ritz values are exact eigenvalues, and the process stops: later vectors, alphas and betas
    are zero and ``mask`` marks them invalid (no division by zero, no NaN). ``v0 = 0`` gives
    ``num_valid = 0`` and all zeros. The arrays have the static shapes of ``k`` steps; the loop
    is a ``lax.while_loop`` that stops at a breakdown, so ``matvec`` is called exactly
    ``num_valid`` times (per problem: under ``vmap`` finished elements are masked, and the
    count does not depend on the batching). It works under jit, vmap and scan, but is not
    reverse-mode differentiable.

    Args:
      matvec: ``v -> A v`` for a symmetric ``A`` on flat vectors of shape (n,).
      v0: (n,) start vector (need not be normalized).
      k: number of steps, a Python int (static); ``k > n`` is allowed and breaks down at n.
      tol: relative breakdown threshold on ``beta_j / |T|``; default ``16 sqrt(n) eps``.

    Returns:
      A ``LanczosResult``.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"lanczos needs k >= 1, got {k}")
    v0 = jnp.asarray(v0)
    if not jnp.issubdtype(v0.dtype, jnp.floating):
        v0 = v0.astype(jnp.float32)
    dtype = v0.dtype
    (n,) = v0.shape
    eps = jnp.finfo(dtype).eps
    if tol is None:
        tol = 16.0 * float(n) ** 0.5 * float(eps)
    tiny = jnp.finfo(dtype).tiny

    def reorth(w, V):
        # rows of V past the current step are zero, so projecting on all of V is exact
        w = w - V.T @ (V @ w)
        return w - V.T @ (V @ w)

    nrm0 = jnp.linalg.norm(v0)
    ok0 = nrm0 > tiny
    q0 = jnp.where(ok0, v0 / jnp.where(ok0, nrm0, 1.0), 0.0).astype(dtype)

    V = jnp.zeros((k, n), dtype).at[0].set(q0)
    alphas = jnp.zeros((k,), dtype)
    betas = jnp.zeros((k,), dtype)  # betas[j] links q_j and q_{j+1}; betas[k-1] is the residual
    mask = jnp.zeros((k,), bool).at[0].set(ok0)

    def cond(carry):
        j, _, _, _, mask, _ = carry
        return (j < k) & mask[jnp.minimum(j, k - 1)]

    def body(carry):
        j, V, alphas, betas, mask, anorm = carry
        valid = mask[j]
        q = V[j]
        q_prev = jnp.where(j > 0, V[jnp.maximum(j - 1, 0)], jnp.zeros_like(q))
        b_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0.0)
        w = matvec(q).astype(dtype)
        a = jnp.where(valid, jnp.vdot(q, w), 0.0)
        w = w - a * q - b_prev * q_prev
        w = reorth(w, V)
        b = jnp.linalg.norm(w)
        # |T| estimate: the largest Gershgorin radius seen so far
        anorm = jnp.maximum(anorm, jnp.abs(a) + b + b_prev)
        cont = valid & (b > tol * anorm) & (b > tiny)
        b = jnp.where(valid, b, 0.0)
        q_next = jnp.where(cont, w / jnp.where(cont, b, 1.0), 0.0)
        # the residual after the last valid step is kept in betas[k-1] (or at the breakdown)
        has_next = j + 1 < k
        jn = jnp.minimum(j + 1, k - 1)
        V = V.at[jn].set(jnp.where(has_next, q_next, V[jn]))
        mask = mask.at[jn].set(jnp.where(has_next, cont, mask[jn]))
        alphas = alphas.at[j].set(a)
        betas = betas.at[j].set(jnp.where(cont | ~has_next, b, 0.0))
        return j + 1, V, alphas, betas, mask, anorm

    init = (jnp.zeros((), jnp.int32), V, alphas, betas, mask, jnp.zeros((), dtype))
    _, V, alphas, betas, mask, _ = lax.while_loop(cond, body, init)
    residual = betas[k - 1]
    # at a breakdown (or v0 = 0) the residual is zero by definition of invariance
    residual = jnp.where(mask[k - 1], residual, 0.0)
    return LanczosResult(
        alphas=alphas,
        betas=betas[: k - 1],
        basis=V,
        mask=mask,
        num_valid=jnp.sum(mask).astype(jnp.int32),
        residual=residual,
    )


def tridiag_eigh(alphas: jax.Array, betas: jax.Array, mask: jax.Array | None = None):
    """Eigendecomposition ``T = Y diag(theta) Y^T`` of a symmetric tridiagonal matrix.

    ``T`` has diagonal ``alphas`` (k,) and off-diagonal ``betas`` (k-1,); it is formed densely
    (k is small) and passed to ``jnp.linalg.eigh``. Eigenvalues come ascending, eigenvectors
    as columns of ``Y``.

    With ``mask`` (the ``LanczosResult.mask``), only the leading ``m = sum(mask)`` rows and
    columns are the Lanczos matrix; the rest is padding from a breakdown. Padded diagonal
    entries are replaced by a value above the Gershgorin bound of the valid block, so the
    ``m`` genuine Ritz values come first (indices ``0..m-1``) and the ``k - m`` padding
    eigenvalues last, with eigenvectors supported on the padding (whose Lanczos vectors are
    zero, so their Ritz vectors are zero).

    Half precision: LAPACK's ``eigh`` has no bfloat16 or float16 kernel, and 8 or 11 bits could
    not resolve a spectrum anyway, so 16-bit inputs are diagonalized in float32 and the result
    is returned in the input dtype (``working_dtype``).

    Returns:
      ``(theta, Y)``: (k,) ascending eigenvalues and (k, k) orthonormal eigenvectors.
    """
    alphas = jnp.asarray(alphas)
    betas = jnp.asarray(betas)
    dtype = jnp.result_type(alphas, betas)
    work = working_dtype(dtype)
    if work != dtype:
        theta, Y = tridiag_eigh(alphas.astype(work), betas.astype(work), mask)
        return theta.astype(dtype), Y.astype(dtype)
    if mask is not None:
        mask = jnp.asarray(mask, bool)
        bmask = mask[1:] & mask[:-1]
        betas = jnp.where(bmask, betas, 0.0)
        bpad = jnp.concatenate([jnp.zeros((1,), betas.dtype), jnp.abs(betas)])
        bpad2 = jnp.concatenate([jnp.abs(betas), jnp.zeros((1,), betas.dtype)])
        radius = jnp.where(mask, jnp.abs(alphas) + bpad + bpad2, 0.0)
        pad = 2.0 * jnp.max(radius) + 1.0
        alphas = jnp.where(mask, alphas, pad)
    T = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)
    return jnp.linalg.eigh(T)


class ExtremeEigs(NamedTuple):
    """Smallest and largest Ritz pairs from ``k`` Lanczos steps.

    The Ritz values lie inside the spectrum and interlace it (Cauchy interlacing, since
    ``T = V A V^T`` is a compression of ``A``): ``lambda_min(A) <= min_value`` and
    ``max_value <= lambda_max(A)``, with equality once the Krylov space holds the extreme
    eigenvectors (k = n, or an invariant subspace). Vectors are unit norm in the original
    space (zero when ``v0 = 0``).
    """

    min_value: jax.Array
    max_value: jax.Array
    min_vector: jax.Array
    max_vector: jax.Array
    lanczos: LanczosResult


def extreme_eigs(matvec: Matvec, v0: jax.Array, k: int, tol: float | None = None) -> ExtremeEigs:
    """Smallest and largest Ritz values of ``A`` in ``K_k(A, v0)`` and their Ritz vectors.

    Runs ``lanczos`` (``num_valid <= k`` matvecs), diagonalizes ``T = Y diag(theta) Y^T`` and maps the
    extreme eigenvectors back, ``u = V^T y``. Extreme eigenvalues converge first and fast:
    after ``k`` steps from a random start the error decays like ``exp(-4 k sqrt(gap))``
    in the relative gap (Kaniel-Paige-Saad bounds, Golub and Van Loan 10.1.5). With ``v0 = 0``
    everything is zero.
    """
    res = lanczos(matvec, v0, k, tol)
    theta, Y = tridiag_eigh(res.alphas, res.betas, res.mask)
    m = res.num_valid
    last = jnp.maximum(m - 1, 0)
    ok = m > 0
    lo = jnp.where(ok, theta[0], 0.0)
    hi = jnp.where(ok, theta[last], 0.0)
    u_lo = res.basis.T @ Y[:, 0]
    u_hi = res.basis.T @ Y[:, last]
    u_lo = jnp.where(ok, u_lo, 0.0)
    u_hi = jnp.where(ok, u_hi, 0.0)
    return ExtremeEigs(lo, hi, u_lo, u_hi, res)


# --------------------------------------------------------------------------------------------
# Conjugate gradients


class CGResult(NamedTuple):
    """Output of ``conjugate_gradient``.

    Attributes:
      x: (n,) approximate solution of ``A x = b``.
      num_iters: int32, iterations run = matvecs spent.
      residual_norm: ``|b - A x|`` as tracked by the recurrence.
    """

    x: jax.Array
    num_iters: jax.Array
    residual_norm: jax.Array


def conjugate_gradient(matvec: Matvec, b: jax.Array, max_iters: int, tol=1e-6) -> CGResult:
    """Conjugate gradients for ``A x = b`` from ``x_0 = 0`` (Hestenes and Stiefel 1952).

        r_0 = p_0 = b;  alpha = r.r / p.A p;  x += alpha p;  r -= alpha A p;
        p = r + (r_new.r_new / r.r) p.

    Stops after ``max_iters`` (a Python int) iterations, when ``|r| <= tol |b|``, or when the
    curvature ``p.A p`` vanishes (``|p.A p| <= eps |A| |p|^2``, with ``|A|`` the largest
    Rayleigh quotient seen), which would divide by zero. It deliberately does NOT stop on
    negative curvature: on an indefinite ``A`` it keeps iterating towards the stationary point
    of the quadratic ``x.A x / 2 - b.x`` (a saddle of it), which is what an undamped Newton
    step does. Written as ``lax.while_loop``, so on its own it stops early; under ``vmap``
    finished elements are masked. ``num_iters`` counts, per problem, the matvecs that problem
    needed, independent of batching. ``tol`` may be a traced scalar.

    Scale: the solve runs on ``b / 2^e``, 2^e the power of two at ``max|b_i|``, and scales back (the
    solution of a linear system is linear in ``b``), so ``r.r`` neither overflows for huge ``b``
    (|b| ~ 1e18: squares near float32's 3.4e38) nor underflows for tiny ``b`` (|b| ~ 1e-30: squares
    below 1e-38 flush to 0, which would stop CG at once with x = 0); a Newton step is then the same at
    every scale of the loss. A power of two scales every floating-point operation of CG exactly, so
    wherever the unscaled solve neither overflows nor underflows the result is the same bits.
    """
    b = jnp.asarray(b)
    dtype = b.dtype
    eps = jnp.finfo(dtype).eps
    big = jnp.max(jnp.abs(b)) if b.size else jnp.zeros((), dtype)
    _, e = jnp.frexp(jnp.where(big > 0, big, 1.0).astype(dtype))
    scale = jnp.ldexp(jnp.ones((), dtype), e)
    b = b / scale
    bnorm = jnp.linalg.norm(b)
    thresh = jnp.asarray(tol, dtype) * bnorm
    max_iters = int(max_iters)

    def cond(c):
        i, _, _, _, rs, _, stalled = c
        return (i < max_iters) & (jnp.sqrt(rs) > thresh) & ~stalled

    def body(c):
        i, x, r, p, rs, anorm, _ = c
        Ap = matvec(p).astype(dtype)
        pAp = jnp.vdot(p, Ap)
        pp = jnp.vdot(p, p)
        anorm = jnp.maximum(anorm, jnp.abs(pAp) / jnp.where(pp > 0, pp, 1.0))
        stalled = jnp.abs(pAp) <= eps * anorm * pp
        alpha = jnp.where(stalled, 0.0, rs / jnp.where(stalled, 1.0, pAp))
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = jnp.vdot(r, r)
        beta = jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0)
        p = r + beta * p
        return i + 1, x, r, p, rs_new, anorm, stalled

    z = jnp.zeros_like(b)
    init = (jnp.zeros((), jnp.int32), z, b, b, jnp.vdot(b, b), jnp.zeros((), dtype), jnp.zeros((), bool))
    i, x, _, _, rs, _, _ = lax.while_loop(cond, body, init)
    return CGResult(x=x * scale, num_iters=i, residual_norm=jnp.sqrt(rs) * scale)
