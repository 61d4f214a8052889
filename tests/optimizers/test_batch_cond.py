"""``optimizers.batch_cond``: each run gets its own branch's result, and a branch no run takes is not run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optimizers


def _branches(calls):
    """(true_fn, false_fn) of one operand; true_fn reports each time it runs (``calls``)."""

    def true_fn(x):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.sin(x) * 3.0, jnp.int32(7)

    def false_fn(x):
        return x - 1.0, jnp.int32(0)

    return true_fn, false_fn


def _run(preds, xs, axis_name):
    calls = []
    t, f = _branches(calls)

    def one(p, x):
        return optimizers.batch_cond(p, t, f, x, axis_name=axis_name)

    out = jax.jit(jax.vmap(one, axis_name="runs"))(preds, xs)
    jax.block_until_ready(out)
    return out, len(calls)


XS = jnp.linspace(-2.0, 2.0, 6, dtype=jnp.float32)


@pytest.mark.parametrize("preds", [[False] * 6, [True] * 6, [True, False, False, True, False, True]])
def test_each_run_gets_its_own_branch(preds):
    preds = jnp.asarray(preds)
    (y, k), _ = _run(preds, XS, "runs")
    want_y = np.where(np.asarray(preds), np.sin(np.asarray(XS)) * 3.0, np.asarray(XS) - 1.0)
    np.testing.assert_allclose(np.asarray(y), want_y, rtol=1e-6)  # float32 sin: a few ulps from numpy's
    np.testing.assert_array_equal(np.asarray(k), np.where(np.asarray(preds), 7, 0))


def test_a_branch_no_run_takes_is_not_run():
    # plain vmap of lax.cond (no axis name): the batched predicate makes a select, the true branch runs
    _, calls_select = _run(jnp.zeros(6, bool), XS, None)
    assert calls_select >= 1
    # with the batch's axis name: nobody takes it, it is not run
    _, calls = _run(jnp.zeros(6, bool), XS, "runs")
    assert calls == 0
    _, calls_mixed = _run(jnp.arange(6) == 2, XS, "runs")
    assert calls_mixed >= 1


def test_nested_axes_and_single_run():
    preds = jnp.asarray([[False, False, False], [False, True, False]])
    xs = XS.reshape(2, 3)
    calls = []
    t, f = _branches(calls)

    def one(p, x):
        return optimizers.batch_cond(p, t, f, x, axis_name=("hp", "seeds"))

    prog = jax.jit(jax.vmap(jax.vmap(one, axis_name="seeds"), axis_name="hp"))
    y, k = prog(preds, xs)
    np.testing.assert_array_equal(np.asarray(k), np.where(np.asarray(preds), 7, 0))
    np.testing.assert_allclose(np.asarray(y), np.where(np.asarray(preds), np.sin(np.asarray(xs)) * 3.0,
                                                       np.asarray(xs) - 1.0), rtol=1e-6)
    assert calls  # one run of the six took the true branch: it ran
    calls.clear()
    jax.block_until_ready(prog(jnp.zeros((2, 3), bool), xs))
    assert not calls  # none took it (the count over both axes is 0): it did not run
    # one run, no axes: lax.cond
    y1, k1 = optimizers.batch_cond(jnp.asarray(True), t, f, jnp.float32(0.5))
    assert int(k1) == 7 and float(y1) == pytest.approx(3.0 * np.sin(0.5), rel=1e-6)
