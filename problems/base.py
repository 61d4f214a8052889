"""The problem contract and its registry.

A problem is a bundle of pure functions over a parameter pytree (``init``, ``loss``,
``full_loss``, ``retract``) plus what is known about it (``reference``). Families are
registered with a factory and its default parameters; ``get`` builds an instance and names
it canonically, so ``get(p.name)`` rebuilds the same problem (and returns the same cached
object, whose jitted functions are then reused rather than recompiled).

Building can be expensive (data sets, coupling tensors, reference values), so what only needs
the registry is answered without building: ``canonical_name`` (the ``name`` that ``get`` would
give) and ``family`` (a family's defaults and one-line description).

Helpers shared by the factories: ``relative_target`` (the suite's rule for ``f_target``) and
``uniform_box_init``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

Params = Any  # a pytree of float arrays
Scalar = jax.Array


@dataclasses.dataclass(frozen=True)
class Reference:
    """What is known about a problem's optimum.

    Attributes:
      f_star: the global minimum value of ``full_loss`` (None where unknown).
      f_target: the value that counts as solved (``full_loss <= f_target``).
      source: where ``f_star`` and ``f_target`` come from (closed form, paper, computation).
      extra: further known values (saddle values, threshold energies, ...), name -> float.
    """

    f_star: float | None
    f_target: float
    source: str
    extra: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Saddle:
    """A known critical point that is not a minimum: where it is, its value, its index."""

    point: Params
    value: float
    index: int | None = None  # number of negative Hessian eigenvalues (None if degenerate/unknown)
    name: str = "saddle"


def _identity(params: Params) -> Params:
    return params


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One instance of a test problem.

    Attributes:
      name: canonical id with every parameter, e.g. ``"spin_glass(p=3,n=100,instance=0)"``.
      family: the registered family name.
      dim: number of scalar parameters.
      init: ``key -> params``, the random initialization for that seed.
      loss: ``(params, key) -> scalar``, the stochastic objective (mini-batch or noisy);
        equal to ``full_loss`` for deterministic problems.
      full_loss: ``params -> scalar``, the exact objective behind every reported number.
      reference: known optimum and the value that counts as solved.
      retract: ``params -> params``, projection back onto the constraint set (identity if none).
      stochastic: whether ``loss`` depends on its key.
      saddles: known saddle points, for escape benchmarks.
      params: the construction parameters (what ``name`` spells out).
      n_samples: the size of the problem's finite data set, f = (1/n) sum_i f_i (0: none).
      sample_loss: ``(params, idx) -> scalar``, the mean of the per-sample losses f_i over the
        int32 indices ``idx`` (any length), with ``sample_loss(params, arange(n_samples))`` the
        full objective; None for problems without a finite data set. For the sub-sampled
        methods (``optimizers.subsampled_cubic``, ``subsampled_newton``), through the runner.
      batch_samples: how many samples one ``loss`` call averages over (its mini-batch size;
        ``n_samples`` for a deterministic finite sum; 0 without a data set): the unit in which
        sub-sampled oracle calls are counted.
      constants: large arrays the functions close over (a pytree of arrays; None: none), which a
        compiled program should take as arguments rather than embed: a program that captures an
        array embeds it in its code, so its size and compile time grow with the array's.
      bind_constants: ``constants -> {field: function}``, the problem's functions (``init``,
        ``loss``, ``full_loss``, ``retract``, ...) rebuilt on the given constants (traced arrays of
        the same shapes inside a compiled program; with ``self.constants`` they are the captured
        functions, bit for bit). None when ``constants`` is None. See ``bind``.
      bound_functions: the functions ``bind_constants(constants)`` built for the fields, as the
        factory set them: ``bind`` rebuilds a field only while it still holds its bound function, so
        a field replaced later (``dataclasses.replace(p, init=...)``) is kept as replaced.
    """

    name: str
    family: str
    dim: int
    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, jax.Array], Scalar]
    full_loss: Callable[[Params], Scalar]
    reference: Reference
    retract: Callable[[Params], Params] = _identity
    stochastic: bool = False
    saddles: tuple[Saddle, ...] = ()
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    n_samples: int = 0
    sample_loss: Callable[[Params, jax.Array], Scalar] | None = None
    batch_samples: int = 0
    constants: Any = None
    bind_constants: Callable[[Any], Mapping[str, Callable]] | None = None
    bound_functions: Mapping[str, Callable] = dataclasses.field(default_factory=dict)

    def bind(self, constants: Any) -> Problem:
        """This problem with its functions rebuilt on ``constants`` (a pytree shaped like
        ``self.constants``): how a compiled program takes the constants as arguments,
        ``jax.jit(lambda c, x: p.bind(c).full_loss(x))(p.constants, x)``, instead of embedding them.
        Only fields still holding their ``bound_functions`` are rebuilt (a replaced one keeps its
        captured constants). The identity for problems without constants."""
        if self.bind_constants is None:
            return self
        fresh = self.bind_constants(constants)
        kept = self.bound_functions
        return dataclasses.replace(self, **{k: f for k, f in fresh.items()
                                            if k in kept and getattr(self, k) is kept[k]})

    def __repr__(self) -> str:
        return f"Problem({self.name}, dim={self.dim})"


