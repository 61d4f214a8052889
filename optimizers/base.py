"""The optimizer contract and its registry.

Every registered optimizer is an ``optax.GradientTransformationExtraArgs`` built by
``optax.inject_hyperparams``, so its numeric hyperparameters live in the state as traced
arrays: a sweep over learning rates changes data, not the program. Hyperparameters that fix
shapes or Python control flow (a Krylov dimension, a memory size) are declared ``static`` and
are baked into the program.

The runner always calls ``tx.update(grads, state, params, value=..., value_fn=..., key=...,
axis_name=...)``: ``value`` is the mini-batch loss at ``params``, ``value_fn`` that same mini-batch
loss as a function (for line searches and Hessian-vector products), ``key`` a per-step PRNG key,
``axis_name`` the names of the ``vmap`` axes the runs are batched over (for ``batch_cond``; None
for a single run; optimizers that do not branch ignore it).

The contract for any caller (a user's own training loop as much as the runner): ``value_fn``
is the loss of the same batch as ``grads``, and deterministic (the same value for the same
params: no fresh dropout mask or noise per call). Second-order methods take its Hessian-vector
products as the curvature of the function whose gradient is ``grads``; cubic regularization
and L-BFGS compare its values at trial points with ``value``. A ``value_fn`` of another batch
mixes two functions, and a random one turns those comparisons into noise. ``key`` is a new
key every step; keyed optimizers warn when it is missing (``warn_no_key``).
Optimizers record the oracle calls they spend in an ``OracleCounts`` (whose docstring states the
counting convention) and may expose the value and gradient they already have at the point they
return in a ``CachedValueGrad``.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class OracleCounts(NamedTuple):
    """Oracle calls an optimizer spent beyond the value and gradient the runner computes each step.

    Put one of these in an optimizer's state and increment it inside ``update``;
    ``oracle_counts`` finds it anywhere in the (possibly wrapped) state.

    The convention, for every optimizer and for the runner (``bench.program``): count what one
    run of the program computes, no more and no less.

    * Kinds of call: ``value_fn(x)`` is one value; ``jax.grad(value_fn)(x)`` one gradient;
      ``jax.value_and_grad(value_fn)(x)`` one value and one gradient (although the value comes
      with the gradient's forward pass); a Hessian-vector product ``jax.jvp(jax.grad(value_fn),
      (x,), (v,))`` one HVP (and no value or gradient).
    * Loops: a loop that stops early (``lax.while_loop``: Lanczos at a breakdown, CG at its
      tolerance, a line search when its conditions hold) counts the iterations it ran; a
      fixed-length loop (``fori_loop``/``scan``) counts every iteration, since every one runs.
      Branches (``lax.cond``) count the branch taken.
    * One run, not the batch: under ``vmap`` a batched ``while_loop`` runs until its last lane
      stops and a ``lax.cond`` with a batched predicate evaluates both branches (as a select;
      ``batch_cond`` skips a branch no run of the batch takes), so the hardware may do more
      work than is counted; the counts are the algorithm's own oracle
      complexity for each run, independent of how runs are batched.
    * Values and gradients an optimizer already has at the point it returns (a line search's
      accepted point, a rejected trial step) go in a ``CachedValueGrad``: where the runner can
      reuse them it does not compute them again, and counts nothing for them.
    """

    values: jax.Array  # extra function values, int32
    grads: jax.Array  # extra gradients, int32
    hvps: jax.Array  # Hessian-vector products, int32

    @staticmethod
    def zeros() -> OracleCounts:
        z = jnp.zeros([], jnp.int32)
        return OracleCounts(z, z, z)

    def add(self, values=0, grads=0, hvps=0) -> OracleCounts:
        return OracleCounts(
            self.values + jnp.asarray(values, jnp.int32),
            self.grads + jnp.asarray(grads, jnp.int32),
            self.hvps + jnp.asarray(hvps, jnp.int32),
        )


def oracle_counts(state: Any) -> dict[str, jax.Array]:
    """Extra function values, gradients and HVPs the optimizer itself has spent so far.

    Sums every ``OracleCounts`` found in ``state`` (zeros where there is none). The runner
    adds its own value and gradient per step (less those it took from a ``CachedValueGrad``).
    """
    leaves = jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, OracleCounts))
    total = OracleCounts.zeros()
    for leaf in leaves:
        if isinstance(leaf, OracleCounts):
            total = total.add(leaf.values, leaf.grads, leaf.hvps)
    return total._asdict()


class CachedValueGrad(NamedTuple):
    """The loss value and gradient at the point an update leads to, where the optimizer has them.

    After ``updates, state = tx.update(grads, state, params, value_fn=f, ...)``, a
    ``CachedValueGrad`` in ``state`` holds ``f(x+)`` in ``value`` (if ``valid_value``) and
    ``grad f(x+)`` in ``grad`` (if ``valid_grad``), at ``x+ = optax.apply_updates(params,
    updates)``, computed by the same ``f`` (the pattern of optax's ``value_and_grad_from_state``).
    L-BFGS has both (its line search ends having evaluated them at the accepted point); cubic
    regularization has the value of an accepted trial step and both after a rejected one (the
    point does not move). Before the first update the flags are False.

    A caller may use them instead of evaluating ``f`` and its gradient at ``x+`` only if its
    next objective is the same function (a deterministic loss, not a new mini-batch) and its
    next point is exactly ``x+`` (no projection or retraction in between, and the update applied
    as the optimizer returned it). ``bench.program`` does so, per run, and does not count what it
    reused (see ``OracleCounts``). The flags are traced booleans, one per run.

    A reused value or gradient is the same function at the same point, but not always the same
    bits as a recomputation: XLA on the CPU contracts ``a * b + c`` into fused multiply-adds
    where the two ops land in one kernel, so one formula compiled in two places (a line search's
    loop body, the runner's step) can differ in the last bit. Reused values of L-BFGS and cubic
    regularization were bitwise equal in the suite's checks; L-BFGS's gradients were not always.
    """

    value: jax.Array  # scalar, the dtype of params
    grad: Any  # pytree like params
    valid_value: jax.Array  # bool
    valid_grad: jax.Array  # bool

    @staticmethod
    def empty(params: Any) -> CachedValueGrad:
        """Nothing cached yet (the flags False), with the shapes and dtypes of ``params``."""
        dtype = optax.tree.dtype(params, "lowest")
        no = jnp.zeros([], bool)
        return CachedValueGrad(jnp.zeros([], dtype), optax.tree.zeros_like(params), no, no)

    def after_trial(self, accepted: jax.Array, f_new: jax.Array, f0: jax.Array, grads: Any,
                    valid_value: Any = True) -> CachedValueGrad:
        """What a trial-step method (ARC's ratio test, a line search) knows at the point it returns:
        the trial value ``f_new`` where the step was ``accepted``, else ``f0`` and the incoming
        gradient ``grads`` at the unmoved point; dtypes as in ``self``. ``valid_value``: whether
        those values are of the runner's objective (False where they are of a sub-sample)."""
        return CachedValueGrad(
            value=jnp.where(accepted, f_new, f0).astype(self.value.dtype),
            grad=optax.tree.cast_like(grads, other_tree=self.grad),
            valid_value=jnp.asarray(valid_value, bool),
            valid_grad=~accepted,
        )


def cached_value_and_grad(state: Any) -> CachedValueGrad | None:
    """The ``CachedValueGrad`` in ``state`` (found anywhere in a wrapped state), or None.

    Raises:
      ValueError: ``state`` holds several (a chain of caching transformations: which point
        each cache is at is ambiguous).
    """
    found = [leaf for leaf in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, CachedValueGrad))
             if isinstance(leaf, CachedValueGrad)]
    if len(found) > 1:
        raise ValueError(f"cached_value_and_grad: {len(found)} CachedValueGrad in the state; at most one is allowed")
    return found[0] if found else None


def batch_cond(pred: Any, true_fn: Callable, false_fn: Callable, *operands: Any,
               axis_name: str | tuple[str, ...] | None = None) -> Any:
    """``lax.cond(pred, true_fn, false_fn, *operands)`` that does not compute an unused branch for a batch.

    Under ``vmap`` a ``lax.cond`` with a batched predicate becomes a select: both branches run for
    every run of the batch, so a branch no run takes (negative-curvature descent's Lanczos search
    while every gradient is large) costs the whole batch its HVPs at every step. With the names of
    the ``vmap`` axes the update runs under (``axis_name``: the runner passes its axes as the
    update's extra argument of that name, ``bench.program.make_step``) each branch is a real
    ``lax.cond`` of its own, taken when some run of the batch needs it (a ``psum`` of the
    predicate over the axes, unbatched): ``true_fn`` runs if any run takes it, ``false_fn`` if any
    run does not, and each run keeps its own branch's result. Every run gets the result of its own
    branch, as with ``lax.cond``; only the work skipped differs (and, compiled apart, a branch may
    round differently). Without ``axis_name`` (one run, or a caller's own ``vmap``) it is
    ``lax.cond``.

    The branches must be callables of ``operands`` returning the same pytree of numeric or boolean
    arrays (as for ``lax.cond``; a branch not taken by any run returns zeros of that structure, so
    not PRNG keys).
    """
    if axis_name is None:
        return jax.lax.cond(pred, true_fn, false_fn, *operands)
    pred = jnp.asarray(pred, bool)
    n_true = jax.lax.psum(pred.astype(jnp.int32), axis_name)
    n_runs = jax.lax.psum(jnp.ones([], jnp.int32), axis_name)
    shapes = jax.eval_shape(true_fn, *operands)

    def unused(*_):
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    t = jax.lax.cond(n_true > 0, true_fn, unused, *operands)
    f = jax.lax.cond(n_true < n_runs, false_fn, unused, *operands)
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), t, f)


