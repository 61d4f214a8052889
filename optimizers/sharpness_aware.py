"""SAM, sharpness-aware minimization (Foret, Kleiner, Mobahi and Neyshabur 2021), on optax.contrib.sam.

    eps(x) = rho g / |g|          (the first-order solution of max_{|e| <= rho} f(x + e))
    g_SAM  = grad f(x + eps(x))   (one extra gradient, on the same batch)
    x <- x - lr v,  v <- momentum v + g_SAM

The update is ``optax.contrib.sam`` in opaque mode (its adversarial step inside ``update``:
adversarial optimizer normalize-then-SGD(rho), outer optimizer SGD with momentum, sync period 2),
with ``grad_fn`` the gradient of ``value_fn``. Two changes around it: the normalization is safe
at g = 0 (eps = 0 there, where optax's ``normalize`` divides 0 by 0), and the extra gradient is
counted in ``state.counts.grads`` (one per update).

Reference: P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, "Sharpness-Aware Minimization for
Efficiently Improving Generalization", ICLR 2021, arXiv:2010.01412, Algorithm 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib

from optimizers.base import OracleCounts, refuse_complex, require_update_args


def safe_normalize() -> optax.GradientTransformation:
    """g / |g| over the whole pytree, and 0 where g = 0."""

    def update_fn(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        safe = jnp.where(norm > 0, norm, 1)
        return jax.tree.map(lambda g: jnp.where(norm > 0, g / safe.astype(g.dtype), 0).astype(g.dtype),
                            updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


class SamState(NamedTuple):
    """State of ``sam``: optax's ``SAMState`` and the extra gradients spent."""

    inner: Any
    counts: OracleCounts


def sam(learning_rate=1e-3, rho=0.002, momentum=0.9) -> optax.GradientTransformationExtraArgs:
    r"""SAM over SGD with momentum: x <- x - lr v, v <- momentum v + grad f(x + rho g / |g|).

    Near a minimum with largest curvature lambda SAM does not settle: its step keeps a part
    lr lambda rho that does not vanish with g (the ascent direction g / |g| has norm 1), so it
    hovers at a distance growing with lr lambda rho. The paper searches rho in {0.01, ..., 0.5}
    for networks; at the curvatures here (Rosenbrock's ~10^3) rho = 0.05 leaves a gap of 0.13 on
    Rosenbrock after 20000 steps at the best learning rate, 0.01 a gap of 1.5e-3 and 0.002 one of
    4e-6 (``tests/optimizers/test_shared.py``'s grid), hence the default; the paper's values are in
    the search range.

    Args:
      learning_rate: lr (default 1e-3, ``sgd``'s).
      rho: radius of the adversarial step (default 0.002, see above; the paper's 0.05 is searched).
      momentum: heavy-ball momentum of the outer SGD (default 0.9, the paper's base optimizer).

    Oracle cost per update: one extra gradient of ``value_fn`` at x + eps (no value).
    """
    inner = optax.contrib.sam(optax.sgd(learning_rate, momentum=momentum),
                              optax.chain(safe_normalize(), optax.sgd(rho)), sync_period=2, opaque_mode=True)

    def init_fn(params):
        refuse_complex("sam", params)
        return SamState(inner.init(params), OracleCounts.zeros())

    def update_fn(updates, state, params=None, *, value_fn=None, **extra_args):
        del extra_args
        require_update_args("sam", "the gradient at the adversarial point x + rho g / |g|",
                            params=params, value_fn=value_fn)
        grad_fn = lambda p, _: jax.grad(value_fn)(p)  # noqa: E731
        updates, new_inner = inner.update(updates, state.inner, params, grad_fn=grad_fn)
        return updates, SamState(new_inner, state.counts.add(grads=1))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
