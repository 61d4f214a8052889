"""A plug-in: one optimizer and one problem, registered from outside the project (docs/ADDING.md).

    python -m bench run --import docs/examples/my_plugin.py \
        --problems 'double_well(dim=4)' --optimizers clipped_gd,sgd --steps 200 --log-every 10

Importing this module registers ``clipped_gd`` into ``optimizers`` and ``double_well`` into
``problems``; nothing in the project is edited. Every name used below is public API.

* ``clipped_gd``: gradient descent with the gradient's norm clipped (Zhang, He, Sra and Jadbabaie
  2020, "Why gradient clipping accelerates training: a theoretical justification for adaptivity",
  ICLR; their eq. (5)): x <- x - lr min(1, max_norm / |g|) g. Far from a minimum, where the
  gradient is large, the step has length lr max_norm; near it, where |g| <= max_norm, it is
  plain gradient descent, so it converges where gradient descent does.
* ``double_well``: f(x) = 1/4 sum_i (x_i^2 - 1)^2 in ``dim`` dimensions. Its gradient is
  x_i^3 - x_i and its Hessian diag(3 x_i^2 - 1), so its critical points are the 3^dim points with
  every x_i in {-1, 0, 1}: the 2^dim global minima (every x_i = +-1, f* = 0), the maximum at the
  origin (f = dim/4, Hessian -I) and, in between, saddles: with k coordinates at 0 the index is k
  and the value k/4. Runs start uniformly in [-init_radius, init_radius]^dim around the maximum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import optimizers
import problems
from optimizers.base import refuse_complex
from problems.base import Reference, Saddle, make, relative_target

# --- an optimizer: a scale_by_ transformation and a factory whose keyword defaults are its defaults ---


def scale_by_clipped_gradient(max_norm: float) -> optax.GradientTransformationExtraArgs:
    """g -> min(1, max_norm / |g|) g, |g| the Euclidean norm over the whole pytree."""

    def init_fn(params):
        refuse_complex("clipped_gd", params)  # the norm below is stated for real parameters
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args  # the runner also passes value, value_fn and key: unused here
        norm = optax.tree.norm(updates)
        # where |g| = 0 the factor is 1 (and the update 0): no division by zero
        factor = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
        return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def clipped_gd(learning_rate=1e-2, max_norm=1.0):
    """Clipped gradient descent (Zhang et al. 2020): x <- x - lr min(1, max_norm / |g|) g."""
    return optax.chain(scale_by_clipped_gradient(max_norm), optax.scale_by_learning_rate(learning_rate))


# the search space the grid rules (lr<K>, qmc<K>) and the shared tests sweep; a log range also
# means "must be > 0" to the input checks (bench.validate)
optimizers.register("clipped_gd", clipped_gd,
                    {"learning_rate": optimizers.Range(1e-4, 1.0), "max_norm": optimizers.Range(1e-2, 1e2)},
                    reference="Zhang, He, Sra and Jadbabaie 2020 (ICLR)")


# --- a problem: a factory whose keyword defaults are its parameters, returning problems.base.make(...) ---


def double_well(dim: int = 4, init_radius: float = 0.5):
    """Separable double well 1/4 sum_i (x_i^2 - 1)^2: minima at x_i = +-1 (f* = 0), saddles of index k at value k/4."""
    if dim < 1:
        raise ValueError(f"double_well: dim must be >= 1, got {dim}")
    if not init_radius > 0:
        raise ValueError(f"double_well: init_radius must be > 0, got {init_radius}")

    def full_loss(x):
        return 0.25 * jnp.sum((x * x - 1.0) ** 2)

    def init(key):
        return jax.random.uniform(key, (dim,), jnp.float32, -init_radius, init_radius)

    f_max = dim / 4.0  # f at the origin, where the runs start
    # index-1 saddle: x_1 = 0, the rest at 1 (gradient 0, Hessian diag(-1, 2, ..., 2), value 1/4)
    saddle = Saddle(point=jnp.ones(dim, jnp.float32).at[0].set(0.0), value=0.25, index=1, name="index-1 saddle")
    return make(dim=dim, init=init, full_loss=full_loss, saddles=(saddle,),
                reference=Reference(f_star=0.0, f_target=relative_target(0.0, f_max),
                                    source="closed form: minima at x_i = +-1", extra={"f_origin": f_max}))


problems.register("double_well", double_well)