def refuse_complex(optimizer: str, params: Any) -> None:
    """Raise a ValueError naming ``optimizer`` if ``params`` has a complex leaf.

    For the methods written here (Krylov solvers, cubic models, noise on the sphere): their maths
    is stated for real parameters, and on complex ones they would return wrong answers without an
    error. Called in ``init``, at trace time.
    """
    bad = [jnp.result_type(leaf) for leaf in jax.tree.leaves(params)
           if jnp.issubdtype(jnp.result_type(leaf), jnp.complexfloating)]
    if bad:
        raise ValueError(
            f"{optimizer} does not support complex parameters (got {bad[0]}); "
            "optimize the real and imaginary parts as separate real parameters"
        )


def warn_no_key(optimizer: str) -> None:
    """Warn that ``update`` of a keyed optimizer got no ``key`` (called at trace time).

    Without a per-step key the optimizer draws from a key kept in (or derived from) its state,
    so two runs built the same way draw the same noise: pass ``key=`` to every ``update``
    (optax, for its own keyed transformations, now asks for a key the same way).
    """
    warnings.warn(
        f"{optimizer}: update called without key; drawing from the fallback key in the optimizer's "
        "state, which is the same for every run built the same way. Pass key=<a new PRNG key> to "
        "every update (e.g. jax.random.fold_in(run_key, step))",
        UserWarning,
        stacklevel=3,
    )


