"""optax's generic optimizer tests (``optax/_src/alias_test.py``), for every registered optimizer.

What optax checks for each of its aliases, checked here through ``optimizers.get`` for each
name of ``optimizers.names()`` (a newly registered optimizer gets them all):

* the update's dtype is the gradient's, and the state's shapes and dtypes do not change, for
  bfloat16, float16 and float64 params (float64 under ``jax.enable_x64``; float32 is
  ``test_shared.py``'s ``test_float32_pytree``, under the same ``lax.scan``), with
  ``update`` inside ``lax.cond`` inside ``lax.scan`` (optax's
  ``test_state_shape_dtype_shard_stability`` and ``test_preserve_dtype``): a scan's carry must
  keep its type, so any drift is a TypeError at trace time;
* finite updates on optax's parabola, at a point with zero gradient, on a linear function (zero
  curvature), and on size-1 params; no increase of the loss on the parabola, the linear function
  and the size-1 problem, and an exactly zero update at zero gradient for optimizers that draw
  no noise;
* ``optax.MultiSteps`` (optax's ``test_gradient_accumulation``: zero updates while accumulating,
  then the update of the mean gradient) and ``optax.chain``, with the extra arguments passed through;
* schedules for the learning rate (every optimizer that has one);
* complex params: refused at ``init`` with a clear error by the methods written for real
  parameters (optax's classics and L-BFGS take them, as in optax).

Convergence on a quadratic and on Rosenbrock (optax's ``test_optimization``, to its 3e-2
tolerance on the parameters) is in ``test_shared.py``, at each optimizer's best learning rate.

The cost is compilation, so each optimizer compiles one program per dtype (every check on the
three lanes of a ``lax.map``) and one float32 program for MultiSteps, chain, the schedule and
size-1 params.
"""

from __future__ import annotations

import functools
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers.base import _REGISTRY

NAMES = optimizers.names()
# methods that take complex params (optax's own classics and L-BFGS); the others refuse them
COMPLEX_OK = {"adagrad", "adam", "lbfgs", "momentum", "nesterov", "rmsprop", "sgd"}
# float32 under lax.scan (carry types checked, update dtypes recorded) is test_shared.py's
# test_float32_pytree, for every optimizer; a cond branch must match the carry's types as well
DTYPES = [jnp.bfloat16, jnp.float16, jnp.float64]
STEPS = 3
# Plain optax aliases (``Spec.optax_alias``) share one code path, whose dtype handling (``get``'s
# keep_dtypes around optax's update) is checked in every dtype on their representative; each alias
# runs in float16, the narrowest range, where its own arithmetic overflows or underflows first.
REPRESENTATIVE = "adam"


def _dtypes(name):
    return [jnp.float16] if optimizers.spec(name).optax_alias and name != REPRESENTATIVE else DTYPES

# optax's parabola sum((x - x*)^2) from (-1, 10, 1) to x* = (1, -1, 1), as a nested pytree
X0 = {"w": np.array([-1.0, 10.0]), "b": np.array([1.0])}
X_STAR = {"w": np.array([1.0, -1.0]), "b": np.array([1.0])}
SLOPE = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}


def _loss(params, coef):
    """coef[0] * parabola + coef[1] * a linear function (zero curvature).

    A zero coefficient drops its term exactly (``where``, not ``0 *``): Newton's steps of
    |g| / damping on the linear lane take float16 params past 256, whose square overflows.
    """
    leaves = jax.tree.leaves(params)
    sq = sum(jnp.sum((p - jnp.asarray(s, p.dtype)) ** 2) for p, s in zip(leaves, jax.tree.leaves(X_STAR)))
    lin = sum(jnp.sum(jnp.asarray(a, p.dtype) * p) for p, a in zip(leaves, jax.tree.leaves(SLOPE)))
    return jnp.where(coef[0] == 0, 0, coef[0] * sq) + jnp.where(coef[1] == 0, 0, coef[1] * lin)


