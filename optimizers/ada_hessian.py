"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer and Mahoney 2021): Adam with the Hessian diagonal.

    D_t = z * (H_t z),  z Rademacher from the step's key         (Hutchinson, one HVP)
    D_t^(s) = spatial average of |D_t| (convolution kernels)      (the paper's eq. 10)
    m_t = b1 m_{t-1} + (1 - b1) g_t,   v_t = b2 v_{t-1} + (1 - b2) D_t^(s) * D_t^(s)
    u_t = lr (m_t / (1 - b1^t)) / ((v_t / (1 - b2^t))^(k/2) + eps)

with k the Hessian power (1: the paper's default; 1/2 is Adam-like scaling of the curvature,
0 momentum SGD). The second moment of the curvature estimate plays the role of Adam's second
moment of the gradient: the step is a diagonal-Newton step averaged over time, scale-invariant
like Newton's, and its root-mean-square smoothing makes it robust to the estimate's noise.

Spatial averaging: the paper averages the estimate over the spatial positions of a convolution
kernel (its code: over the kernel's spatial axes, for 4-D kernels) to cut its variance. Here a
leaf with 3 or more axes is a kernel in flax's layout (spatial..., in, out) and |D| is averaged
over its leading ndim - 2 axes; leaves of at most 2 axes (vectors, dense matrices) are used
coordinate by coordinate, as in the paper's code. The paper's delayed Hessian update (every few
steps) is not used: one HVP per step, its default.

Oracle cost per step: one HVP (``state.counts.hvps``); no extra value or gradient.

Reference: Z. Yao, A. Gholami, S. Shen, M. Mustafa, K. Keutzer, M. W. Mahoney, "ADAHESSIAN: An
Adaptive Second Order Optimizer for Machine Learning", AAAI 2021, arXiv:2006.00719, Algorithm 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.base import OracleCounts, refuse_complex, require_update_args, warn_no_key
from optimizers.hutchinson import hutchinson_diagonal


class AdaHessianState(NamedTuple):
    """State of ``scale_by_adahessian``.

    Attributes:
      count: updates so far (int32), for the bias corrections.
      mu: first moment of the gradient.
      nu: second moment of the (spatially averaged) Hessian-diagonal estimate.
      rng_key: fallback key, split only when ``update`` gets no ``key``.
      counts: HVPs spent (one per update).
    """

    count: jax.Array
    mu: Any
    nu: Any
    rng_key: jax.Array
    counts: OracleCounts


def spatial_average(diag: Any) -> Any:
    """|D| per leaf, averaged over the leading ndim - 2 axes of leaves with 3 or more axes (kernels)."""

    def one(d):
        a = jnp.abs(d)
        if a.ndim <= 2:
            return a
        return jnp.broadcast_to(jnp.mean(a, axis=tuple(range(a.ndim - 2)), keepdims=True), a.shape)

    return jax.tree.map(one, diag)


def scale_by_adahessian(*, b1, b2, eps, hessian_power, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """AdaHessian's preconditioned step m_hat / (v_hat^(k/2) + eps) (no learning rate, no sign change).

    ``update`` needs ``params`` and ``value_fn`` (its Hessian-vector products) and takes the
    step's ``key`` for the Rademacher probe (warning and falling back to a key in the state
    without one).
    """

    def init_fn(params):
        refuse_complex("adahessian", params)
        return AdaHessianState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params),
                               optax.tree.zeros_like(params), jax.random.key(seed), OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, key=None, **extra_args):
        del extra_args
        require_update_args("adahessian", "Hessian-vector products for its Hessian-diagonal estimate",
                            params=params, value_fn=value_fn)
        rng_key = state.rng_key
        if key is None:
            warn_no_key("adahessian")
            rng_key, key = jax.random.split(rng_key)
        d = spatial_average(hutchinson_diagonal(value_fn, params, key))
        count = optax.safe_increment(state.count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(d, state.nu, b2, 2)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        step = jax.tree.map(lambda m, v: m / (v ** (hessian_power / 2) + eps), mu_hat, nu_hat)
        return step, AdaHessianState(count, mu, nu, rng_key, state.counts.add(hvps=1))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adahessian(learning_rate=0.15, b1=0.9, b2=0.999, eps=1e-4, hessian_power=1.0, weight_decay=0.0
               ) -> optax.GradientTransformationExtraArgs:
    r"""AdaHessian: Adam with the second moment of a Hutchinson Hessian-diagonal estimate (Yao et al. 2021).

    x <- x - lr (m_hat / (v_hat^(k/2) + eps) + lambda x), with v the EMA of the squared
    (spatially averaged) estimate |z * H z| (see the module doc).

    Args:
      learning_rate: lr (default 0.15, the paper's for image classification).
      b1, b2: moment decays (the paper's 0.9 and 0.999).
      eps: added to the denominator (the paper's 1e-4).
      hessian_power: k in [0, 1] (default 1, the paper's).
      weight_decay: decoupled decay lambda (default 0: the benchmark's objectives have no
        regularizer; ``optimizers.classics`` says why).

    Oracle cost per step: one HVP. Draws its probe from the step's ``key``.
    """
    return optax.chain(
        scale_by_adahessian(b1=b1, b2=b2, eps=eps, hessian_power=hessian_power),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )
