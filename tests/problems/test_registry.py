"""The registry's cheap look-ups (``canonical_name``, ``family``) and the factories' shared helpers.

``canonical_name`` must name exactly what ``get`` builds, raise what ``get`` raises, and build
nothing; ``relative_target`` and ``uniform_box_init`` must give the bits the factories always had
(stored results compare ``f_target`` bitwise), pinned here for the closed-form families.
"""

import dataclasses
import functools
import inspect
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from problems import base


def _suite_entries() -> list[tuple[str, str]]:
    """(suite, problem spec) for every entry of bench's suites: the names the CLI expands."""
    from bench.suites import SUITES  # only here: the rest of tests/problems needs no bench

    return [(s.name, e.problem) for s in SUITES.values() for e in s.entries]


def _get_name_with_stub_factory(name: str, monkeypatch) -> str:
    """``get(name).name`` through the real parse / check / ``_build`` path, the factory stubbed out.

    For the accelerator-sized instances, whose factories take seconds and hundreds of MB; a private
    ``_build`` cache keeps the stub out of the shared one.
    """
    fam = problems.family(problems.parse_name(name)[0])

    def stub(**kwargs):
        assert list(kwargs) == list(fam.defaults)  # every parameter, in the family's order
        return base.make(
            dim=1,
            init=lambda key: jnp.zeros(1),
            full_loss=jnp.sum,
            reference=problems.Reference(f_star=0.0, f_target=0.0, source="stub"),
        )

    monkeypatch.setitem(base._FAMILIES, fam.name, dataclasses.replace(fam, factory=stub))
    monkeypatch.setattr(base, "_build", functools.lru_cache(maxsize=None)(base._build.__wrapped__))
    return problems.get(name).name


# --- canonical_name: the name get gives, without building ---


@pytest.mark.parametrize("name", problems.names())
def test_canonical_name_of_every_family_default(name):
    assert problems.canonical_name(name) == problems.get(name).name


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("saddle_nd(dim=3)", {"index": 2}),  # keywords combine with the name's parameters
        ("saddle_nd(index=2, dim=3)", {}),  # any order, spaces
        ("saddle_nd(dim=3.0)", {"neg_curvature": 2}),  # coerced: 3.0 -> 3, 2 -> 2.0
        ("rosenbrock(dim=4)", {"dim": 3}),  # keywords override the name
        ("deep_linear", {"widths": [6, 3], "depth": 3}),  # list -> tuple
        ("relu_teacher(n=None)", {"k": 3}),
        ("spin_glass(p=2,n=20)", {}),
    ],
)
def test_canonical_name_coerces_and_orders_as_get_does(name, kwargs):
    assert problems.canonical_name(name, **kwargs) == problems.get(name, **kwargs).name


def test_canonical_name_is_a_fixed_point():
    for name in problems.names():
        canonical = problems.canonical_name(name)
        assert problems.canonical_name(canonical) == canonical


def test_canonical_name_of_every_suite_instance(monkeypatch):
    entries = _suite_entries()
    assert {s for s, _ in entries} >= {"smoke", "quick", "full"}
    for suite, spec in entries:
        expected = problems.canonical_name(spec)
        if suite == "full":  # accelerator sizes: the real get path, the factory stubbed
            with monkeypatch.context() as m:
                assert _get_name_with_stub_factory(spec, m) == expected, spec
        else:
            assert problems.get(spec).name == expected, spec


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("no_such_problem", {}),
        ("no_such_problem(a=1)", {}),
        ("strict_saddle", {"no_such_parameter": 1}),
        ("strict_saddle(no_such_parameter=1)", {}),
        ("strict_saddle", {"init_radius": "big"}),
        ("saddle_nd", {"dim": 2.5}),
        ("saddle_nd", {"dim": True}),
        ("deep_linear", {"widths": 8}),
        ("deep_linear", {"init": 3}),
        ("relu_mlp(dataset=1)", {}),
        ("strict_saddle(init_radius=", {}),
        ("strict_saddle(1.0)", {}),
        ("spin_glass(p=3", {}),
    ],
)
def test_canonical_name_raises_what_get_raises(name, kwargs):
    with pytest.raises(Exception) as from_get:
        problems.get(name, **kwargs)
    with pytest.raises(type(from_get.value)) as from_name:
        problems.canonical_name(name, **kwargs)
    assert type(from_name.value) is type(from_get.value)
    assert str(from_name.value) == str(from_get.value)


def test_canonical_name_does_not_check_what_only_the_factory_checks():
    # Range checks live in the factories; canonical_name runs none, get raises when it builds.
    assert problems.canonical_name("saddle_nd(dim=0)").startswith("saddle_nd(dim=0,")
    with pytest.raises(ValueError, match="dim must be >= 1"):
        problems.get("saddle_nd(dim=0)")


