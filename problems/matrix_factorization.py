"""Symmetric low-rank matrix factorization: f(U) = 1/2 |U U^T - M*|_F^2, U in R^{n x r}.

M* = U* U*^T with U* an n x r matrix of iid N(0, 1/n) entries drawn from the instance seed
(numpy, so the instance is the same on every backend), which gives M* eigenvalues of order 1.
f* = 0, attained at U = U* R for every orthogonal R. Ge, Jin and Zheng 2017 ("No Spurious Local
Minima in Nonconvex Low Rank Problems: A Unified Geometric Analysis", ICML 2017) show that every
local minimum is global and every other critical point is a strict saddle. The critical points are
U = V_S diag(sqrt(mu_S)) R with V_S a subset S of the eigenvectors of M* (eigenvalues mu_S),
f = 1/2 sum_{j not in S} mu_j^2. In particular U = 0 is a saddle with f = 1/2 |M*|_F^2: the Hessian
there is the quadratic form V -> -2 tr(V^T M* V), with eigenvalues -2 mu_j (each r times) and 0,
so its index is r^2 and it is degenerate along the null space of M*.

The initialization is U_0 with iid N(0, init_scale^2) entries; the small default starts at the
saddle 0, from which gradient descent learns the eigen-directions of M* one at a time
(incremental learning).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from problems.base import Reference, Saddle, make, relative_target


def matrix_factorization_factor(n: int, rank: int, instance: int) -> np.ndarray:
    """U* (float32, n x r): iid N(0, 1/n) entries from numpy's default_rng(instance)."""
    rng = np.random.default_rng(instance)
    return (rng.standard_normal((n, rank)) / np.sqrt(n)).astype(np.float32)


def matrix_factorization_value(params, target):
    u = params
    r = u @ u.T - target
    return 0.5 * jnp.sum(r * r)


def matrix_factorization(n: int = 10, rank: int = 2, instance: int = 0, init_scale: float = 1e-3):
    """1/2 |U U^T - M*|_F^2 with rank-r M*: f* = 0, all local minima global, strict saddle at U = 0."""
    if n < 1:
        raise ValueError(f"matrix_factorization: n must be >= 1, got {n}")
    if not 1 <= rank <= n:
        raise ValueError(f"matrix_factorization: rank must be in [1, n={n}], got {rank}")
    if instance < 0:
        raise ValueError(f"matrix_factorization: instance must be >= 0, got {instance}")
    if not init_scale > 0:
        raise ValueError(f"matrix_factorization: init_scale must be > 0, got {init_scale}")
    u_star = matrix_factorization_factor(n, rank, instance).astype(np.float64)
    m32 = (u_star @ u_star.T).astype(np.float32)
    target = jnp.asarray(m32)
    # Values from the float32 target the loss actually sees (its rounding moves f* by ~1e-14).
    m64 = m32.astype(np.float64)
    saddle_value = 0.5 * float(np.sum(m64 * m64))

    def init(key):
        return init_scale * jax.random.normal(key, (n, rank), jnp.float32)

    mu = np.linalg.eigvalsh(m64)[::-1][:rank]
    return make(
        dim=n * rank,
        init=init,
        full_loss=functools.partial(matrix_factorization_value, target=target),
        reference=Reference(
            f_star=0.0,
            f_target=relative_target(0.0, saddle_value),
            source=(
                "closed form: M* = U* U*^T has rank r, so f* = 0 at U = U* (Ge, Jin, Zheng 2017: "
                "all local minima global); target 1e-4 f(0)"
            ),
            extra={
                "saddle_value": saddle_value,
                **{f"eigenvalue_{j + 1}": float(v) for j, v in enumerate(mu)},
            },
        ),
        saddles=(
            Saddle(point=jnp.zeros((n, rank), jnp.float32), value=saddle_value, index=rank * rank,
                   name="origin"),
        ),
    )