# lanes: the parabola from X0; the parabola from its minimizer (zero gradient); the linear function
LANES = {"parabola": (X0, (1.0, 0.0)), "zero_grad": (X_STAR, (1.0, 0.0)), "linear": (X0, (0.0, 1.0))}


def _lanes(dtype):
    x = jax.tree.map(lambda *a: jnp.asarray(np.stack(a), dtype), *[v[0] for v in LANES.values()])
    coef = jnp.asarray([v[1] for v in LANES.values()], dtype)
    return x, coef


# These programs check types and finiteness, not speed: XLA's CPU backend compiles them about
# twice as fast without its LLVM optimizations, and faster again with its classic emitters (this
# file: 71 s of CPU against 122 s). Except for L-BFGS: under the classic emitters, which round every
# operation to float16, its float16 line search on the linear lane overflows at the first step; XLA's
# default (fusion) emitters, what a plain jax.jit gets, keep it finite, so L-BFGS keeps them.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
        "xla_cpu_use_fusion_emitters": False}
DEFAULT_EMITTERS = {"lbfgs"}


def _compile(fn, *args, name=None):
    options = {k: v for k, v in FAST.items() if not (name in DEFAULT_EMITTERS and k == "xla_cpu_use_fusion_emitters")}
    return jax.jit(fn).lower(*args).compile(compiler_options=options if jax.default_backend() == "cpu" else None)


@functools.cache
def _dtype_program(name, x64: bool):
    """jit(vmap(lanes)) of STEPS updates, each inside lax.cond, inside lax.scan; records update dtypes.

    One function for the 16-bit dtypes and another for float64: a function traced without x64
    keeps stale constant dtypes when traced again under ``enable_x64``.
    """
    del x64  # a cache key
    tx = optimizers.get(name)
    seen = []

    def one(x0, coef):
        f = functools.partial(_loss, coef=coef)

        def body(carry, t):
            x, state = carry
            v, g = jax.value_and_grad(f)(x)
            key = jax.random.fold_in(jax.random.key(0), t)
            # a predicate XLA cannot fold: both branches are compiled and must agree on types
            u, new_state = jax.lax.cond(t < STEPS, lambda: tx.update(g, state, x, value=v, value_fn=f, key=key),
                                        lambda: (optax.tree.zeros_like(x), state))
            seen.append((jax.tree.map(lambda a: a.dtype, g), jax.tree.map(lambda a: a.dtype, u)))
            return (optax.apply_updates(x, u), new_state), u

        (x, state), us = jax.lax.scan(body, (x0, tx.init(x0)), jnp.arange(STEPS))
        return x, us

    # lax.map, not vmap: the optimizers' own lax.cond stay branches (smaller programs to compile)
    return (lambda x0, coef: jax.lax.map(lambda a: one(*a), (x0, coef))), seen


