"""The optimizer registry: names, specs, input checking and oracle counts."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers.base import _REGISTRY, OracleCounts, Range, Spec

NAMES = optimizers.names()
CLASSICS = ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"]
THIS_GROUP = ["noisy_sgd", "sphere_noise_sgd", "perturbed_gd", "lbfgs"]


def test_names_sorted_and_complete():
    assert NAMES == sorted(NAMES)
    assert set(CLASSICS + THIS_GROUP) <= set(NAMES)


def test_unknown_name_is_key_error_naming_the_choices():
    for fn in (optimizers.get, optimizers.spec):
        with pytest.raises(KeyError, match="valid optimizers") as err:
            fn("adamw_typo")
        msg = str(err.value)
        assert "adamw_typo" in msg
        assert all(n in msg for n in NAMES)


def test_unknown_hyperparameter_is_type_error():
    with pytest.raises(TypeError, match=r"unknown hyperparameter.*'lr'.*learning_rate=") as err:
        optimizers.get("sgd", lr=0.1)
    assert "learning_rate" in str(err.value)
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        optimizers.get("lbfgs", learning_rate=0.1)


@pytest.mark.parametrize("name,kwargs", [
    ("sgd", {"learning_rate": "fast"}),
    ("sgd", {"learning_rate": "0.1"}),  # a numeric string is still a string: no silent conversion
    ("adam", {"learning_rate": True}),  # a bool is not a learning rate
    ("adam", {"b1": [0.9]}),
    ("perturbed_gd", {"radius": None}),
    ("lbfgs", {"memory_size": 2.5}),
    ("lbfgs", {"max_linesearch_steps": "many"}),
])
def test_wrong_type_is_type_error(name, kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        optimizers.get(name, **kwargs)


def test_static_integer_accepts_integral_float():
    tx = optimizers.get("lbfgs", memory_size=4.0)
    state = tx.init(jnp.zeros(3))
    assert "memory_size" not in state.hyperparams
    # optax's L-BFGS state keeps memory_size rows of differences
    diffs = optax.tree.get(state, "diff_params_memory")
    assert diffs.shape == (4, 3)


@pytest.mark.parametrize("name", NAMES)
def test_spec_fields(name):
    sp = optimizers.spec(name)
    assert isinstance(sp, Spec) and sp.name == name
    assert sp.defaults, "no hyperparameters"
    assert sp.reference and sp.description
    assert set(sp.search_space) <= set(sp.defaults)
    assert set(sp.static) <= set(sp.defaults)
    assert set(sp.traced) == set(sp.defaults) - set(sp.static)
    assert sp.needs_value_fn or not sp.needs_hvp
    for k, r in sp.search_space.items():
        assert isinstance(r, Range) and r.low < r.high
        assert k not in sp.static, f"{k} is static but tuned: every value would recompile"
        assert r.low <= sp.defaults[k] <= r.high, f"default {k}={sp.defaults[k]} outside {r}"
    for k in sp.static:
        assert not isinstance(sp.defaults[k], float), f"static {k} has a float default"


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_the_factory_signature_defaults(name):
    """The factory's signature is the one place a default lives; the spec reads it, in order."""
    params = inspect.signature(_REGISTRY[name][1]).parameters
    defaults = optimizers.spec(name).defaults
    assert list(defaults.items()) == [(k, p.default) for k, p in params.items()]
    assert [type(v) for v in defaults.values()] == [type(p.default) for p in params.values()]


# What the benchmark has been running: stored results are keyed by hashes of these (values,
# order and int/float types), so a change here must be deliberate.
PINNED_DEFAULTS = {
    "adagrad": {"learning_rate": 0.249, "eps": 1e-07},
    "adam": {"learning_rate": 0.0249, "b1": 0.853, "b2": 0.999, "eps": 1e-08},
    "cubic_reg": {"learning_rate": 1.0, "sigma": 1.0, "sigma_min": 1e-08, "eta1": 0.1, "eta2": 0.9,
                  "gamma": 2.0, "krylov_dim": 10},
    "lbfgs": {"memory_size": 10, "max_linesearch_steps": 20, "slope_rtol": 0.0001, "curv_rtol": 0.188},
    "momentum": {"learning_rate": 0.249, "momentum": 0.582},
    "nc_descent": {"learning_rate": 0.001, "grad_threshold": 0.001, "curvature_threshold": 0.001,
                   "hessian_lipschitz": 1.0, "k": 10},
    "nesterov": {"learning_rate": 0.0249, "momentum": 0.86},
    "newton": {"learning_rate": 1.0, "damping": 0.001, "cg_iters": 20, "cg_tol": 1e-06},
    "noisy_sgd": {"learning_rate": 0.249, "eta": 9.78e-06, "gamma": 0.55},
    "perturbed_gd": {"learning_rate": 0.249, "radius": 9.78e-06, "g_thres": 0.000319, "t_thres": 35.7,
                     "f_thres": 0.0},
    "rmsprop": {"learning_rate": 0.00249, "decay": 0.693, "eps": 1e-08},
    "saddle_free_newton": {"learning_rate": 1.0, "damping": 0.001, "k": 10, "damping_search": 6},
    "sgd": {"learning_rate": 0.249},
    "sphere_noise_sgd": {"learning_rate": 0.249, "noise_radius": 0.000669},
    "stochastic_cubic": {"learning_rate": 0.05, "l": 1.0, "rho": 1.0, "eps": 0.001, "c_prime": 1.0,
                         "T_sub": 50, "T_final": 50},
}


