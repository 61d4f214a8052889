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
    params = inspect.signature(_REGISTRY[name][1]).parameters
    assert set(sp.defaults) <= set(params), "defaults the factory does not take"
    required = {k for k, p in params.items() if p.default is inspect.Parameter.empty}
    assert required <= set(sp.defaults), "factory arguments without a default in the spec"


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
        optimizers.register("sgd", lambda learning_rate: optax.sgd(learning_rate), {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="not among its defaults"):
        optimizers.register("_bad", lambda lr: optax.sgd(lr), {"lr": 0.1}, {"learning_rate": Range(1e-3, 1)})
    with pytest.raises(ValueError, match="not among its defaults"):
        optimizers.register("_bad", lambda lr: optax.sgd(lr), {"lr": 0.1}, static=("k",))
    with pytest.raises(ValueError, match="bad range"):
        Range(1.0, 0.1)
    with pytest.raises(ValueError, match="bad range"):
        Range(0.0, 1.0)
    assert "_bad" not in optimizers.names()