def deterministic(full_loss: Callable[[Params], Scalar]) -> Callable[[Params, jax.Array], Scalar]:
    """The ``loss(params, key)`` of a problem with no noise: the key is ignored."""

    def loss(params, key):
        del key
        return full_loss(params)

    return loss


@dataclasses.dataclass(frozen=True)
class Family:
    """A registered problem family, as ``family(name)`` returns it; building nothing.

    Attributes:
      name: the registered name.
      factory: keyword parameters -> ``Problem`` (called by ``get`` with every parameter).
      defaults: parameter name -> default value, in the order canonical names spell them.
      description: one line (the factory docstring's first line unless given at ``register``).
    """

    name: str
    factory: Callable[..., Problem]
    defaults: Mapping[str, Any]
    description: str


_FAMILIES: dict[str, Family] = {}


def register(name: str, factory: Callable[..., Problem], description: str = "") -> None:
    """Register a problem family; its factory's keyword defaults are the family's defaults.

    The factory receives every parameter (defaults filled in) as keywords and returns a
    ``Problem`` whose ``name``/``family``/``params`` are then filled in here.
    """
    if name in _FAMILIES:
        raise ValueError(f"problem family {name!r} is already registered")
    sig = inspect.signature(factory)
    defaults = {}
    for pname, prm in sig.parameters.items():
        if prm.default is inspect.Parameter.empty:
            raise TypeError(f"factory of {name!r}: parameter {pname!r} needs a default")
        defaults[pname] = prm.default
    doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
    _FAMILIES[name] = Family(name, factory, defaults, doc)


def names() -> list[str]:
    """Every registered problem family."""
    return sorted(_FAMILIES)


def family(name: str) -> Family:
    """The registered family ``name`` (its defaults and description), without building anything.

    Raises ``KeyError`` (listing the valid families) for an unknown name.
    """
    if name not in _FAMILIES:
        raise KeyError(
            f"unknown problem {name!r}; valid problems: {', '.join(names())}"
        )
    return _FAMILIES[name]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_fmt(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value) if isinstance(value, str) else str(value)