def _loss64(params, lane):
    """The lane's loss in float64 (numpy), whatever the params' dtype."""
    c_sq, c_lin = LANES[lane][1]
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    return (c_sq * sum(np.sum((p[k] - X_STAR[k]) ** 2) for k in p)
            + c_lin * sum(np.sum(SLOPE[k] * p[k]) for k in p))


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_stable_and_updates_finite(name):
    """Updates in the gradients' dtype and a stable state, in three dtypes; finite, non-increasing steps.

    Plain optax aliases other than the representative: float16 only (see ``REPRESENTATIVE``).

    The linear lane is unbounded below, so only its first update is checked: L-BFGS's line
    search extrapolates along it, and its second step overflows float16 (it should).
    """
    noisy = optimizers.spec(name).uses_key
    for dtype in _dtypes(name):
        x64 = dtype == jnp.float64
        with jax.enable_x64(x64):
            run, seen = _dtype_program(name, x64)
            seen.clear()
            x0, coef = _lanes(dtype)
            x, us = _compile(run, x0, coef, name=name)(x0, coef)  # a dtype drifted in the state: lax.scan fails
            assert seen, "not traced"
            expected = dict.fromkeys(X0, jnp.dtype(dtype))
            for g_dtypes, u_dtypes in seen:
                assert u_dtypes == g_dtypes == expected, (dtype, u_dtypes)
            for leaf in jax.tree.leaves((x, us)):
                assert leaf.dtype == dtype

            def lane(tree, i, step=None):
                return jax.tree.map(lambda a: np.asarray(a[i] if step is None else a[i, step], np.float64), tree)

            for i, k in enumerate(LANES):
                steps = 1 if k == "linear" else STEPS
                u = [lane(us, i, t) for t in range(steps)]
                assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(u)), (dtype, k, u)
                if k == "zero_grad":  # at a minimizer: no step at all, unless drawing noise
                    assert noisy or all(np.all(leaf == 0.0) for leaf in jax.tree.leaves(u)), (dtype, u)
                    continue
                end = lane(x, i) if k == "parabola" else jax.tree.map(np.add, lane(x0, i), u[0])
                assert _loss64(end, k) <= _loss64(lane(x0, i), k), (dtype, k, end)


# ----------------------------------------------------------------------------- wrapped, scheduled, size 1

LR0 = 0.1


def _schedule():
    return optax.linear_schedule(LR0, LR0 / 2, transition_steps=2)


def _size1_loss(x):
    return jnp.sum((x - 2.0) ** 2)


def _wrapped_program(name):
    """Two updates of optimizers.get(name, learning_rate=<schedule>) on size-1 params, and two
    mini-steps of MultiSteps(chain(identity, the same), every 2), in one program."""
    hp = {"learning_rate": _schedule()} if "learning_rate" in optimizers.spec(name).defaults else {}
    tx = optimizers.get(name, **hp)
    multi = optax.MultiSteps(optax.chain(optax.identity(), optimizers.get(name, **hp)), every_k_schedule=2)
    f = _size1_loss

    def run(x0, keys):
        def plain(carry, key):
            x, state = carry
            v, g = jax.value_and_grad(f)(x)
            u, state = tx.update(g, state, x, value=v, value_fn=f, key=key)
            return (optax.apply_updates(x, u), state), u

        (_, state), us = jax.lax.scan(plain, (x0, tx.init(x0)), keys)
        v, g = jax.value_and_grad(f)(x0)

        def accumulate(m_state, _):  # the same gradient twice, at the same point, with the first key
            u, m_state = multi.update(g, m_state, x0, value=v, value_fn=f, key=keys[0])
            return m_state, u

        _, m_us = jax.lax.scan(accumulate, multi.init(x0), None, length=2)
        return us, state, m_us

    return run


@pytest.mark.parametrize("name", NAMES)
def test_multisteps_chain_schedule_and_size1_params(name):
    x0 = jnp.array([0.5], jnp.float32)
    keys = jax.random.split(jax.random.key(3), 2)
    us, state, m_us = _compile(_wrapped_program(name), x0, keys, name=name)(x0, keys)
    us, m_us = np.asarray(us), np.asarray(m_us)
    # size-1 params: finite, and no increase of the loss
    assert np.all(np.isfinite(us)), us
    assert _size1_loss(x0 + us[0]) <= _size1_loss(x0), (us, name)
    # MultiSteps: nothing while accumulating, then the update of the (mean) gradient, through chain
    np.testing.assert_array_equal(m_us[0], 0.0)
    np.testing.assert_allclose(m_us[1], us[0], rtol=1e-6, atol=1e-7)
    assert np.any(us[0] != 0.0), "no step on size-1 params, so the comparison above is empty"
    # the schedule: the hyperparameter in the state is its value at the last update's count
    if "learning_rate" in optimizers.spec(name).defaults:
        np.testing.assert_allclose(state.hyperparams["learning_rate"], _schedule()(1), rtol=1e-6)
        assert float(_schedule()(1)) == pytest.approx(0.75 * LR0)