@pytest.mark.parametrize("name", sorted(PINNED_DEFAULTS))
def test_defaults_are_pinned(name):
    defaults = optimizers.spec(name).defaults
    pinned = PINNED_DEFAULTS[name]
    assert list(defaults.items()) == list(pinned.items())
    assert [type(v) for v in defaults.values()] == [type(v) for v in pinned.values()]


@pytest.mark.parametrize("name", NAMES)
def test_get_puts_traced_hyperparameters_in_the_state_as_float32(name):
    sp = optimizers.spec(name)
    tx = optimizers.get(name)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    hp = tx.init(jnp.zeros(3)).hyperparams
    numeric = {k for k, v in sp.defaults.items()
               if k not in sp.static and isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert set(hp) == numeric
    for k, v in hp.items():
        assert v.dtype == jnp.float32 and v.shape == () and not v.weak_type, k
        assert float(v) == pytest.approx(float(sp.defaults[k]), rel=1e-6)


def test_oracle_counts_zero_for_classics():
    f = lambda p: jnp.sum((p["w"] - 1.0) ** 2) + jnp.sum(p["b"] ** 4)
    x0 = {"w": jnp.zeros((2, 2)), "b": jnp.ones(3)}
    for name in CLASSICS:
        tx = optimizers.get(name)
        state, x = tx.init(x0), x0
        for t in range(3):
            u, state = tx.update(jax.grad(f)(x), state, x, value=f(x), value_fn=f,
                                 key=jax.random.fold_in(jax.random.key(0), t))
            x = optax.apply_updates(x, u)
        counts = optimizers.oracle_counts(state)
        assert {k: int(v) for k, v in counts.items()} == {"values": 0, "grads": 0, "hvps": 0}, name


def test_oracle_counts_sums_every_counter_in_the_state():
    a = OracleCounts.zeros().add(values=2, grads=1)
    b = OracleCounts.zeros().add(hvps=5, grads=3)
    counts = optimizers.oracle_counts({"x": (a, jnp.ones(2)), "y": [b]})
    assert {k: int(v) for k, v in counts.items()} == {"values": 2, "grads": 4, "hvps": 5}
    assert all(v.dtype == np.int32 for v in counts.values())


def test_register_rejects_duplicates_and_bad_specs():
    with pytest.raises(ValueError, match="already registered"):
        optimizers.register("sgd", lambda learning_rate=0.1: optax.sgd(learning_rate))
    with pytest.raises(ValueError, match="not among its defaults"):
        optimizers.register("_bad", lambda lr=0.1: optax.sgd(lr), {"learning_rate": Range(1e-3, 1)})
    with pytest.raises(ValueError, match="not among its defaults"):
        optimizers.register("_bad", lambda lr=0.1: optax.sgd(lr), static=("k",))
    with pytest.raises(ValueError, match="bad range"):
        Range(1.0, 0.1)
    with pytest.raises(ValueError, match="bad range"):
        Range(0.0, 1.0)
    assert "_bad" not in optimizers.names()


def test_register_rejects_a_factory_parameter_without_a_default():
    def no_default(beta, learning_rate=0.1):
        return optax.sgd(learning_rate, momentum=beta)

    def var_kwargs(learning_rate=0.1, **kwargs):
        return optax.sgd(learning_rate)

    with pytest.raises(TypeError, match=r"'_bad'.*parameter 'beta' needs a default"):
        optimizers.register("_bad", no_default)
    with pytest.raises(TypeError, match=r"'_bad'.*\*\*kwargs"):
        optimizers.register("_bad", var_kwargs)
    assert "_bad" not in optimizers.names()


def test_register_reads_defaults_in_signature_order():
    def my_method(learning_rate=1e-2, beta=1.0, k=3):
        """My method: x <- x - lr beta g."""
        return optax.chain(optax.scale(beta), optax.scale_by_learning_rate(learning_rate))

    optimizers.register("_tmp", my_method, {"learning_rate": Range(1e-4, 1.0)}, static=("k",), reference="test")
    try:
        sp = optimizers.spec("_tmp")
        assert list(sp.defaults.items()) == [("learning_rate", 1e-2), ("beta", 1.0), ("k", 3)]
        assert sp.traced == ("learning_rate", "beta") and sp.description == "My method: x <- x - lr beta g."
        hp = optimizers.get("_tmp", beta=2.0).init(jnp.zeros(2)).hyperparams
        assert {k: float(v) for k, v in hp.items()} == {"learning_rate": pytest.approx(1e-2), "beta": 2.0}
    finally:
        del _REGISTRY["_tmp"]


# ----------------------------------------------------------------------------- set_hparams


def _same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x is y or (np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y))


