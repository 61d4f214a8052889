"""Stochastic cubic regularization (Tripuraneni, Stern, Jin, Regier and Jordan 2018).

Each step builds the cubic model from a mini-batch gradient g and mini-batch Hessian-vector
products B[.] (the runner's gradient and HVPs of this step's ``value_fn``),

    m(D) = g.D + 1/2 D.B[D] + rho/6 |D|^3,

and minimizes it approximately with the paper's Algorithm 2 (Cubic-Subsolver via gradient
descent):

* if |g| >= l^2/rho: the Cauchy step D = -R_c g/|g| with
  R_c = -beta/rho + sqrt((beta/rho)^2 + 2|g|/rho), beta = g.B[g]/|g|^2 (1 HVP);
* otherwise, from D = 0 and with the perturbed gradient g~ = g + sigma zeta,
  zeta ~ Uniform(S^{d-1}) drawn from the step ``key``, sigma = c' sqrt(eps rho)/l,
  T_sub iterations of  D <- D - eta (g~ + B[D] + rho/2 |D| D),  eta = learning_rate (1/(20 l) in
  the paper) (T_sub HVPs: B[0] = 0 is free and the last B[D] is reused below).

Then, as in Algorithm 1, the model decrease Dm = m(D) (with the unperturbed g) is checked: if
Dm >= -sqrt(eps^3/rho)/100 the point is an approximate eps-second-order stationary point and the
Cubic-Finalsolver (Algorithm 3) takes over: gradient descent on m from D = 0 with step eta,
D <- D - eta grad m(D), until |grad m(D)| <= eps/2 or T_final iterations (1 HVP each). The paper
stops there and returns x + D; here the iteration simply goes on from that point, so the final
solver is the step whenever the sub-solver fails to decrease the model enough.

The update is x <- x + D; there is no function value and no acceptance test.

Oracle accounting (``OracleCounts.hvps``): the HVPs of the branch the algorithm takes -- 1 for
the Cauchy step, T_sub for the gradient-descent sub-solver, plus the final-solver iterations
actually run. Under ``vmap`` with a batched branch condition JAX evaluates both branches of
``lax.cond`` (as a select), so the hardware does more work than counted; the count is the
algorithm's oracle complexity, independent of batching.

Reference:
  N. Tripuraneni, M. Stern, C. Jin, J. Regier and M. I. Jordan, "Stochastic Cubic
  Regularization for Fast Nonconvex Optimization", NeurIPS 2018 (arXiv:1711.02838),
  Algorithms 1-3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers.base import OracleCounts, require_update_args
from optimizers.linalg import flat_hvp
from optimizers.noise import sample_sphere

BRANCH_CAUCHY, BRANCH_SUBSOLVER, BRANCH_FINAL = 0, 1, 2


class StochasticCubicState(NamedTuple):
    """State of ``scale_by_stochastic_cubic``.

    Attributes:
      count: number of updates so far (int32); only used for the fallback key.
      last_model: Dm = m(D) of the sub-solver step of the last update.
      last_branch: 0 Cauchy step, 1 gradient-descent sub-solver, 2 final solver.
      counts: oracle calls spent by this transformation (HVPs only).
    """

    count: jax.Array
    last_model: jax.Array
    last_branch: jax.Array
    counts: OracleCounts


def scale_by_stochastic_cubic(
    *,
    learning_rate: float | None,
    l: float,
    rho: float,
    eps: float,
    c_prime: float,
    T_sub: int,
    T_final: int,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Stochastic cubic regularization step (Tripuraneni et al. 2018, Algorithms 1-3); returns +D.

    ``update`` needs ``value_fn`` (this step's mini-batch loss, for HVPs) and uses ``key`` for
    the sub-solver perturbation (without ``key`` it folds the step count into ``seed``).

    Args:
      learning_rate: sub-solver / final-solver step eta; None means the paper's 1/(20 l).
      l: gradient Lipschitz constant (Cauchy-step threshold l^2/rho and perturbation size).
      rho: Hessian Lipschitz constant, the cubic weight of the model (rho/6 |D|^3).
      eps: target accuracy: eps-second-order stationarity, final-solver tolerance eps/2.
      c_prime: perturbation constant c' in sigma = c' sqrt(eps rho)/l.
      T_sub: sub-solver iterations (static).
      T_final: cap on final-solver iterations (static).
      seed: seed of the fallback key (only when ``update`` gets no ``key``).
    """
    T_sub = int(T_sub)
    T_final = int(T_final)
    if T_sub < 1 or T_final < 0:
        raise ValueError(f"stochastic_cubic needs T_sub >= 1 and T_final >= 0, got {T_sub}, {T_final}")

    def init_fn(params):
        del params
        return StochasticCubicState(
            count=jnp.zeros([], jnp.int32),
            last_model=jnp.zeros([], jnp.float32),
            last_branch=jnp.zeros([], jnp.int32),
            counts=OracleCounts.zeros(),
        )

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, **extra):
        del extra
        require_update_args("stochastic_cubic", "mini-batch Hessian-vector products", params=params,
                            value_fn=value_fn)
        if key is None:
            key = jax.random.fold_in(jax.random.key(seed), state.count)
        B, x, unravel = flat_hvp(value_fn, params)  # mini-batch HVPs, v -> H v on flat vectors
        dtype = x.dtype
        g = ravel_pytree(updates)[0].astype(dtype)

        L = jnp.asarray(l, dtype)
        r = jnp.asarray(rho, dtype)
        e = jnp.asarray(eps, dtype)
        eta = 1.0 / (20.0 * L) if learning_rate is None else jnp.asarray(learning_rate, dtype)
        sig = jnp.asarray(c_prime, dtype) * jnp.sqrt(e * r) / L
        tiny = jnp.finfo(dtype).tiny
        gnorm = jnp.linalg.norm(g)

        def model_grad(D, BD):
            return g + BD + 0.5 * r * jnp.linalg.norm(D) * D

        def cauchy(_):
            Bg = B(g)
            safe = jnp.maximum(gnorm, tiny)
            beta = (g @ Bg) / safe**2
            q = beta / r
            root = jnp.sqrt(q * q + 2.0 * gnorm / r)
            # -q + root, written without cancellation when q > 0
            Rc = jnp.where(q > 0, (2.0 * gnorm / r) / jnp.maximum(q + root, tiny), root - q)
            c = -Rc / safe
            return c * g, c * Bg, jnp.ones([], jnp.int32)

        def subsolver(_):
            gt = g + sig * sample_sphere(key, g, flat=True)

            def body(_, carry):
                D, BD = carry
                D = D - eta * (gt + BD + 0.5 * r * jnp.linalg.norm(D) * D)
                return D, B(D)

            z = jnp.zeros_like(g)
            D, BD = jax.lax.fori_loop(0, T_sub, body, (z, z))
            return D, BD, jnp.asarray(T_sub, jnp.int32)

        use_cauchy = gnorm >= L * L / r
        D, BD, hv = jax.lax.cond(use_cauchy, cauchy, subsolver, None)
        Dn = jnp.linalg.norm(D)
        dm = g @ D + 0.5 * (D @ BD) + r / 6.0 * Dn**3

        def final(_):
            def cond(c):
                i, _, gm = c
                return (i < T_final) & (jnp.linalg.norm(gm) > 0.5 * e)

            def body(c):
                i, D, gm = c
                D = D - eta * gm
                return i + 1, D, model_grad(D, B(D))

            i, D, _ = jax.lax.while_loop(cond, body, (jnp.zeros([], jnp.int32), jnp.zeros_like(g), g))
            return D, i

        def keep(_):
            return D, jnp.zeros([], jnp.int32)

        small = ~(dm < -jnp.sqrt(e**3 / r) / 100.0)  # NaN model -> final solver too
        if T_final > 0:
            D_out, hv_final = jax.lax.cond(small, final, keep, None)
        else:
            D_out, hv_final = D, jnp.zeros([], jnp.int32)
        branch = jnp.where(small & (T_final > 0), BRANCH_FINAL,
                           jnp.where(use_cauchy, BRANCH_CAUCHY, BRANCH_SUBSOLVER)).astype(jnp.int32)
        new_state = StochasticCubicState(
            count=optax.safe_increment(state.count),
            last_model=dm.astype(jnp.float32),
            last_branch=branch,
            counts=state.counts.add(hvps=hv + hv_final),
        )
        return unravel(D_out), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def stochastic_cubic(
    learning_rate: float | None = 0.05,
    l: float = 1.0,
    rho: float = 1.0,
    eps: float = 1e-3,
    c_prime: float = 1.0,
    T_sub: int = 50,
    T_final: int = 50,
) -> optax.GradientTransformationExtraArgs:
    """Stochastic cubic regularization (Tripuraneni et al. 2018): mini-batch g and HVPs, GD sub-solver.

    Cauchy step when |g| >= l^2/rho, else T_sub perturbed gradient-descent iterations
    D <- D - eta (g + sigma zeta + B[D] + rho/2 |D| D) on the cubic model; the final solver
    (gradient descent on the model to |grad m| <= eps/2) when the model decrease is below
    sqrt(eps^3/rho)/100. Update x <- x + D. See ``scale_by_stochastic_cubic`` for the arguments;
    ``learning_rate=None`` is the paper's eta = 1/(20 l) (= 0.05 for the default l = 1).
    """
    return scale_by_stochastic_cubic(
        learning_rate=learning_rate, l=l, rho=rho, eps=eps, c_prime=c_prime, T_sub=T_sub, T_final=T_final
    )