def _and(words: list[str]) -> str:
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


def require_update_args(optimizer: str, why: str, **args: Any) -> None:
    """Raise a ValueError naming ``optimizer`` if one of the ``update`` arguments it needs is None.

    ``args`` are the arguments ``update`` got, by name (``params``, ``value``, ``value_fn``);
    ``why`` says what the optimizer uses them for. Called at trace time, so the check costs
    nothing in the compiled program.
    """
    missing = [k for k, v in args.items() if v is None]
    if missing:
        call = "".join({"params": ", params", "value": ", value=loss_fn(params)",
                        "value_fn": ", value_fn=loss_fn"}.get(k, f", {k}=...") for k in args)
        raise ValueError(
            f"{optimizer} needs {_and(list(args))} in update ({why}); missing: {_and(missing)}. "
            f"Call tx.update(grads, state{call})"
        )


@dataclasses.dataclass(frozen=True)
class Range:
    """A continuous hyperparameter range for tuning (log-uniform when ``log``)."""

    low: float
    high: float
    log: bool = True

    def __post_init__(self):
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"bad range [{self.low}, {self.high}] (log={self.log})")


# The optimizer families, in the order the leaderboard lists them (``Spec.family``).
FAMILIES = ("first-order", "noise-injecting", "quasi-Newton", "Hessian-vector", "sub-sampled")


