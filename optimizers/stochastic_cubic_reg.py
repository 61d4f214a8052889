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

Safeguard. Gradient descent on the model converges only for eta < 2/|B| (the paper's analysis
takes eta <= 1/(20 l) with l >= |B|, a bound the user supplies as ``l``). With a larger
curvature than l assumes (Rosenbrock's ~10^3 against the default l = 1) the iterates grow
geometrically and a single update goes to NaN. So the step D is checked on the model it was
meant to decrease: if m(D) is not finite, or positive beyond its own round-off (D increases the
model, which gradient descent from 0 with a stable step never does), D is replaced by the Cauchy
step of Algorithm 2 (the model's minimizer along -g, closed form, m < 0 whenever g != 0: one
more HVP). ``StochasticCubicState.num_fallbacks`` counts the updates where this fired;
``last_branch`` is then 3. Where it does not fire the update is the paper's.

Oracle accounting (``OracleCounts.hvps``): the HVPs of the branch the algorithm takes -- 1 for
the Cauchy step, T_sub for the gradient-descent sub-solver, plus the final-solver iterations
actually run, plus 1 when the safeguard takes the Cauchy step. The branches are ``batch_cond``s:
under the runner's ``vmap`` a branch runs when some run of the batch takes it, so where runs of a
batch differ the hardware does more work than counted; the count is the algorithm's oracle
complexity, independent of batching.

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

from optimizers.base import OracleCounts, batch_cond, refuse_complex, require_update_args, warn_no_key
from optimizers.linalg import flat_hvp, working_dtype
from optimizers.noise import sample_sphere

BRANCH_CAUCHY, BRANCH_SUBSOLVER, BRANCH_FINAL, BRANCH_FALLBACK = 0, 1, 2, 3


class StochasticCubicState(NamedTuple):
    """State of ``scale_by_stochastic_cubic``.

    Attributes:
      count: number of updates so far (int32); only used for the fallback key.
      last_model: Dm = m(D) of the sub-solver step of the last update.
      last_branch: 0 Cauchy step, 1 gradient-descent sub-solver, 2 final solver, 3 the
        safeguard's Cauchy step (the solver's D did not decrease the model).
      num_fallbacks: updates on which the safeguard replaced D by the Cauchy step.
      counts: oracle calls spent by this transformation (HVPs only).
    """

    count: jax.Array
    last_model: jax.Array
    last_branch: jax.Array
    num_fallbacks: jax.Array
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
    the sub-solver perturbation (without ``key`` it warns and folds the step count into
    ``seed``). ``value_fn`` must be deterministic and of the same batch as the gradient: the
    model m is built from both, and the safeguard compares the step with that model.

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
        refuse_complex("stochastic_cubic", params)
        return StochasticCubicState(
            count=jnp.zeros([], jnp.int32),
            last_model=jnp.zeros([], jnp.float32),
            last_branch=jnp.zeros([], jnp.int32),
            num_fallbacks=jnp.zeros([], jnp.int32),
            counts=OracleCounts.zeros(),
        )

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, axis_name=None, **extra):
        del extra
        require_update_args("stochastic_cubic", "mini-batch Hessian-vector products", params=params,
                            value_fn=value_fn)
        if key is None:
            warn_no_key("stochastic_cubic")
            key = jax.random.fold_in(jax.random.key(seed), state.count)
        hvp, x, unravel = flat_hvp(value_fn, params)  # mini-batch HVPs, v -> H v on flat vectors
        dtype = working_dtype(x.dtype)  # 16-bit params: the model and its solvers in float32

        def B(v):
            return hvp(v).astype(dtype)

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
        D, BD, hv = batch_cond(use_cauchy, cauchy, subsolver, None, axis_name=axis_name)
        Dn = jnp.linalg.norm(D)
        dm = g @ D + 0.5 * (D @ BD) + r / 6.0 * Dn**3

        def final(_):
            def cond(c):
                i, _, gm, _ = c
                return (i < T_final) & (jnp.linalg.norm(gm) > 0.5 * e)

            def body(c):
                i, D, gm, _ = c
                D = D - eta * gm
                BD = B(D)  # kept for the safeguard's model value
                return i + 1, D, model_grad(D, BD), BD

            z = jnp.zeros_like(g)
            i, D, _, BD = jax.lax.while_loop(cond, body, (jnp.zeros([], jnp.int32), z, g, z))
            return D, BD, i

        def keep(_):
            return D, BD, jnp.zeros([], jnp.int32)

        small = ~(dm < -jnp.sqrt(e**3 / r) / 100.0)  # NaN model -> final solver too
        if T_final > 0:
            D_out, BD_out, hv_final = batch_cond(small, final, keep, None, axis_name=axis_name)
        else:
            D_out, BD_out, hv_final = D, BD, jnp.zeros([], jnp.int32)
        # the safeguard: D must not increase the model (beyond the round-off of its terms)
        terms = jnp.stack([g @ D_out, 0.5 * (D_out @ BD_out), r / 6.0 * jnp.linalg.norm(D_out) ** 3])
        m_out = jnp.sum(terms)
        bad = ~jnp.isfinite(m_out) | (m_out > 8.0 * jnp.finfo(dtype).eps * jnp.sum(jnp.abs(terms)))
        D_out, hv_guard = batch_cond(bad, lambda d: cauchy(None)[::2], lambda d: (d, jnp.zeros([], jnp.int32)),
                                     D_out, axis_name=axis_name)
        branch = jnp.where(small & (T_final > 0), BRANCH_FINAL,
                           jnp.where(use_cauchy, BRANCH_CAUCHY, BRANCH_SUBSOLVER))
        branch = jnp.where(bad, BRANCH_FALLBACK, branch).astype(jnp.int32)
        new_state = StochasticCubicState(
            count=optax.safe_increment(state.count),
            last_model=dm.astype(jnp.float32),
            last_branch=branch,
            num_fallbacks=state.num_fallbacks + bad.astype(jnp.int32),
            counts=state.counts.add(hvps=hv + hv_final + hv_guard),
        )
        return unravel(D_out.astype(x.dtype)), new_state

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
    sqrt(eps^3/rho)/100. Update x <- x + D, or the Cauchy step where D would increase the model
    (a sub-solver step too long for the curvature: counted in ``num_fallbacks``). See
    ``scale_by_stochastic_cubic`` for the arguments;
    ``learning_rate=None`` is the paper's eta = 1/(20 l) (= 0.05 for the default l = 1).
    """
    return scale_by_stochastic_cubic(
        learning_rate=learning_rate, l=l, rho=rho, eps=eps, c_prime=c_prime, T_sub=T_sub, T_final=T_final
    )
