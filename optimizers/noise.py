"""The samplers the saddle escapers share: uniform on the unit sphere, uniform in a ball.

Both draw over the whole flattened parameter pytree (one direction in R^d, d the total number
of parameters, not one per leaf). Used by ``sphere_noise_sgd`` and ``perturbed_gd`` (pytrees)
and ``stochastic_cubic`` (one flat vector).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax


def tree_size(tree) -> int:
    """d: the total number of entries in the pytree (a Python int, fixed by the shapes)."""
    return sum(math.prod(jnp.shape(leaf)) for leaf in jax.tree.leaves(tree))


def sample_sphere(key: jax.Array, like, *, flat: bool = False):
    """xi ~ Unif(S^{d-1}) over the flattened pytree ``like``, as a pytree of its shapes and dtypes.

    xi = n / |n| with n ~ N(0, I_d): the Gaussian is rotation invariant, so its direction is
    uniform on the sphere (Muller 1959). |n| = 0 has probability zero; the floor only keeps a
    NaN out of the program.

    Two ways to draw the same distribution, kept apart because results are reproduced bit for
    bit: by default n comes from ``optax.tree.random_like`` (one key per leaf, split from
    ``key``) and is multiplied by 1/|n| (``sphere_noise_sgd``, ``perturbed_gd``); with
    ``flat=True`` ``like`` is one array, n is ``jax.random.normal(key, like.shape, like.dtype)``
    drawn from ``key`` itself and divided by |n| (``stochastic_cubic``).
    """
    if flat:
        z = jax.random.normal(key, jnp.shape(like), like.dtype)
        return z / jnp.maximum(jnp.linalg.norm(z), jnp.finfo(like.dtype).tiny)
    n = optax.tree.random_like(key, target_tree=like, sampler=jax.random.normal)
    norm = optax.tree.norm(n)
    inv = 1.0 / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)
    return optax.tree.scale(inv, n)


def sample_ball(key: jax.Array, like, radius):
    """xi ~ Unif(B_0(radius)) over the flattened pytree ``like``.

    xi = radius U^{1/d} s with s ~ Unif(S^{d-1}) and U ~ Unif(0, 1) independent: then
    P(|xi| <= t) = (t / radius)^d, the volume fraction of the ball of radius t.
    """
    k_dir, k_rad = jax.random.split(key)
    direction = sample_sphere(k_dir, like)
    d = tree_size(like)
    u = jax.random.uniform(k_rad, (), dtype=optax.tree.dtype(like, "lowest"))
    return optax.tree.scale(radius * u ** (1.0 / d), direction)
