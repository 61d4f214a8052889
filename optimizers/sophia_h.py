"""Sophia-H (Liu, Li, Hall, Liang and Ma 2023): clipped diagonal-Newton steps from a Hutchinson estimate.

    m_t = b1 m_{t-1} + (1 - b1) g_t
    h_t = b2 h_{t-k} + (1 - b2) z * (H z)      every k-th step (k = ``update_interval``), z Rademacher
    x_t = x_{t-1} - lr clip(m_hat_t / max(gamma h_t, eps), 1)

The clip (elementwise to [-1, 1]) bounds every coordinate's step by lr wherever the curvature
estimate is small, negative or stale, which is what makes the diagonal-Newton step safe on a
non-convex loss: along negative curvature (h <= 0) the step is lr sign(m), sign descent, and a
saddle is left at speed lr instead of being attracted as Newton would be.

``scale_by_sophia`` is optax's ``optax.contrib.sophia`` transformation (its maths line for line:
optax bias-corrects m, m_hat = m / (1 - b1^t), where the paper does not, and uses Rademacher
probes where the paper's Sophia-H uses Gaussian ones; both are unbiased, Rademacher has the lower
variance), restated here for two reasons: the Hessian-diagonal estimate draws its probe from the
per-step ``key`` and counts its HVP (``optimizers.hutchinson.scale_by_hutchinson_diagonal``;
optax's estimator splits a key fixed at construction, so every run would see the same probes),
and h keeps its dtype in both branches of the every-k-steps ``batch_cond`` (optax's branch returns
float32 h for 16-bit params under float32 hyperparameters, and the cond fails on the mismatch).

Oracle cost: one HVP on every ``update_interval``-th update (the first included), counted when
the estimate's branch runs; nothing else beyond the runner's gradient.

Reference: H. Liu, Z. Li, D. Hall, P. Liang, T. Ma, "Sophia: A Scalable Stochastic Second-order
Optimizer for Language Model Pre-training", ICLR 2024, arXiv:2305.14342, Algorithm 1 (Sophia-H).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.base import batch_cond, refuse_complex
from optimizers.hutchinson import scale_by_hutchinson_diagonal


class SophiaState(NamedTuple):
    """State of ``scale_by_sophia``: the update count, m, h and the estimator's state (key, HVP counts)."""

    count: jax.Array
    mu: Any
    nu: Any
    hessian_fn_state: Any


def scale_by_sophia(*, b1, b2, eps, gamma, clip_threshold, update_interval: int
                    ) -> optax.GradientTransformationExtraArgs:
    """clip(m_hat / max(gamma h, eps), clip_threshold), with h refreshed every ``update_interval`` updates.

    ``update`` needs ``params`` and ``value_fn`` (on the refresh steps) and takes the step's ``key``.
    """
    hess = scale_by_hutchinson_diagonal("sophia")

    def init_fn(params):
        return SophiaState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params), optax.tree.zeros_like(params),
                           hess.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        count = optax.safe_increment(state.count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        step = jax.tree.map(lambda m, h: jnp.clip(m / jnp.maximum(gamma * h, eps), -clip_threshold, clip_threshold),
                            mu_hat, state.nu)

        def refresh(h_state, nu):
            diag, h_state = hess.update(updates, h_state, params, **extra_args)
            new = optax.tree.update_moment(diag, nu, b2, 1)
            return h_state, jax.tree.map(lambda a, b: a.astype(b.dtype), new, nu)

        # every run of a batch refreshes on the same steps: batch_cond runs the HVP only on those
        h_state, nu = batch_cond(state.count % update_interval == 0, refresh, lambda h, n: (h, n),
                                 state.hessian_fn_state, state.nu, axis_name=extra_args.get("axis_name"))
        mu = jax.tree.map(lambda a, b: a.astype(b.dtype), mu, state.mu)
        return step, SophiaState(count, mu, nu, h_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sophia(learning_rate=1e-3, b1=0.965, b2=0.99, gamma=0.01, eps=1e-8, weight_decay=0.0, update_interval=10
           ) -> optax.GradientTransformationExtraArgs:
    r"""Sophia-H: lr clip(m_hat / max(gamma h, eps), 1), h an EMA of Hutchinson estimates every k steps.

    Args:
      learning_rate: lr, the largest step per coordinate (default 1e-3).
      b1, b2: decays of the gradient and Hessian moments (optax's 0.965 and 0.99; the paper's
        0.96 and 0.99).
      gamma: the scale of the curvature (the paper's and optax's 0.01): the unclipped step is
        (lr / gamma) m / h, a diagonal-Newton step when lr = gamma.
      eps: floor of gamma h (optax's 1e-8).
      weight_decay: decoupled decay (default 0: the benchmark's objectives have no regularizer;
        ``optimizers.classics`` says why).
      update_interval: k, steps between Hessian estimates (static; the paper's 10).

    Oracle cost: one HVP every ``update_interval`` updates. Draws its probe from the step's ``key``.
    """
    tx = optax.chain(
        scale_by_sophia(b1=b1, b2=b2, eps=eps, gamma=gamma, clip_threshold=1.0, update_interval=int(update_interval)),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )

    def init_fn(params):
        refuse_complex("sophia", params)
        return tx.init(params)

    return optax.GradientTransformationExtraArgs(init_fn, tx.update)
