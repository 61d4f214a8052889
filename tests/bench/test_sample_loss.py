"""The finite-sum contract reaches the optimizers: problems' ``sample_loss`` and the runner's wiring.

Problems with a data set (the MLP, the deep linear network) expose ``sample_loss(params, idx)``, the
mean of the per-sample losses over ``idx``, with ``n_samples`` and ``batch_samples`` (the samples of
one ``loss`` call); on all indices it is the full loss (to float32 round-off: the same sum, over a
gathered copy of the data), on a mini-batch's indices the mini-batch loss. The runner's step
(``bench.program.make_step``) passes it to ``update`` as ``sample_loss=optimizers.SampleLoss(fn, n,
unit)``, and passes nothing extra for problems without a data set (their programs are unchanged).
Traced with ``jax.eval_shape`` where only the arguments matter: nothing is compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
import problems
from bench import program

CASES = [  # (problem, n, unit)
    ("relu_mlp(dataset='iris',width=4,depth=1,batch_size=16)", 150, 16),
    ("deep_linear(depth=2,n_samples=32,batch_size=0)", 32, 32),
    ("deep_linear(depth=2,n_samples=32,batch_size=8)", 32, 8),
]


@pytest.mark.parametrize("name,n,unit", CASES)
def test_problem_sample_loss_is_the_finite_sum(name, n, unit):
    p = problems.get(name)
    assert (p.n_samples, p.batch_samples) == (n, unit)
    x = p.init(jax.random.key(0))

    @jax.jit
    def losses(x):  # the full loss, the finite sum on all indices, and each f_i
        idx = jnp.arange(n)
        return p.full_loss(x), p.sample_loss(x, idx), jax.vmap(lambda i: p.sample_loss(x, i[None]))(idx)

    full, on_all, singles = losses(x)
    full = float(full)
    np.testing.assert_allclose(float(on_all), full, rtol=1e-6)
    # the mean of the n single-sample losses f_i is the full loss (float64 mean of float32 terms)
    singles = np.asarray(singles, np.float64)
    np.testing.assert_allclose(singles.mean(), full, rtol=1e-5)


def _spy():
    seen = {}

    def update(updates, state, params=None, **extra):
        seen.update(extra)
        return optax.tree.zeros_like(updates), state

    return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update), seen


@pytest.mark.parametrize("name,n,unit", CASES + [("strict_saddle", 0, 0)])
def test_runner_passes_sample_loss(name, n, unit):
    p = problems.get(name)
    tx, seen = _spy()
    step = program.make_step(p, tx)
    x = p.init(jax.random.key(0))
    carry = (x, tx.init(x), program.Tracker.start(jnp.float32))
    jax.eval_shape(lambda c: step(c, jnp.int32(0), jax.random.key(1)), carry)
    assert {"value", "value_fn", "key"} <= set(seen)
    if n == 0:
        assert "sample_loss" not in seen
        return
    sl = seen["sample_loss"]
    assert isinstance(sl, optimizers.SampleLoss) and (sl.n, sl.unit) == (n, unit) and sl.fn is p.sample_loss


def test_every_optimizer_takes_the_runners_extra_arguments():
    # the runner passes sample_loss to every optimizer on a problem with a data set; an optimizer that
    # forwards extra arguments to value_fn (optax's zoom line search in lbfgs did) must not choke on it
    def f(x):
        return jnp.sum((x - 1.0) ** 2)

    x = jnp.zeros(3)
    extra = dict(value=f(x), value_fn=f, key=jax.random.key(0),
                 sample_loss=optimizers.SampleLoss(lambda p, idx: f(p), 8, 2))
    # a finite first step is all this checks: XLA's fastest compile (LLVM level 0, classic emitters)
    fast = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False} \
        if jax.default_backend() == "cpu" else None
    for name in optimizers.names():
        tx = optimizers.get(name)
        u, _ = jax.jit(lambda g, s, x, tx=tx: tx.update(g, s, x, **extra), compiler_options=fast)(
            jax.grad(f)(x), tx.init(x), x)
        assert np.all(np.isfinite(np.asarray(u))), name