def test_canonical_name_builds_nothing():
    # N = 300: a 27M-entry coupling tensor, seconds to build; the name must not need it.
    before = base._build.cache_info()
    t0 = time.perf_counter()
    for n in (300, 301, 302):
        assert problems.canonical_name(f"spin_glass(n={n})") == f"spin_glass(p=3,n={n},instance=0)"
    assert problems.canonical_name("relu_mlp(width=256)").startswith("relu_mlp(dataset='digits',width=256,")
    elapsed = time.perf_counter() - t0
    after = base._build.cache_info()
    assert (after.hits, after.misses, after.currsize) == (before.hits, before.misses, before.currsize)
    assert elapsed < 0.5, elapsed


# --- family: defaults and description, without building ---


def test_family_is_exported_and_describes_every_family():
    assert "family" in problems.__all__ and "canonical_name" in problems.__all__
    for name in problems.names():
        fam = problems.family(name)
        assert isinstance(fam, problems.Family) and fam.name == name
        signature = inspect.signature(fam.factory).parameters
        assert dict(fam.defaults) == {k: v.default for k, v in signature.items()}
        assert list(fam.defaults) == list(signature)  # the order canonical names spell out
        assert fam.description and "\n" not in fam.description
        assert fam.description == inspect.getdoc(fam.factory).split("\n")[0]


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(KeyError, match="valid problems: .*spin_glass"):
        problems.family("no_such_problem")


# --- the factories' shared helpers ---


def test_relative_target_is_the_more_wild_rule():
    assert base.relative_target(-1.0, 3.0) == -1.0 + 1e-4 * 4.0
    assert base.relative_target(-1.0, 3.0, tau=0.5) == 1.0
    assert base.relative_target(0.0, 2.5) == 1e-4 * 2.5
    assert base.RELATIVE_TARGET_TAU == 1e-4


# repr(f_target) of closed-form instances, as they were before the helpers existed. Data-derived
# targets (matrix factorization, deep linear) depend on LAPACK's rounding, so they are checked
# against the rule instead of pinned.
PINNED_TARGETS = {
    "saddle_nd": "-0.249975",
    "saddle_nd(dim=10,index=3)": "-0.749925",
    "saddle_nd(dim=1000,index=50)": "-12.49875",
    "saddle_nd(dim=7,index=4,neg_curvature=0.37,pos_curvature=2.0)": "-0.13688630999999998",
    "saddle_nd(index=10,neg_curvature=3.3)": "-27.222277499999997",
    "chained_saddle": "-699.282227653748",
    "chained_saddle(dim=10)": "-1398.564455307496",
    "chained_saddle(dim=10,tau=1.3,L=2.1,gamma=0.7)": "-244.462218",
    # f* + (1e-4 d) nu, as chained_saddle.py keeps it; relative_target's f* + 1e-4 (d nu) would
    # round to -184470.65165505873 here
    "chained_saddle(dim=1319)": "-184470.6516550587",
    "degenerate_saddle": "-0.105458203125",
    "monkey_saddle": "-0.105458203125",
    "strict_saddle": "-0.2499",
    "rosenbrock": "0.0001",
    "relu_teacher": "0.0001",
    "relu_mlp": "0.01",
    "spin_glass": "-1.632993161855452",
    "spin_glass(p=4,n=12)": "-1.7320508075688772",
}


@pytest.mark.parametrize("name", list(PINNED_TARGETS))
def test_closed_form_targets_are_bitwise_unchanged(name):
    assert repr(problems.get(name).reference.f_target) == PINNED_TARGETS[name]


@pytest.mark.parametrize(
    "name",
    ["matrix_factorization", "matrix_factorization(n=7,rank=3,instance=4)", "deep_linear",
     "deep_linear(depth=2,noise=0.1,instance=3)", "deep_linear(depth=4,widths=(6,2,5))"],
)
def test_data_derived_targets_follow_the_relative_rule(name):
    ref = problems.get(name).reference
    assert ref.f_target == ref.f_star + 1e-4 * (ref.extra["saddle_value"] - ref.f_star)


@pytest.mark.parametrize(
    "name, dim, low, high",
    [
        ("strict_saddle(init_radius=0.3)", 2, -0.3, 0.3),
        ("degenerate_saddle", 2, -1.0, 1.0),
        ("monkey_saddle(init_radius=2.5)", 2, -2.5, 2.5),
        ("saddle_nd(dim=7,init_radius=0.5)", 7, -0.5, 0.5),
        ("chained_saddle(dim=4)", 4, -1.0, 1.0),
        ("rosenbrock(dim=3,init_low=-1.0,init_high=0.5)", 3, -1.0, 0.5),
    ],
)
def test_box_inits_draw_the_uniform_box(name, dim, low, high):
    key = jax.random.key(3)
    expected = jax.random.uniform(key, (dim,), jnp.float32, low, high)
    np.testing.assert_array_equal(problems.get(name).init(key), expected)