@pytest.mark.parametrize("name", NAMES)
def test_set_hparams_is_replacing_the_injected_hyperparameters(name):
    """For a registry optimizer, set_hparams is state._replace(hyperparams={...}) (the runner's)."""
    state = optimizers.get(name).init({"a": jnp.zeros(2), "b": jnp.zeros((1, 2))})
    hp = {k: jnp.asarray(0.5 * float(v), jnp.float32) for k, v in state.hyperparams.items()}
    new = optimizers.set_hparams(state, **hp)
    _same_tree(new, state._replace(hyperparams={**state.hyperparams, **hp}))
    assert list(new.hyperparams) == list(state.hyperparams)
    assert all(new.hyperparams[k] is v for k, v in hp.items())
    assert optimizers.set_hparams(state) is state


def test_set_hparams_under_vmap_keeps_float32_scalars():
    tx = optimizers.get("momentum")
    x0 = jnp.ones(3)

    def one(lr, m):
        state = optimizers.set_hparams(tx.init(x0), learning_rate=lr, momentum=m)
        u, state = tx.update(x0, state, x0)
        return u, state.hyperparams

    lrs = jnp.array([0.1, 0.2], jnp.float32)
    u, hp = jax.vmap(one)(lrs, jnp.array([0.5, 0.9], jnp.float32))
    np.testing.assert_array_equal(u, -lrs[:, None] * jnp.ones((2, 3)))
    assert all(v.dtype == jnp.float32 and v.shape == (2,) for v in hp.values())


def test_set_hparams_finds_nested_injected_states():
    x0 = jnp.ones(2)
    g = jnp.array([1.0, -2.0])
    # inside optax.chain
    tx = optax.chain(optax.scale(2.0), optimizers.get("sgd"))
    state = optimizers.set_hparams(tx.init(x0), learning_rate=jnp.float32(0.25))
    assert float(state[1].hyperparams["learning_rate"]) == 0.25
    np.testing.assert_array_equal(tx.update(g, state, x0)[0], -0.5 * g)
    # inside optax.MultiSteps (gradient accumulation over 2 calls)
    tx = optax.MultiSteps(optimizers.get("sgd"), every_k_schedule=2)
    state = optimizers.set_hparams(tx.init(x0), learning_rate=jnp.float32(0.25))
    assert float(state.inner_opt_state.hyperparams["learning_rate"]) == 0.25
    u, state = tx.update(g, state, x0)
    np.testing.assert_array_equal(u, jnp.zeros(2))
    u, state = tx.update(g, state, x0)
    np.testing.assert_array_equal(u, -0.25 * g)
    # an injected state inside another's inner state: each name set where it lives
    outer = optax.inject_hyperparams(
        lambda step_size: optax.chain(optimizers.get("momentum"), optax.scale(step_size)),
        hyperparam_dtype=jnp.float32,
    )(step_size=2.0)
    state = optimizers.set_hparams(outer.init(x0), step_size=jnp.float32(3.0), momentum=jnp.float32(0.5))
    assert float(state.hyperparams["step_size"]) == 3.0
    assert float(state.inner_state[0].hyperparams["momentum"]) == 0.5
    assert float(state.inner_state[0].hyperparams["learning_rate"]) == pytest.approx(0.249)


def test_set_hparams_rejects_unknown_names_and_states_without_hyperparameters():
    state = optimizers.get("lbfgs").init(jnp.zeros(2))
    with pytest.raises(TypeError, match=r"unknown hyperparameter.*'lr'.*curv_rtol"):
        optimizers.set_hparams(state, lr=jnp.float32(0.1))
    with pytest.raises(TypeError, match=r"'memory_size'.*static"):
        optimizers.set_hparams(state, memory_size=4)
    with pytest.raises(ValueError, match="no injected hyperparameters"):
        optimizers.set_hparams(optax.sgd(0.1).init(jnp.zeros(2)), learning_rate=jnp.float32(0.1))
    both = optax.chain(optimizers.get("sgd"), optimizers.get("sgd")).init(jnp.zeros(2))
    with pytest.raises(ValueError, match=r"'learning_rate'.*several injected states"):
        optimizers.set_hparams(both, learning_rate=jnp.float32(0.1))


# ----------------------------------------------------------------------------- update arguments


@pytest.mark.parametrize("name", [n for n in NAMES if optimizers.spec(n).needs_value_fn])
def test_missing_value_fn_is_a_value_error_naming_the_optimizer(name):
    tx = optimizers.get(name)
    p = jnp.zeros(2)
    with pytest.raises(ValueError, match=rf"^{name} needs .*value_fn.*missing: value_fn"):
        tx.update(jnp.ones(2), tx.init(p), p, value=jnp.float32(0.0))
    with pytest.raises(ValueError, match=rf"^{name} needs params.*missing: params"):
        tx.update(jnp.ones(2), tx.init(p), None, value=jnp.float32(0.0), value_fn=jnp.sum)


def test_perturbed_gd_needs_params():
    tx = optimizers.get("perturbed_gd")
    with pytest.raises(ValueError, match=r"^perturbed_gd needs params in update \(it keeps the perturbed point"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), None)