@dataclasses.dataclass(frozen=True)
class Spec:
    """What the suite knows about an optimizer.

    Attributes:
      name: registry name.
      defaults: every hyperparameter with its default value.
      search_space: tunable hyperparameters -> ``Range``.
      static: hyperparameters that fix the program (shapes, loop counts); not traced.
      needs_value_fn: uses ``value_fn`` (line search, model ratio, HVPs).
      needs_hvp: takes Hessian-vector products of ``value_fn``.
      uses_key: draws noise from the per-step ``key``.
      reference: the paper or library it comes from.
      description: one line.
      family: one of ``FAMILIES`` (what the leaderboard groups by): "first-order" (gradients
        only, deterministic), "noise-injecting" (first-order plus noise or perturbations from the
        key), "quasi-Newton" (curvature from gradient differences), "Hessian-vector" (curvature
        from Hessian-vector products of ``value_fn``), "sub-sampled" (methods that draw their
        own samples of gradients and Hessians); "" where a registration gave none.
      optax_alias: the factory returns an optax alias as optax builds it (only optax's
        transformations, no code of this package in its ``update``): such optimizers share one
        code path here (``get``: ``inject_hyperparams`` and ``keep_dtypes`` around optax's
        update), which the shared tests check in full on a representative.
    """

    name: str
    defaults: Mapping[str, Any]
    search_space: Mapping[str, Range]
    static: tuple[str, ...] = ()
    needs_value_fn: bool = False
    needs_hvp: bool = False
    uses_key: bool = False
    reference: str = ""
    description: str = ""
    family: str = ""
    optax_alias: bool = False

    @property
    def traced(self) -> tuple[str, ...]:
        """Hyperparameters carried as traced arrays (sweeps over them do not recompile)."""
        return tuple(k for k in self.defaults if k not in self.static)


_REGISTRY: dict[str, tuple[Spec, Callable[..., optax.GradientTransformation]]] = {}


def register(
    name: str,
    factory: Callable[..., optax.GradientTransformation],
    search_space: Mapping[str, Range] | None = None,
    *,
    static: Sequence[str] = (),
    needs_value_fn: bool = False,
    needs_hvp: bool = False,
    uses_key: bool = False,
    reference: str = "",
    description: str = "",
    family: str = "",
    optax_alias: bool = False,
) -> None:
    """Register ``factory(**hparams) -> GradientTransformation`` under ``name``.

    The factory's keyword defaults are the optimizer's defaults (``Spec.defaults``, in
    signature order): every parameter of ``factory`` is a hyperparameter and needs a default.
    ``family`` is one of ``FAMILIES`` (see ``Spec``).
    """
    if name in _REGISTRY:
        raise ValueError(f"optimizer {name!r} is already registered")
    if family and family not in FAMILIES:
        raise ValueError(f"optimizer {name!r}: unknown family {family!r}; valid families: {', '.join(FAMILIES)}")
    defaults = {}
    for pname, prm in inspect.signature(factory).parameters.items():
        if prm.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"factory of optimizer {name!r}: takes {prm}; name every hyperparameter")
        if prm.default is inspect.Parameter.empty:
            raise TypeError(f"factory of optimizer {name!r}: parameter {pname!r} needs a default")
        defaults[pname] = prm.default
    search_space = dict(search_space or {})
    bad = (set(search_space) | set(static)) - set(defaults)
    if bad:
        raise ValueError(f"optimizer {name!r}: {sorted(bad)} not among its defaults")
    spec = Spec(
        name=name,
        defaults=defaults,
        search_space=search_space,
        static=tuple(static),
        needs_value_fn=needs_value_fn or needs_hvp,
        needs_hvp=needs_hvp,
        uses_key=uses_key,
        reference=reference,
        description=description or (factory.__doc__ or "").strip().split("\n")[0],
        family=family,
        optax_alias=optax_alias,
    )
    _REGISTRY[name] = (spec, factory)