# ----------------------------------------------------------------------------- complex params


@pytest.mark.parametrize("name", NAMES)
def test_complex_params_refused_at_init_or_supported(name):
    params = {"w": jnp.array([1.0 + 1.0j, -0.5j], jnp.complex64)}
    tx = optimizers.get(name)
    if name not in COMPLEX_OK:
        with pytest.raises(ValueError, match=rf"^{name} does not support complex parameters \(got complex64\)"):
            tx.init(params)
        return
    state = tx.init(params)
    if name == "lbfgs":  # its update (a line search) is optax's, tested complex there
        return
    # optax's convention: the conjugate of JAX's gradient, here of |w - (1+1j)|^2
    g = jax.tree.map(jnp.conj, jax.grad(lambda p: jnp.sum(jnp.abs(p["w"] - (1.0 + 1.0j)) ** 2))(params))
    u, _ = tx.update(g, state, params)
    assert u["w"].dtype == jnp.complex64 and np.all(np.isfinite(np.asarray(u["w"])))
    assert np.abs(np.asarray(params["w"] + u["w"]) - (1 + 1j)).max() < np.abs(np.asarray(params["w"]) - (1 + 1j)).max()


# ----------------------------------------------------------------------------- keys


@pytest.mark.parametrize("name", [n for n in NAMES if optimizers.spec(n).uses_key])
def test_keyed_optimizers_warn_without_a_key(name):
    """Without ``key`` a keyed optimizer warns (at trace time: eval_shape compiles nothing)."""
    tx = optimizers.get(name)
    x = jnp.array([0.5, -1.0])
    args = (jax.grad(_size1_loss)(x), tx.init(x), x)
    kwargs = {"value": _size1_loss(x), "value_fn": _size1_loss}
    with pytest.warns(UserWarning, match=rf"^{name}: update called without key"):
        jax.eval_shape(functools.partial(tx.update, **kwargs), *args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.eval_shape(functools.partial(tx.update, **kwargs, key=jax.random.key(0)), *args)


# ----------------------------------------------------------------------------- optax-style factories


@pytest.mark.parametrize("name", NAMES)
def test_module_attribute_is_the_factory(name):
    """``optimizers.<name>(...)`` is ``optimizers.get(name, ...)``, with the raw factory's signature."""
    alias = getattr(optimizers, name)
    raw = _REGISTRY[name][1]
    assert callable(alias) and not inspect.ismodule(alias)
    assert inspect.signature(alias) == inspect.signature(raw)
    assert alias.__doc__.startswith(raw.__doc__.strip().split("\n")[0])
    first = next(iter(optimizers.spec(name).traced))
    value = 0.5 * float(optimizers.spec(name).defaults[first])
    x = jnp.zeros(2)
    by_alias = {k: float(v) for k, v in alias(**{first: value}).init(x).hyperparams.items()}
    assert by_alias == {k: float(v) for k, v in optimizers.get(name, **{first: value}).init(x).hyperparams.items()}
    assert float(by_alias[first]) == pytest.approx(value)
    if first == list(inspect.signature(raw).parameters)[0]:  # positional, as optax.adam(1e-3)
        assert float(alias(value).init(x).hyperparams[first]) == pytest.approx(value)


def test_an_optimizer_registered_later_is_a_module_attribute_too():
    def my_method(learning_rate=1e-2):
        """My method: x <- x - lr g."""
        return optax.sgd(learning_rate)

    optimizers.register("_later", my_method, reference="test")
    try:
        hp = optimizers._later(0.25).init(jnp.zeros(2)).hyperparams
        assert float(hp["learning_rate"]) == 0.25 and hp["learning_rate"].dtype == jnp.float32
    finally:
        del _REGISTRY["_later"]
    with pytest.raises(AttributeError, match="no attribute '_later'"):
        optimizers._later  # noqa: B018