def _coerce(fam: Family, key: str, value: Any) -> Any:
    default = fam.defaults[key]
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"{fam.name}: parameter {key!r} must be a bool, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not float(value).is_integer():
            raise TypeError(f"{fam.name}: parameter {key!r} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{fam.name}: parameter {key!r} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{fam.name}: parameter {key!r} must be a tuple, got {value!r}")
        return tuple(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise TypeError(f"{fam.name}: parameter {key!r} must be a string, got {value!r}")
    return value


_NAME_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def parse_name(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"family(a=1,b=(2,3))"`` into ``("family", {"a": 1, "b": (2, 3)})``."""
    m = _NAME_RE.match(spec)
    if not m:
        raise ValueError(f"cannot parse problem name {spec!r}; expected family or family(k=v,...)")
    fam, args = m.group(1), m.group(2)
    kwargs: dict[str, Any] = {}
    if args and args.strip():
        try:
            call = ast.parse(f"f({args})", mode="eval").body
            assert isinstance(call, ast.Call) and not call.args
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError, AssertionError) as err:
            raise ValueError(f"cannot parse problem parameters in {spec!r}: {err}") from None
    return fam, kwargs


def _resolve(name: str, kwargs: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """Parse ``name``, merge ``kwargs``, check and coerce them, fill in defaults.

    Returns the family name and every parameter in the family's order: the key of ``_build``'s
    cache and what the canonical name spells out. Only the registry is consulted (nothing is built),
    so the errors here are those of bad names, unknown parameters and ill-typed values.
    """
    fam_name, parsed = parse_name(name)
    fam = family(fam_name)
    parsed.update(kwargs)
    unknown = sorted(set(parsed) - set(fam.defaults))
    if unknown:
        raise TypeError(
            f"{fam_name}: unknown parameter(s) {unknown}; valid parameters: "
            + ", ".join(f"{k}={_fmt(v)}" for k, v in fam.defaults.items())
        )
    full = dict(fam.defaults)
    full.update({k: _coerce(fam, k, v) for k, v in parsed.items()})
    return fam_name, tuple(full.items())


def _format_name(fam_name: str, items: tuple[tuple[str, Any], ...]) -> str:
    return f"{fam_name}(" + ",".join(f"{k}={_fmt(v)}" for k, v in items) + ")"


def canonical_name(name: str, **kwargs: Any) -> str:
    """The canonical name ``get(name, **kwargs).name`` has, without building the problem.

    Same arguments as ``get``, and the same errors for an unknown family (``KeyError``), an
    unparsable name (``ValueError``), unknown parameters or ill-typed values (``TypeError``).
    Constraints that only the factory checks (e.g. ``dim >= 1``) are not checked: ``get`` raises
    those when it builds. Cheap: no data set, tensor or reference value is computed.
    """
    return _format_name(*_resolve(name, kwargs))


def get(name: str, **kwargs: Any) -> Problem:
    """Build (or fetch from cache) a problem instance.

    ``name`` is a family (``"spin_glass"``) with parameters as keywords, or a canonical
    name (``"spin_glass(p=3,n=100,instance=0)"``); keywords override parameters in the name.
    Unknown families, unknown parameters and ill-typed values raise before anything runs.
    """
    return _build(*_resolve(name, kwargs))


@functools.lru_cache(maxsize=256)
def _build(fam_name: str, items: tuple[tuple[str, Any], ...]) -> Problem:
    prob = _FAMILIES[fam_name].factory(**dict(items))
    if not isinstance(prob, Problem):
        raise TypeError(f"factory of {fam_name!r} returned {type(prob).__name__}, not Problem")
    return dataclasses.replace(prob, name=_format_name(fam_name, items), family=fam_name, params=dict(items))


def make(
    *,
    dim: int,
    init: Callable[[jax.Array], Params],
    full_loss: Callable[[Params], Scalar],
    reference: Reference,
    loss: Callable[[Params, jax.Array], Scalar] | None = None,
    **kwargs: Any,
) -> Problem:
    """Convenience constructor for factories: ``name``/``family`` are filled in by ``get``."""
    return Problem(
        name="",
        family="",
        dim=dim,
        init=init,
        loss=loss if loss is not None else deterministic(full_loss),
        full_loss=full_loss,
        reference=reference,
        stochastic=loss is not None,
        **kwargs,
    )


RELATIVE_TARGET_TAU = 1e-4

# Best known values of instances whose optimum is unknown or not attained, written by the reference
# campaign (``python -m bench campaign --write``; ``problems`` never imports ``bench``).
BEST_KNOWN_PATH = pathlib.Path(__file__).resolve().parent / "best_known.json"


@functools.cache
def best_known(name: str) -> dict | None:
    """The ``best_known.json`` record of the canonical instance ``name`` (None if it has none)."""
    if not BEST_KNOWN_PATH.exists():
        return None
    return json.loads(BEST_KNOWN_PATH.read_text()).get(name)


def relative_target(f_star: float, f_ref: float, tau: float = RELATIVE_TARGET_TAU) -> float:
    """The value that counts as solved: ``f_star + tau (f_ref - f_star)``.

    A relative target in the style of More and Wild 2009 ("Benchmarking derivative-free
    optimization algorithms", SIAM J. Optim. 20(1)), whose test f(x_0) - f(x) >= (1 - tau)
    (f(x_0) - f_L) is f(x) <= f_L + tau (f(x_0) - f_L): solved once all but a fraction tau of the
    drop from the reference value ``f_ref`` (here the value at the saddle the runs start from,
    usually f(0)) to the optimum ``f_star`` is gone. Being relative, one tau means the same
    accuracy at every scale of f. Stored results carry ``f_target`` and compare it bit for bit,
    so keep this expression's order of operations.
    """
    return f_star + tau * (f_ref - f_star)


def uniform_box_init(dim: int, low: float, high: float) -> Callable[[jax.Array], jax.Array]:
    """Initializer drawing each coordinate uniformly from [low, high) (float32, shape (dim,)).

    ``jax.random.uniform(key, (dim,), jnp.float32, low, high)``: the box inits of the saddle
    families and Rosenbrock all draw exactly this.
    """

    def init(key):
        return jax.random.uniform(key, (dim,), jnp.float32, low, high)

    return init
