"""Sub-sampled cubic regularization and sub-sampled Newton on a small finite sum.

The finite sum: a two-layer linear network f_i(W1, W2) = 1/2 |W2 W1 a_i - y_i|^2 on n = 40
samples (a_i in R^3, hidden width 2, y_i = T a_i with a rank-2 teacher T), non-convex with a
saddle at 0. ``sample_loss(params, idx)`` is the mean over idx, as the problems provide it.

* With the full sample sub-sampled cubic regularization is ARC: without sampling, bit for bit
  ``cubic_reg`` where the step's ``value_fn`` is the full objective (the same code runs on the same
  numbers: ``arc.arc_trial_step`` with the runner's value and gradient; tested without a
  ``sample_loss``, and a ``sample_loss`` whose unit is n takes the same path); with sampling on
  and both fractions 1 (every sample the full data set, drawn through the ``lax.switch`` over the
  sample ladder) and ``value_fn`` a mini-batch (unit 8 < n),
  to float32 round-off: the full objective is then ``fn(params, arange(n))``, a gather, and the
  HVPs run inside a switch branch, both compiled apart from the full loss (a few ulp per step;
  rtol 1e-5 over 8 steps, with identical accept/reject decisions, whose ratios are far from the
  thresholds).
* The sample sizes follow the authors' adaptive rule (recomputed here in float64 from the recorded
  step lengths): floor(fraction n) at the first step, drawn at the ladder size above it;
  min(n, floor(1.5 m)) after an unsuccessful step; min(n, floor(max(fraction n |s_0|^2/|s|^2,
  fraction n))) after a successful one.
* The recorded oracle counts are the samples touched by each kind of call, in whole units of a
  ``value_fn`` call (floor(samples / unit)), counted by wrapping ``fn`` and running eagerly.
* Sub-sampled Newton: its CG direction solves (H_S + damping I) p = g for the Hessian of the
  sample it drew (numpy reference from the same indices), its HVPs are counted as |S| / unit
  each, and with the full sample and damping 0 on a strictly convex quadratic finite sum it is
  Newton's method (one step to the minimizer).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers import subsample
from optimizers.subsampled_cubic import next_sample_size

N, D, H = 40, 3, 2


def _data():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((N, D))
    u, _ = np.linalg.qr(rng.standard_normal((D, 2)))
    teacher = (u * np.array([2.0, 1.0])) @ u.T
    return a.astype(np.float32), (a @ teacher.T).astype(np.float32)


A, Y = (jnp.asarray(t) for t in _data())


def sample_fn(params, idx):
    w1, w2 = params
    r = A[idx] @ w1.T @ w2.T - Y[idx]
    return 0.5 * jnp.sum(r * r) / idx.shape[0]


def full_loss(params):
    w1, w2 = params
    r = A @ w1.T @ w2.T - Y
    return 0.5 * jnp.sum(r * r) / N


def minibatch(params):  # the "runner's" value_fn of a mini-batch problem: the first 8 samples
    return sample_fn(params, jnp.arange(8))


X0 = (0.3 * jnp.asarray(np.random.default_rng(1).standard_normal((H, D)), jnp.float32),
      0.3 * jnp.asarray(np.random.default_rng(2).standard_normal((D, H)), jnp.float32))


def _run(tx, value_fn, steps, sample_loss=None):
    """(params per step, states per step) of ``steps`` updates, jitted as one scan."""

    def body(carry, t):
        x, state = carry
        v, g = jax.value_and_grad(value_fn)(x)
        extra = {} if sample_loss is None else {"sample_loss": sample_loss}
        u, state = tx.update(g, state, x, value=v, value_fn=value_fn, key=jax.random.fold_in(jax.random.key(5), t),
                             **extra)
        x = optax.apply_updates(x, u)
        return (x, state), (x, state)

    run = jax.jit(lambda x0: jax.lax.scan(body, (x0, tx.init(x0)), jnp.arange(steps))[1])
    return run.lower(X0).compile(compiler_options=FAST)(X0)


# XLA's CPU backend compiles these small programs about twice as fast without its LLVM optimizations;
# the bitwise comparisons compare programs compiled alike
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


FULL = {"sample_hessian": False, "sample_gradient": False, "sigma": 1e-2}
FRACTIONS_1 = {"hessian_fraction": 1.0, "grad_fraction": 1.0, "sample_gradient": True, "sigma": 1e-2}


@functools.cache
def _cubic_reg():
    """ARC (cubic_reg, sigma_0 = 1e-2) on the full objective: the reference of the equivalence tests."""
    return _run(optimizers.get("cubic_reg", sigma=1e-2), full_loss, 8)


def test_full_sample_is_cubic_reg_bitwise():
    """No sample_loss (every problem without a data set): ARC's bits. (A sample_loss whose unit is n,
    a deterministic finite sum, runs the same code: ``subsample.full_objective`` returns value_fn.)"""
    xs, states = _run(optimizers.get("subsampled_cubic", **FULL), full_loss, 8)
    xr, ref = _cubic_reg()
    for a, b in zip(jax.tree.leaves(xs), jax.tree.leaves(xr), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    accepted = np.asarray(states.inner_state.last_accepted)
    np.testing.assert_array_equal(accepted, np.asarray(ref.inner_state.last_accepted))
    assert accepted.any() and not accepted.all()  # both branches of the ratio test ran
    np.testing.assert_array_equal(np.asarray(states.inner_state.last_hessian_samples), 1)  # value_fn: one sample


def test_full_sample_with_minibatch_value_fn_is_cubic_reg_to_round_off():
    sl = optimizers.SampleLoss(sample_fn, N, 8)
    xs, states = _run(optimizers.get("subsampled_cubic", **FRACTIONS_1), minibatch, 8, sl)
    np.testing.assert_array_equal(np.asarray(states.inner_state.last_hessian_samples), N)
    xr, ref = _cubic_reg()
    np.testing.assert_array_equal(np.asarray(states.inner_state.last_accepted),
                                  np.asarray(ref.inner_state.last_accepted))
    for a, b in zip(jax.tree.leaves(xs), jax.tree.leaves(xr), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _rule(m, accepted, s0, s, frac, power, growth=1.5):
    base = frac * N
    if not accepted:
        return min(N, int(np.floor(m * growth)))
    return min(N, int(np.floor(max(base * (s0 / s) ** power, base)))) if s > 0 else N


def test_next_sample_size_is_the_authors_rule():
    """The rule on numbers where each branch decides: growth, the |s_0|^2/|s|^2 and |s_0|^4/|s|^4 laws, the caps."""
    cases = [  # (size, accepted, s0, s, power)
        (5, False, 1.0, 1.0, 2), (30, False, 1.0, 1.0, 2), (7, False, 2.0, 0.1, 4),
        (40, True, 1.0, 2.0, 2), (40, True, 1.0, 0.5, 2), (10, True, 1.0, 0.9, 4), (10, True, 3.0, 0.5, 2),
        (10, True, 1.0, 0.0, 2),
    ]
    for size, acc, s0, s, power in cases:
        got = next_sample_size(jnp.int32(size), N, 0.1, 1.5, jnp.asarray(acc), jnp.float32(s0),
                                               jnp.float32(s), power)
        assert int(got) == _rule(size, acc, s0, s, 0.1, power), (size, acc, s0, s, power, int(got))
    # the values themselves, by hand: 5 -> floor(7.5); 30 -> min(40, 45); 4 (the floor) when |s| > |s_0|;
    # floor(4 * 4) = 16 when |s| = |s_0| / 2; floor(4 / 0.9^4) = 6; capped at n; n for a zero step
    want = [7, 40, 10, 4, 16, 6, 40, 40]
    assert [_rule(*c[:4], 0.1, c[4]) for c in cases] == want


def test_sample_sizes_follow_the_adaptive_rule():
    """In a run: each step draws the ladder size above what the rule asked for after the step before."""
    frac = 0.1  # floor(0.1 * 40) = 4: drawn at 5 of the ladder 40, 20, 10, 5, 3, 2, 1
    tx = optimizers.get("subsampled_cubic", sigma=1e-2, hessian_fraction=frac, grad_fraction=0.25,
                        sample_gradient=True)
    sizes_h = sizes_g = subsample.ladder(N, 6)
    assert sizes_h == (40, 20, 10, 5, 3, 2, 1)
    _, states = _run(tx, minibatch, 12, optimizers.SampleLoss(sample_fn, N, 8))
    st = jax.tree.map(np.asarray, states.inner_state)
    acc, norms = st.last_accepted, st.last_step_norm.astype(np.float64)
    s0 = norms[0]

    def drawn(req, ladder):
        return min(m for m in ladder if m >= req) if req <= ladder[0] else ladder[0]

    want_h, want_g = 4, 10
    for t in range(len(acc)):
        assert st.last_hessian_samples[t] == drawn(want_h, sizes_h), (t, st.last_hessian_samples)
        assert st.last_grad_samples[t] == drawn(want_g, sizes_g), (t, st.last_grad_samples)
        want_h = _rule(st.last_hessian_samples[t], acc[t], s0, norms[t], frac, 2)
        want_g = _rule(st.last_grad_samples[t], acc[t], s0, norms[t], 0.25, 4)
        assert st.hessian_samples[t] == want_h and st.grad_samples[t] == want_g
        if not acc[t] and st.last_hessian_samples[t] < N:
            assert want_h > st.last_hessian_samples[t]  # grows after an unsuccessful step
    assert (~acc).sum() >= 2 and acc.sum() >= 1, acc  # both branches of the rule ran
    assert st.last_hessian_samples[0] == 5 and st.last_hessian_samples.max() == N  # grew from 5 to all 40


class Counting:
    """fn wrapped to count the samples each oracle kind touches (values, gradients, HVPs)."""

    def __init__(self):
        self.samples = np.zeros(3, np.int64)

    def fn(self, params, idx):
        depth, x = 0, jax.tree.leaves(params)[0]
        while isinstance(x, jax.core.Tracer):
            x, depth = x.primal, depth + 1
        self.samples[depth] += idx.shape[0]
        return sample_fn(params, idx)


def _eager_counts(name, hparams, steps=2, unit=8):
    c = Counting()
    tx = optimizers.get(name, **hparams)
    sl = optimizers.SampleLoss(c.fn, N, unit)
    runner_calls = np.zeros(3, np.int64)
    with jax.disable_jit():
        x, state = X0, tx.init(X0)
        for t in range(steps):
            v, g = jax.value_and_grad(minibatch)(x)
            u, state = tx.update(g, state, x, value=v, value_fn=functools.partial(_count_value, runner_calls),
                                 key=jax.random.fold_in(jax.random.key(0), t), sample_loss=sl)
            x = optax.apply_updates(x, u)
    return c.samples, runner_calls, optimizers.oracle_counts(state), state


def _count_value(calls, params):
    depth, x = 0, jax.tree.leaves(params)[0]
    while isinstance(x, jax.core.Tracer):
        x, depth = x.primal, depth + 1
    calls[depth] += 1
    return minibatch(params)


def test_subsampled_cubic_counts_samples_in_units():
    # krylov_dim 3: fewer eagerly run Lanczos steps, the same accounting
    samples, runner, counts, _ = _eager_counts("subsampled_cubic", {"hessian_fraction": 0.1, "grad_fraction": 0.25,
                                                                    "sample_gradient": True, "krylov_dim": 3})
    assert runner.sum() == 0  # a mini-batch value_fn is not the full objective: never called
    assert samples[2] > 0 and samples[1] > 0 and samples[0] >= 2 * N  # HVPs, gradients, f(x + s) each step
    got = np.array([counts["values"], counts["grads"], counts["hvps"]])
    np.testing.assert_array_equal(got, samples // 8)


def test_subsampled_newton_direction_and_counts():
    frac = 0.25  # |S| = 10 of 40
    samples, runner, counts, state = _eager_counts("subsampled_newton", {"hessian_fraction": frac, "damping": 5.0},
                                                   steps=2)
    inner = state.inner_state
    assert samples[0] == samples[1] == 0  # the sample is used for HVPs only
    np.testing.assert_array_equal(counts["hvps"], samples[2] // 8)
    np.testing.assert_array_equal(counts["values"], runner[0])  # one per line-search trial of value_fn
    assert counts["grads"] == 0 and int(inner.num_steps) == 2

    # one step against numpy: (H_S + 5 I) p = g, H_S the Hessian of the drawn sample (5 > -lambda_min(H_S))
    tx = optimizers.get("subsampled_newton", hessian_fraction=frac, damping=5.0, learning_rate=1.0, cg_iters=12,
                        cg_tol=1e-7, c1=-1e30, ls_steps=1)  # any finite trial
    key = jax.random.key(11)
    idx = np.asarray(jax.random.permutation(key, N))[:10]
    v, g = jax.value_and_grad(minibatch)(X0)
    u, _ = tx.update(g, tx.init(X0), X0, value=v, value_fn=minibatch, key=key,
                     sample_loss=optimizers.SampleLoss(sample_fn, N, 8))
    flat, unravel = jax.flatten_util.ravel_pytree(X0)
    hess = np.asarray(jax.hessian(lambda z: sample_fn(unravel(z), jnp.asarray(idx)))(flat), np.float64)
    p = np.linalg.solve(hess + 5.0 * np.eye(flat.size), np.asarray(jax.flatten_util.ravel_pytree(g)[0], np.float64))
    assert np.asarray(jax.flatten_util.ravel_pytree(g)[0]) @ p > 0  # a descent direction: no fallback
    step = np.asarray(jax.flatten_util.ravel_pytree(u)[0], np.float64)
    np.testing.assert_allclose(step, -p, rtol=1e-3, atol=1e-5 * np.abs(p).max())


def test_subsampled_newton_full_sample_is_newton_on_a_convex_quadratic():
    """f_i(x) = 1/2 (a_i.x - y_i)^2 summed over all samples, damping 0: one step lands on the minimizer."""
    a, y = np.asarray(A, np.float64), np.asarray(Y[:, 0], np.float64)

    def fn(x, idx):
        return 0.5 * jnp.mean((A[idx] @ x - Y[idx, 0]) ** 2)

    f = functools.partial(fn, idx=jnp.arange(N))
    x0 = jnp.zeros(D, jnp.float32)
    tx = optimizers.get("subsampled_newton", hessian_fraction=1.0, damping=0.0)
    v, g = jax.value_and_grad(f)(x0)
    u, state = tx.update(g, tx.init(x0), x0, value=v, value_fn=f, key=jax.random.key(0),
                         sample_loss=optimizers.SampleLoss(fn, N, N))
    x_star = np.linalg.lstsq(a, y, rcond=None)[0]
    np.testing.assert_allclose(np.asarray(x0 + u, np.float64), x_star, rtol=1e-4, atol=1e-5)
    assert float(state.inner_state.last_alpha) == 1.0
    assert int(optimizers.oracle_counts(state)["hvps"]) == D  # CG on a 3-D system: 3 HVPs of the full sum


def test_bad_sample_loss_is_a_clear_error():
    tx = optimizers.get("subsampled_cubic")
    v, g = jax.value_and_grad(full_loss)(X0)
    with pytest.raises(TypeError, match="sample_loss must be an optimizers.SampleLoss"):
        tx.update(g, tx.init(X0), X0, value=v, value_fn=full_loss, key=jax.random.key(0), sample_loss=sample_fn)
    with pytest.raises(ValueError, match="1 <= unit <= n"):
        tx.update(g, tx.init(X0), X0, value=v, value_fn=full_loss, key=jax.random.key(0),
                  sample_loss=optimizers.SampleLoss(sample_fn, N, 0))