def names() -> list[str]:
    """Every registered optimizer."""
    return sorted(_REGISTRY)


def spec(name: str) -> Spec:
    """Defaults, search space and oracle needs of a registered optimizer."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(names())}")
    return _REGISTRY[name][0]


def _is_schedule(v: Any) -> bool:
    return callable(v) and not isinstance(v, (jax.Array, np.ndarray, np.number))


def check_hparams(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``hparams``, after checking names and types; raises on bad input.

    A traced (not static) numeric hyperparameter may also be a schedule, ``step -> value``
    (``optax.linear_schedule(...)`` and the like), as in every optax optimizer.
    """
    sp = spec(name)
    unknown = sorted(set(hparams) - set(sp.defaults))
    if unknown:
        raise TypeError(
            f"{name}: unknown hyperparameter(s) {unknown}; valid: "
            + ", ".join(f"{k}={v!r}" for k, v in sp.defaults.items())
        )
    merged = dict(sp.defaults)
    for k, v in hparams.items():
        default = sp.defaults[k]
        if _is_schedule(v) and k not in sp.static and not isinstance(default, bool):
            pass  # an optax schedule: inject_hyperparams evaluates it at each update's count
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise TypeError(f"{name}: hyperparameter {k!r} must be a bool, got {v!r}")
        elif isinstance(default, (int, float)) and not isinstance(v, jax.Array):
            if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.number)):
                raise TypeError(f"{name}: hyperparameter {k!r} must be a number, got {v!r}")
            if isinstance(default, int) and k in sp.static:
                if not float(v).is_integer():
                    raise TypeError(f"{name}: hyperparameter {k!r} must be an integer, got {v!r}")
                v = int(v)
        merged[k] = v
    return merged


def get(name: str, **hparams: Any) -> optax.GradientTransformationExtraArgs:
    """Build a registered optimizer with traced hyperparameters.

    Numeric hyperparameters not declared static become float32 arrays in
    ``state.hyperparams``, so ``optax.tree.set(state, learning_rate=...)`` or a ``vmap`` over
    them reuses one compiled program. A traced hyperparameter may be given as a schedule
    (``learning_rate=optax.cosine_decay_schedule(...)``): it is evaluated at the update count
    and its current value is what ``state.hyperparams`` holds (``optax.inject_hyperparams``).

    Updates have the dtype of the incoming gradients and the state keeps the dtypes ``init``
    gave it, whatever the params' dtype (bfloat16, float16, float32, float64), so a
    ``lax.scan`` over steps carries a stable state; the arithmetic with the float32
    hyperparameters runs in float32 or wider (see ``keep_dtypes``). For float32 params that
    cast is absent from the program: the numbers are those of the bare transformation.
    """
    sp = spec(name)
    merged = check_hparams(name, hparams)
    factory = _REGISTRY[name][1]
    traced = {}
    for k, v in merged.items():
        if k not in sp.static and not isinstance(v, bool) and isinstance(v, (int, float)):
            # ints that are not static become float32 too: one dtype for every traced value
            v = float(v)
        traced[k] = v
    return keep_dtypes(optax.inject_hyperparams(
        factory, static_args=sp.static, hyperparam_dtype=jnp.float32
    )(**traced))


