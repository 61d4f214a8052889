"""SGD with isotropic noise from the unit sphere (Ge, Huang, Jin and Yuan 2015).

The sphere sampler (``optimizers.noise.sample_sphere``) draws one direction over the whole
flattened parameter pytree (in R^d, d the total number of parameters, not one per leaf).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from optimizers.base import refuse_complex, warn_no_key
from optimizers.noise import sample_sphere


class SphereNoiseState(NamedTuple):
    """State of ``scale_by_sphere_noise``: a fallback key, split only when ``update`` gets no ``key``."""

    rng_key: jax.Array


def scale_by_sphere_noise(*, noise_radius: float, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    """Adds isotropic sphere noise to the gradient: g <- g + r xi, xi ~ Unif(S^{d-1}).

    The noise is drawn from the per-step ``key`` extra argument; without one (with a warning), from a key kept in
    the state (seeded by ``seed``). E[xi] = 0 and E[xi xi^T] = I/d, so the noise adds r^2/d of
    variance per coordinate and has norm exactly r.

    Args:
      noise_radius: r, the norm of the added noise.
      seed: seed of the fallback key.
    """

    def init_fn(params):
        refuse_complex("sphere_noise_sgd", params)
        return SphereNoiseState(rng_key=jax.random.key(seed))

    def update_fn(updates, state, params=None, *, key=None, **extra_args):
        del params, extra_args
        if key is None:
            warn_no_key("sphere_noise_sgd")
            rng_key, key = jax.random.split(state.rng_key)
        else:
            rng_key = state.rng_key
        xi = sample_sphere(key, updates)
        updates = optax.tree.add_scale(tree_x=updates, scalar=noise_radius, tree_y=xi)
        return updates, SphereNoiseState(rng_key=rng_key)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sphere_noise_sgd(learning_rate: float = 0.249, noise_radius: float = 6.69e-4
                     ) -> optax.GradientTransformationExtraArgs:
    r"""Noisy SGD with isotropic unit-sphere noise (Ge, Huang, Jin and Yuan 2015).

    x <- x - lr (g + r xi),  xi ~ Unif(S^{d-1}) over the whole flattened parameter pytree,
    drawn from the per-step key. The noise has E[xi] = 0, E[xi xi^T] = I/d, so near a strict
    saddle it has a component along the escape direction with probability one, and SGD leaves
    strict saddles in polynomially many steps (the paper's main result). Near a minimum with Hessian
    eigenvalues lambda_i the iterates settle into a stationary cloud with mean excess loss
    lr r^2/(2d) sum_i 1/(2 - lr lambda_i) (~ lr r^2 / 4 for small lr; checked in the tests).

    Args:
      learning_rate: step size lr (default 0.249, the ``sgd`` default; chosen on the quick suite,
        docs/DEFAULTS.md).
      noise_radius: r, the norm of the noise added to each gradient (default 6.69e-4, chosen on the
        quick suite, docs/DEFAULTS.md; the paper's Algorithm 1 samples from the unit sphere, r = 1).

    Oracle cost: nothing beyond the runner's gradient.

    Reference: R. Ge, F. Huang, C. Jin, Y. Yuan, "Escaping From Saddle Points --- Online
    Stochastic Gradient for Tensor Decomposition", COLT 2015, Algorithm 1 (Noisy SGD).
    """
    return optax.chain(scale_by_sphere_noise(noise_radius=noise_radius),
                       optax.scale_by_learning_rate(learning_rate))
