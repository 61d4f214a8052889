"""Checks every registered problem family passes, at its default parameters.

A newly registered family is picked up by ``problems.names()`` and gets all of these with nothing
else to write. Families whose defaults would make the checks slow get smaller parameters in
``SMALL``; ``EXTRA`` adds non-default variants whose code paths the defaults do not reach.

Compilation is the cost here, so each problem is compiled twice: one jitted program that
initializes over seeds (vmap) and evaluates everything the float32 checks need, and one float64
value-and-gradient for the finite-difference check.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import problems

# Smaller parameters for families whose defaults would be slow here.
SMALL: dict[str, dict] = {"spin_glass_generated": {"n": 12}}

# Variants that exercise code the defaults skip (a stochastic mini-batch loss).
EXTRA: list[tuple[str, dict]] = [("deep_linear", {"batch_size": 16})]

CASES = [(name, SMALL.get(name, {})) for name in problems.names()] + [
    case for case in EXTRA if case[0] in problems.names()
]

N_SEEDS = 3
N_UNBIASED = 512  # loss draws for the unbiasedness check of stochastic problems


def _case_id(case):
    name, kwargs = case
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items())


@pytest.fixture(scope="module", params=CASES, ids=[_case_id(c) for c in CASES])
def prob(request):
    name, kwargs = request.param
    return problems.get(name, **kwargs)


def _first(batched):
    return jax.tree.map(lambda a: a[0], batched)


@functools.cache
def _smoke(name):
    """Everything the float32 checks need, from ONE jit(vmap) program per problem."""
    p = problems.get(name)
    value_and_grad = jax.value_and_grad(p.full_loss)

    def run(keys, loss_keys, saddle_points):
        params = jax.vmap(p.init)(keys)
        x0 = _first(params)
        once = p.retract(x0)
        return {
            "params": params,
            "full_loss": jax.vmap(p.full_loss)(params),
            "loss": jax.vmap(p.loss, in_axes=(None, 0))(x0, loss_keys),
            "value_and_grad": value_and_grad(x0),
            "retract": (once, p.retract(once)),
            "saddles": [value_and_grad(s) for s in saddle_points],
        }

    keys = jax.random.split(jax.random.key(0), N_SEEDS)
    loss_keys = jax.random.split(jax.random.key(7), N_UNBIASED if p.stochastic else N_SEEDS)
    out = jax.jit(run)(keys, loss_keys, [s.point for s in p.saddles])
    return jax.tree.map(np.asarray, out)


def _finite(tree):
    return all(bool(np.all(np.isfinite(a))) for a in jax.tree.leaves(tree))


def test_jit_and_vmap_over_seeds(prob):
    out = _smoke(prob.name)
    leaves = jax.tree.leaves(out["params"])
    assert leaves and all(a.shape[0] == N_SEEDS and np.issubdtype(a.dtype, np.floating) for a in leaves)
    assert sum(a[0].size for a in leaves) == prob.dim
    assert any(not np.array_equal(a[0], a[1]) for a in leaves)  # seeds give different starts
    assert out["full_loss"].shape == (N_SEEDS,) and _finite(out["full_loss"])
    assert out["loss"].ndim == 1 and _finite(out["loss"])
    if not prob.stochastic:  # same value; vmapped over keys vs params, XLA may round differently
        np.testing.assert_allclose(out["loss"], out["full_loss"][0], rtol=1e-6, atol=1e-7)


def test_loss_and_gradient_finite_at_init(prob):
    value, grad = _smoke(prob.name)["value_and_grad"]
    assert value.shape == () and _finite(value)
    assert jax.tree.structure(grad) == jax.tree.structure(_first(_smoke(prob.name)["params"]))
    assert _finite(grad)


def test_gradient_matches_central_differences_in_float64(prob):
    # In float64 the central difference along a unit direction v has truncation error
    # h^2/6 |f'''(x)[v,v,v]| (~1e-8 for h = 1e-4 and O(1)-O(100) third derivatives) and rounding
    # error ~ eps64 |f| / h ~ 2e-12 |f|. Float32 constants inside a problem (data, couplings)
    # are exactly representable in float64 and add no error, so 1e-5 relative to
    # (1 + |grad.v| + |f|) is loose for any smooth problem computed in the dtype of its params,
    # and still far below the O(1) relative error of a wrong gradient.
    h = 1e-4
    x32 = _first(_smoke(prob.name)["params"])
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        flat_x, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), x32))
        value_and_grad = jax.jit(jax.value_and_grad(lambda z: prob.full_loss(unravel(z))))
        f0, g = value_and_grad(flat_x)
        assert f0.dtype == jnp.float64 and g.dtype == jnp.float64
        for _ in range(3):
            v = rng.standard_normal(flat_x.shape[0])
            v /= np.linalg.norm(v)
            f_plus = float(value_and_grad(flat_x + h * v)[0])
            f_minus = float(value_and_grad(flat_x - h * v)[0])
            fd = (f_plus - f_minus) / (2 * h)
            ad = float(g @ v)
            assert abs(fd - ad) <= 1e-5 * (1.0 + abs(ad) + abs(float(f0))), (fd, ad)


def test_reference_is_consistent(prob):
    ref = prob.reference
    assert isinstance(ref, problems.Reference)
    assert isinstance(ref.source, str) and ref.source
    assert np.isfinite(ref.f_target)
    assert all(isinstance(k, str) and np.isfinite(v) for k, v in ref.extra.items())
    if ref.f_star is not None:
        assert np.isfinite(ref.f_star)
        assert ref.f_star <= ref.f_target
        # float32 evaluation of the loss: allow rounding relative to the optimum's scale.
        assert np.all(_smoke(prob.name)["full_loss"] >= ref.f_star - 1e-4 * (1.0 + abs(ref.f_star)))


def test_name_is_canonical_and_round_trips(prob):
    fam = problems.family(prob.family)
    assert prob.name.startswith(prob.family + "(")
    assert problems.get(prob.name) is prob
    assert problems.get(prob.name).name == prob.name
    assert set(prob.params) == set(fam.defaults)
    # The same parameters given in another order name the same (cached) problem.
    assert problems.get(prob.family, **dict(reversed(list(prob.params.items())))) is prob


def test_retract_is_idempotent(prob):
    once, twice = _smoke(prob.name)["retract"]
    for a, b in zip(jax.tree.leaves(once), jax.tree.leaves(twice), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_known_saddles_are_critical_with_stated_value(prob):
    for saddle, (value, grad) in zip(prob.saddles, _smoke(prob.name)["saddles"], strict=True):
        scale = 1.0 + abs(saddle.value)
        assert abs(float(value) - saddle.value) <= 1e-5 * scale, (saddle.name, float(value), saddle.value)
        gnorm = float(np.sqrt(sum(np.sum(g * g) for g in jax.tree.leaves(grad))))
        assert gnorm <= 1e-4 * scale, (saddle.name, gnorm)


def test_stochastic_loss_is_unbiased(prob):
    if not prob.stochastic:
        pytest.skip("deterministic problem: loss is full_loss")
    out = _smoke(prob.name)
    full = float(out["value_and_grad"][0])
    samples = out["loss"].astype(np.float64)
    assert samples.shape == (N_UNBIASED,)
    se = samples.std(ddof=1) / np.sqrt(N_UNBIASED)
    # The mean of m iid unbiased draws is within 5 standard errors with probability > 1 - 1e-6.
    assert abs(samples.mean() - full) <= 5 * se + 1e-6 * (1.0 + abs(full)), (samples.mean(), full, se)


# --- registry errors: bad input fails before anything runs, with a message that says why ---


def test_unknown_family_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown problem 'no_such_problem'"):
        problems.get("no_such_problem")


def test_unknown_parameter_is_a_clear_error():
    with pytest.raises(TypeError, match="unknown parameter"):
        problems.get("strict_saddle", no_such_parameter=1)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("strict_saddle", {"init_radius": "big"}, "must be a number"),
        ("saddle_nd", {"dim": 2.5}, "must be an integer"),
        ("saddle_nd", {"dim": True}, "must be an integer"),
        ("deep_linear", {"widths": 8}, "must be a tuple"),
        ("deep_linear", {"init": 3}, "must be a string"),
    ],
)
def test_wrong_type_is_a_clear_error(name, kwargs, match):
    with pytest.raises(TypeError, match=match):
        problems.get(name, **kwargs)


def test_unparsable_name_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot parse"):
        problems.get("strict_saddle(init_radius=")


def test_parameters_in_name_and_keywords_combine():
    p = problems.get("saddle_nd(dim=3)", index=2)
    assert p.params["dim"] == 3 and p.params["index"] == 2
    assert p is problems.get("saddle_nd", index=2, dim=3)