def keep_dtypes(tx: optax.GradientTransformationExtraArgs) -> optax.GradientTransformationExtraArgs:
    """``tx`` whose updates have the gradients' dtypes and whose state keeps its dtypes.

    float32 hyperparameters promote bfloat16 or float16 arithmetic to float32 (JAX's type
    promotion), so without this an Adam moment initialised in bfloat16 comes back float32 and
    a ``lax.scan`` over steps fails on its carry type; optax avoids it by casting the
    hyperparameters to the params' dtype instead, which rounds a learning rate of 1e-3 to
    bfloat16's 8 bits. Here the step is computed with float32 hyperparameters and only its
    results are rounded: each update leaf to the dtype of its gradient, each state leaf to the
    dtype it had. A leaf whose dtype already matches is left alone, so for float32 params the
    program is the bare transformation's, bit for bit.
    """

    def cast_to(new, old):
        old_dtype, new_dtype = jnp.result_type(old), jnp.result_type(new)
        if old_dtype == new_dtype or jax.dtypes.issubdtype(old_dtype, jax.dtypes.prng_key):
            return new
        return jnp.asarray(new).astype(old_dtype)

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_state = tx.update(updates, state, params, **extra_args)
        new_updates = jax.tree.map(cast_to, new_updates, updates)
        new_state = jax.tree.map(cast_to, new_state, state)
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(tx.init, update_fn)


_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def _is_injected(x: Any) -> bool:
    return isinstance(x, _INJECTED)


def set_hparams(state: Any, **hparams: Any) -> Any:
    """``state`` with the given injected hyperparameters replaced, wherever the injected state sits.

    Finds every ``optax.inject_hyperparams`` state in the pytree ``state`` (the state of an
    ``optimizers.get`` optimizer itself, or one nested in ``optax.chain``, ``optax.MultiSteps``
    and the like, or in another injected state's ``inner_state``) and sets each name in the one
    whose ``hyperparams`` holds it. The values go in as given (no cast): pass float32 arrays of
    shape () to keep the state's dtypes, e.g. lanes of a ``vmap``. For an optimizer from
    ``optimizers.get`` this is ``state._replace(hyperparams={**state.hyperparams, **hparams})``.

    Raises:
      TypeError: a name is not an injected hyperparameter (static ones are not).
      ValueError: ``state`` holds no injected hyperparameters (while ``hparams`` is not empty),
        or a name is a hyperparameter of several injected states.
    """
    if not hparams:
        return state
    found: list[Any] = []

    def collect(tree):
        for node in jax.tree_util.tree_leaves(tree, is_leaf=_is_injected):
            if _is_injected(node):
                found.append(node)
                collect(node.inner_state)

    collect(state)
    if not found:
        raise ValueError(
            f"set_hparams: no injected hyperparameters in the state (an optax.inject_hyperparams state, "
            f"as optimizers.get builds) to set {sorted(hparams)} in"
        )
    holders = {k: sum(k in node.hyperparams for node in found) for k in hparams}
    unknown = sorted(k for k, n in holders.items() if n == 0)
    if unknown:
        valid = sorted({k for node in found for k in node.hyperparams})
        raise TypeError(
            f"set_hparams: unknown hyperparameter(s) {unknown}; injected ones: {valid} "
            "(static hyperparameters are fixed when the optimizer is built: pass them to optimizers.get)"
        )
    ambiguous = sorted(k for k, n in holders.items() if n > 1)
    if ambiguous:
        raise ValueError(f"set_hparams: hyperparameter(s) {ambiguous} are in several injected states")

    def replace(node):
        if not _is_injected(node):
            return node
        inner = node.inner_state
        if any(map(_is_injected, jax.tree_util.tree_leaves(inner, is_leaf=_is_injected))):
            node = node._replace(inner_state=jax.tree_util.tree_map(replace, inner, is_leaf=_is_injected))
        mine = {k: v for k, v in hparams.items() if k in node.hyperparams}
        return node._replace(hyperparams={**node.hyperparams, **mine}) if mine else node

    return jax.tree_util.tree_map(replace, state, is_leaf=_is_injected)
