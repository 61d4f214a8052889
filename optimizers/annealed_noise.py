"""Annealed Gaussian noisy SGD (Neelakantan et al. 2015), optax's ``noisy_sgd`` driven by the step key.

The maths is exactly that of ``optax.noisy_sgd`` (``optax.add_noise`` then
``optax.scale_by_learning_rate``):

    u_t = -lr (g_t + sigma_t n_t),   n_t ~ N(0, I),   sigma_t^2 = eta / (t + 1)^gamma,

with t = 0, 1, ... the number of previous updates. The only difference is where the noise comes
from. ``optax.noisy_sgd`` fixes its key at construction and splits it in the state, so every
run built with the same key draws the same noise whatever the seed of the run. Here the noise is
drawn from the per-step ``key`` extra argument the runner passes (one root key per seed,
``fold_in(step)``), so seeds really differ and a run is reproducible from its seed alone. When
``update`` is called without ``key`` (plain optax use), the transformation warns and falls back to
optax's behaviour: it splits the key held in its state, and with ``seed=s`` it then reproduces
``optax.noisy_sgd(lr, eta, gamma, key=s)`` bit for bit (``tests/optimizers/test_first_order.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizers.base import refuse_complex, warn_no_key


class AddAnnealedNoiseState(NamedTuple):
    """State of ``scale_by_noisy_sgd``.

    Attributes:
      count: number of updates so far (int32); sets the annealing.
      rng_key: fallback key, split only when ``update`` gets no ``key``.
    """

    count: jax.Array
    rng_key: jax.Array


def scale_by_noisy_sgd(*, eta: float, gamma: float, seed: int = 0) -> optax.GradientTransformationExtraArgs:
    r"""Adds annealed Gaussian noise to the gradient: g <- g + sigma_t n, n ~ N(0, I).

    sigma_t^2 = eta / (t + 1)^gamma, t the number of previous updates (optax's ``add_noise``).

    Args:
      eta: initial noise variance (Neelakantan et al. use 0.01, 0.3 or 1.0).
      gamma: annealing exponent of the variance (0.55 in the paper).
      seed: seed of the fallback key, used only when ``update`` is called without ``key``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``update`` accepts ``key=`` (a PRNG key) and
      ignores the other extra arguments.
    """

    def init_fn(params):
        refuse_complex("noisy_sgd", params)  # as optax.noisy_sgd: real Gaussian noise
        return AddAnnealedNoiseState(count=jnp.zeros([], jnp.int32), rng_key=jax.random.key(seed))

    def update_fn(updates, state, params=None, *, key=None, **extra_args):
        del params, extra_args
        count_inc = optax.safe_increment(state.count)
        std = jnp.sqrt(eta / count_inc**gamma)
        if key is None:
            warn_no_key("noisy_sgd")
            rng_key, sample_key = jax.random.split(state.rng_key)
        else:
            rng_key, sample_key = state.rng_key, key
        noise = optax.tree.random_like(sample_key, target_tree=updates, sampler=jax.random.normal)
        updates = optax.tree.add_scale(tree_x=updates, scalar=std, tree_y=noise)
        return updates, AddAnnealedNoiseState(count=count_inc, rng_key=rng_key)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def noisy_sgd(learning_rate: float = 0.249, eta: float = 9.78e-6, gamma: float = 0.55
              ) -> optax.GradientTransformationExtraArgs:
    r"""Noisy SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015).

    x <- x - lr (g + sigma_t n),  n ~ N(0, I) from the step key,  sigma_t^2 = eta / (t + 1)^gamma.

    Args:
      learning_rate: step size lr (default 0.249, the ``sgd`` default, so the two differ only by
        the noise; chosen on the quick suite, docs/DEFAULTS.md).
      eta: initial noise variance (default 9.78e-6, chosen on the quick suite, docs/DEFAULTS.md;
        optax's and the paper's smallest is 0.01).
      gamma: annealing exponent (default 0.55, the paper's).

    Oracle cost: nothing beyond the runner's gradient.

    Reference: A. Neelakantan, L. Vilnis, Q. V. Le, I. Sutskever, L. Kaiser, K. Kurach,
    J. Martens, "Adding Gradient Noise Improves Learning for Very Deep Networks", 2015,
    arXiv:1511.06807; ``optax.noisy_sgd``.
    """
    return optax.chain(scale_by_noisy_sgd(eta=eta, gamma=gamma), optax.scale_by_learning_rate(learning_rate))
