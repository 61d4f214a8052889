"""The compiled program of a (problem, optimizer) cell, and its compile cache.

The program is ``vmap`` (hyperparameter points) of ``vmap`` (seeds) of a ``lax.scan`` over
log points: each measures the full loss and gradient norm, then (but after the last) runs a
``lax.scan`` over ``log_every`` optimizer steps. Hyperparameters are traced arrays in the
optimizer state (``optax.inject_hyperparams``, set with ``optimizers.set_hparams``), so a sweep
of 100 learning rates and 128 seeds is one compile. Compilation is done ahead of time
(``jit(...).lower(...).compile()``) so its cost is measured apart from the run. The problem's
``constants`` (a spin glass's coupling tensor) are arguments of the program, not embedded in it;
with several local devices the batch is sharded over them (``CellExecutable``).

Oracle accounting (the convention of ``optimizers.OracleCounts``): each step (``make_step``)
needs the mini-batch value and gradient at the current point; it computes them with
``jax.value_and_grad`` (one value and one gradient) unless the optimizer already has them (a
``CachedValueGrad`` in its state: L-BFGS's line search, cubic regularization's trial value) and
the problem allows their reuse (``reuses_cache``), and counts only what it computed; the
optimizer's own calls come from its ``OracleCounts``. ``tests/bench/test_oracle_counts.py``
checks the recorded counts against the calls one run makes.

PRNG discipline: one root key per seed, ``jax.random.key(seed)``, split once into an init key
and a run key; step ``t`` uses ``fold_in(run_key, t)`` split into a loss key (mini-batch / noise
of the objective) and an optimizer key (noise the optimizer draws). Same seed, same backend,
same bits.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optimizers
import problems
from bench import landscape
from bench.grid import Grid
from bench.schema import EIG_TOL, TAUS, escape_threshold, reference_value

# A run counts as diverged when its loss is non-finite or rises this far above the start.
BLOWUP_FACTOR = 1e6


class Tracker(NamedTuple):
    """What a run carries besides its parameters and optimizer state.

    Attributes:
      hit_step: first step at which the loss was at or below the target (-1: never).
      hit_counts: cumulative (values, gradients, HVPs) at ``hit_step``, int32 (3,).
      diverged_step: first step whose loss was non-finite or above ``blowup`` (-1: never).
      blowup: the divergence threshold, set from the full loss at step 0.
      spent: the runner's own (values, gradients) so far, int32 (2,): one of each per step,
        less those taken from the optimizer's ``CachedValueGrad`` (see ``make_step``).
      targets: the run's further targets, (T + 1,): the relative targets f_ref + tau (f_0 - f_ref),
        one per tau of ``schema.TAUS``, set from the full loss f_0 at step 0, then the escape
        threshold ``schema.escape_threshold`` (NaN, never hit, where the problem has no reference
        value f_ref, or no saddle).
      target_hit_step, target_hit_counts: as ``hit_step`` and ``hit_counts``, per further target:
        (T + 1,) and (T + 1, 3).
    """

    hit_step: jax.Array
    hit_counts: jax.Array
    diverged_step: jax.Array
    blowup: jax.Array
    spent: jax.Array
    targets: jax.Array
    target_hit_step: jax.Array
    target_hit_counts: jax.Array

    @staticmethod
    def start(dtype) -> Tracker:
        never = jnp.int32(-1)
        n = len(TAUS) + 1
        return Tracker(never, jnp.zeros(3, jnp.int32), never, jnp.zeros((), dtype), jnp.zeros(2, jnp.int32),
                       jnp.full(n, jnp.nan, dtype), jnp.full(n, -1, jnp.int32), jnp.zeros((n, 3), jnp.int32))

    def hit(self, value: jax.Array, target: float, t: jax.Array, counts: jax.Array) -> Tracker:
        """Record step ``t`` (with its oracle ``counts``) as the first at ``target`` and at each
        further target (``targets``) that ``value`` is at or below, if it is the first."""
        now = (self.hit_step < 0) & (value <= target)
        further = (self.target_hit_step < 0) & (value <= self.targets)
        return self._replace(hit_step=jnp.where(now, t, self.hit_step),
                             hit_counts=jnp.where(now, counts, self.hit_counts),
                             target_hit_step=jnp.where(further, t, self.target_hit_step),
                             target_hit_counts=jnp.where(further[:, None], counts, self.target_hit_counts))

    def diverge(self, bad: jax.Array, t: jax.Array) -> Tracker:
        """Record step ``t`` as the first diverged step, if ``bad`` and none was before."""
        return self._replace(diverged_step=jnp.where((self.diverged_step < 0) & bad, t, self.diverged_step))


class Outputs(NamedTuple):
    """What the program returns, each with leading axes (hyperparameter points H, seeds S).

    Attributes:
      loss, grad_norm: (H, S, L) full loss and full-gradient norm at each of the L logged steps.
      counts: (H, S, L, 3) cumulative (values, gradients, HVPs) at each logged step.
      hit_step, hit_counts, diverged_step, target_hit_step, target_hit_counts: the run's ``Tracker``
        at the end (see there).
      params: the end points (a pytree with leading axes H, S).
      curvature: with the ``curvature`` flag, ``bench.landscape.Curvature`` of the full loss at each
        logged step, each (H, S, L); else None.
    """

    loss: Any
    grad_norm: Any
    counts: Any
    hit_step: Any
    hit_counts: Any
    diverged_step: Any
    target_hit_step: Any
    target_hit_counts: Any
    params: Any
    curvature: Any = None


def first_order(optimizer: str) -> bool:
    sp = optimizers.spec(optimizer)
    return not (sp.needs_hvp or sp.needs_value_fn)


def step_unroll(optimizer: str) -> int:
    """Steps per iteration of the inner ``lax.scan``: 2 for first-order methods, else 1.

    A first-order step is a handful of small kernels, so the loop's own per-iteration work
    (carry copies, the trip-count test) is a visible share of it: unrolling by 2 cut Adam on
    rosenbrock(dim=20) at 32 seeds by 10-15% on a 2-core CPU. A second-order step is dominated
    by its own inner loops (Lanczos, CG, line search), where unrolling only adds compile time.
    """
    return 2 if first_order(optimizer) else 1


def compiler_options(optimizer: str | None = None) -> dict[str, Any]:
    """XLA options for the runner's programs on the CPU; accelerator backends keep their defaults.

    Measured on the quick suite's programs (2-core x86 CPU, jaxlib 0.10.2), against XLA's
    defaults. Every program: backend optimization level 1 compiles 20-40% faster and runs as
    fast (level 0 compiles faster still but runs 3-8x slower); the default level also
    miscompiled optax's zoom line search inside a scan (see ``optimizers.lbfgs``).
    Second-order programs (and the landscape program, ``optimizer=None``) also use the classic
    elemental emitters (``xla_cpu_use_fusion_emitters=False``): another 30-40% off their
    compile time (3-9 s each), run time within noise, as their steps are HVP-bound. First-order
    programs keep the newer fusion emitters, whose tight loops run up to 2x faster (Adam on
    rosenbrock(dim=20): 3.5 vs 6 ms per 2000 steps at 32 seeds). The options are a function of
    the optimizer alone, so a cell's numbers stay a function of its spec.
    """
    if jax.default_backend() != "cpu":
        return {}
    if optimizer is not None and first_order(optimizer):
        return {"xla_backend_optimization_level": 1}
    return {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def reuses_cache(problem: problems.Problem) -> bool:
    """Whether the runner may take values and gradients from an optimizer's ``CachedValueGrad``.

    Only when the next step's objective is the same function (a deterministic problem, whose
    ``loss`` ignores its key) and the next point is exactly ``apply_updates(params, updates)``
    (no retraction: the spherical spin glass retracts, and its cached values are at the
    unretracted point).
    """
    return not problem.stochastic and problem.retract is getattr(problems.base, "_identity", None)


def counts(state, track: Tracker) -> jax.Array:
    """Cumulative (values, gradients, HVPs) of a run: the runner's own plus the optimizer's, int32 (3,)."""
    extra = optimizers.oracle_counts(state)
    return jnp.stack([track.spent[0] + extra["values"], track.spent[1] + extra["grads"],
                      extra["hvps"]]).astype(jnp.int32)


def _value_and_grad(value_fn, params, state, reuse: bool, axis_name):
    """``(value, grads, spent)`` at ``params``: computed, or taken from the state's ``CachedValueGrad``.

    ``spent`` (int32 (2,)) is what this run computed: (1, 1) for ``jax.value_and_grad``, (0, 1)
    for ``jax.grad`` alone (the value cached), (1, 0) for the value alone, (0, 0) when both are
    cached. Under ``vmap`` (``axis_name`` names the batch axes) the flags are per run, so a plain
    ``lax.cond`` on them would become a select that computes everything for every run; instead
    the branch is chosen by what any run of the batch needs (a ``psum`` over the batch axes,
    unbatched, so a real branch): after L-BFGS's first step no run needs anything and nothing is
    computed. Runs that had theirs cached keep the cached values, bit for bit, and count nothing
    (the per-run convention of ``optimizers.OracleCounts``).
    """
    cache = optimizers.cached_value_and_grad(state) if reuse else None
    if cache is None:
        value, grads = jax.value_and_grad(value_fn)(params)
        return value, grads, jnp.ones(2, jnp.int32)
    shape = jax.eval_shape(value_fn, params)
    c_value = cache.value.astype(shape.dtype)
    c_grad = optax.tree.cast_like(cache.grad, other_tree=params)
    need = jnp.stack([~cache.valid_value, ~cache.valid_grad]).astype(jnp.int32)
    any_need = need if axis_name is None else jax.lax.psum(need, axis_name)
    branch = 2 * (any_need[0] > 0).astype(jnp.int32) + (any_need[1] > 0).astype(jnp.int32)
    branches = [
        lambda: (c_value, c_grad),
        lambda: (c_value, jax.grad(value_fn)(params)),
        lambda: (value_fn(params), c_grad),
        lambda: jax.value_and_grad(value_fn)(params),
    ]
    value, grads = jax.lax.switch(branch, branches)
    value = jnp.where(cache.valid_value, c_value, value)
    grads = jax.tree_util.tree_map(lambda c, g: jnp.where(cache.valid_grad, c, g), c_grad, grads)
    return value, grads, need


def make_step(problem: problems.Problem, tx: optax.GradientTransformationExtraArgs, target: float | None = None,
              axis_name: str | tuple[str, ...] | None = None):
    """One optimizer step of one run, exactly as the program runs it.

    Returns ``step(carry, t, run_key) -> carry`` with ``carry = (params, state, track)`` (a
    ``Tracker``): the step's mini-batch value and gradient at ``params`` (computed, or reused
    from the optimizer's ``CachedValueGrad`` where ``reuses_cache(problem)``; counted in
    ``track.spent`` only when computed), the target (``target``, exact values only) and
    divergence checks, ``tx.update`` and the (retracted) new point. ``axis_name``: the ``vmap``
    axes the step runs under (the program's "hp" and "seeds"), None for a single run; ``tx.update``
    gets it as the extra argument ``axis_name``, for branches chosen per batch
    (``optimizers.batch_cond``).
    """
    exact_values = not problem.stochastic
    reuse = reuses_cache(problem)
    # a finite sum reaches the sub-sampled methods as the extra argument sample_loss (others ignore it)
    extra = {} if problem.sample_loss is None else {"sample_loss": optimizers.SampleLoss(
        problem.sample_loss, int(problem.n_samples), int(problem.batch_samples))}

    def step(carry, t, run_key):
        params, state, track = carry
        key = jax.random.fold_in(run_key, t)
        k_loss, k_opt = jax.random.split(key)

        def value_fn(p):
            return problem.loss(p, k_loss)

        value, grads, spent = _value_and_grad(value_fn, params, state, reuse, axis_name)
        if exact_values and target is not None:  # the loss is the full loss: the target check is exact, per step
            track = track.hit(value, target, t, counts(state, track))
        track = track.diverge(~jnp.isfinite(value) | (value > track.blowup), t)
        track = track._replace(spent=track.spent + spent)
        updates, state = tx.update(grads, state, params, value=value, value_fn=value_fn, key=k_opt,
                                   axis_name=axis_name, **extra)
        params = problem.retract(optax.apply_updates(params, updates))
        return params, state, track

    return step


_AXES = ("hp", "seeds")


def build_program(problem: problems.Problem, optimizer: str, static: Mapping[str, Any], steps: int,
                  log_every: int, dtype: str = "float32", unroll: int | None = None, curvature: bool = False,
                  mesh_axes: tuple[str, ...] = ()):
    """The pure function ``(hp_arrays: {name: (H,)}, seeds: uint32 (S,)) -> Outputs`` of a cell.

    Per logged step (``steps // log_every + 1`` of them, step 0 included) the full loss,
    full-gradient norm and cumulative oracle counts; per run the ``Tracker`` (first step at the
    target and its oracle counts, first step of divergence) and the end point's parameters.
    ``unroll``: steps per iteration of the step scan (default ``step_unroll(optimizer)``).
    ``curvature``: also measure the Hessian's extremes and index at each logged step
    (``bench.landscape.curvature``: a dense Hessian up to 64 parameters, else 20 Lanczos HVPs;
    measurements only, the trajectory is the same bits). Each step is ``make_step``'s.

    The program takes a third, optional argument: the problem's ``constants`` (``Problem.bind``),
    passed as arguments instead of embedded in the program (None: the captured ones).
    ``mesh_axes``: the device-mesh axes the program runs under (``jax.shard_map``, ``compile_cell``),
    added to the batch-wide reductions of a step (``_value_and_grad``), so they span every device.
    """
    tx = optimizers.get(optimizer, **static)
    unroll = step_unroll(optimizer) if unroll is None else unroll
    target = float(problem.reference.f_target)
    ref = reference_value(problem)
    f_ref = jnp.asarray(np.nan if ref is None else ref, dtype)
    taus = jnp.asarray(TAUS, dtype)
    escape = jnp.asarray(np.nan if (e := escape_threshold(problem)) is None else e, dtype)
    n_logs = steps // log_every
    fdtype = jnp.dtype(dtype)

    def make_one_run(problem, axis_name):
        """``one_run(hp, seed_key) -> Outputs`` of ``problem``, its steps under the vmap axes ``axis_name``."""
        step_fn = make_step(problem, tx, target, axis_name=axis_name)

        def measure(params):
            f, g = jax.value_and_grad(problem.full_loss)(params)
            return f, optax.tree.norm(g)

        return functools.partial(one_run, problem, step_fn, measure)

    def one_run(problem, step_fn, measure, hp, seed_key):
        k_init, k_run = jax.random.split(seed_key)
        params = _cast(problem.init(k_init), fdtype)
        state = optimizers.set_hparams(tx.init(params), **hp)

        def step(carry, t):
            return step_fn(carry, t, k_run), None

        def steps_of(i, carry):
            carry, _ = jax.lax.scan(step, carry, i * log_every + jnp.arange(log_every), unroll=unroll)
            return carry

        def interval(carry, i):
            # measure the full loss at t = i * log_every, then run the interval's steps (none
            # after the last measurement): one copy of the measurement in the program
            params, state, track = carry
            t = i * log_every
            f, g = measure(params)
            track = track._replace(
                blowup=jnp.where(i == 0, f + BLOWUP_FACTOR * jnp.maximum(1.0, jnp.abs(f)), track.blowup),
                targets=jnp.where(i == 0, jnp.append(f_ref + taus * (f - f_ref), escape), track.targets))
            track = track.hit(f, target, t, counts(state, track))  # stochastic losses: at log resolution
            track = track.diverge(~(jnp.isfinite(f) & (f <= track.blowup)), t)
            logged = (f, g, counts(state, track),
                      landscape.curvature(problem.full_loss, params, EIG_TOL) if curvature else None)
            carry = jax.lax.cond(i < n_logs, steps_of, lambda i, c: c, i, (params, state, track))
            return carry, logged

        carry = (params, state, Tracker.start(fdtype))
        (params, state, track), (fs, gs, cs, curv) = jax.lax.scan(interval, carry, jnp.arange(n_logs + 1))
        return Outputs(loss=fs, grad_norm=gs, counts=cs, hit_step=track.hit_step, hit_counts=track.hit_counts,
                       diverged_step=track.diverged_step, target_hit_step=track.target_hit_step,
                       target_hit_counts=track.target_hit_counts, params=params, curvature=curv)

    def program(hp, seeds, constants=None):
        prob = problem if constants is None else problem.bind(constants)
        keys = jax.vmap(jax.random.key)(seeds)  # one root key per seed
        over_seeds = jax.vmap(make_one_run(prob, _AXES + tuple(mesh_axes)), in_axes=(None, 0), axis_name=_AXES[1])
        return jax.vmap(over_seeds, in_axes=(0, None), axis_name=_AXES[0])(hp, keys)

    return program


# In-process cache of compiled cells: a second call with other hyperparameter values or seeds
# of the same shapes reuses the executable.
_COMPILED: dict[tuple, Any] = {}


def batch_devices(devices: int | None = None) -> list:
    """The local devices a cell's batch is sharded over: the first ``devices`` (default: all)."""
    local = jax.local_devices()
    if devices is None:
        return local
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= len(local):
        raise ValueError(f"devices must be an integer in [1, {len(local)}] (the local devices), got {devices!r}")
    return local[:devices]


MESH_AXES = ("hp_devices", "seed_devices")  # the device mesh's axes, over the program's batch axes _AXES


def mesh_shape(n_hp: int, n_seeds: int, n_devices: int) -> tuple[int, int]:
    """(devices along the hyperparameter axis, along the seed axis), their product ``n_devices``:
    the factorization that pads the batch least (each axis padded to a multiple of its devices),
    ties going to more devices on the seed axis."""
    best = None
    for d_hp in range(1, n_devices + 1):
        if n_devices % d_hp:
            continue
        d_seeds = n_devices // d_hp
        lanes = -(-n_hp // d_hp) * d_hp * (-(-n_seeds // d_seeds) * d_seeds)
        if best is None or lanes < best[0] or (lanes == best[0] and d_seeds > best[2]):
            best = (lanes, d_hp, d_seeds)
    return best[1], best[2]


class CellExecutable:
    """A cell's compiled program and how to call it: ``(hp_arrays: {name: (H,)}, seeds: (S,)) -> Outputs``.

    On one device the call is the compiled program's own, with the problem's ``constants`` (if any)
    as its third argument. On D > 1 devices the batch is sharded over a ``jax.sharding.Mesh`` of
    shape (D_hp, D_seeds) = ``mesh_shape(H, S, D)`` with axes ``MESH_AXES``: the hyperparameter arrays
    split over the first, the seeds over the second, the outputs over both (``NamedSharding(mesh,
    P(*MESH_AXES))``), the constants replicated; ``jax.shard_map`` runs ``build_program``'s program on
    each device's block, its batch-wide ``psum`` spanning the mesh too (``mesh_axes``). H and S
    are padded to multiples of D_hp and D_seeds with copies of the first point and seed: real runs,
    so the padding computes nothing undefined and, each being the twin of an existing run, changes
    no batch-wide decision (``_value_and_grad``'s ``psum``); the padded runs are dropped from the
    outputs, which come back as numpy arrays of axes (H, S). Each device runs the nested ``vmap``
    of one device on its block, yet XLA compiles the program of a multi-device mesh a little
    differently: the runs equal the one-device runs bit for bit in some programs (Adam on
    rosenbrock(dim=2)) and to float32 round-off in others (1-2 ulps from step 0 on; the block size is
    not the cause: one-device batches of 2 and 6 seeds agree bitwise; tests/bench/test_sharding.py). ``raw``
    returns the program's own (sharded, padded) outputs. Other attributes are the compiled program's
    (``cost_analysis``, ``as_text``, ...).
    """

    def __init__(self, compiled, constants, n_hp: int, n_seeds: int, mesh=None):
        self.compiled = compiled
        self.constants = constants
        self.n_hp, self.n_seeds, self.mesh = n_hp, n_seeds, mesh
        self.n_devices = 1 if mesh is None else mesh.size
        shape = (1, 1) if mesh is None else mesh.devices.shape
        self.padded = (-(-n_hp // shape[0]) * shape[0], -(-n_seeds // shape[1]) * shape[1])

    def __getattr__(self, name):
        return getattr(self.compiled, name)

    def pad(self, hp: Mapping[str, Any], seeds) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The program's inputs, padded with copies of the first point and the first seed."""

        def lay(x, n):
            x = np.asarray(x)
            return np.concatenate([x, np.repeat(x[:1], n - len(x))])

        return ({k: lay(np.asarray(v, np.float32), self.padded[0]) for k, v in hp.items()},
                lay(np.asarray(seeds, np.uint32), self.padded[1]))

    def raw(self, hp: Mapping[str, Any], seeds) -> Outputs:
        """The compiled program's outputs: on several devices sharded, with axes (padded H, padded S)."""
        if self.mesh is not None:
            hp, seeds = self.pad(hp, seeds)
            P = jax.sharding.PartitionSpec
            hp = jax.device_put(hp, jax.sharding.NamedSharding(self.mesh, P(MESH_AXES[0])))
            seeds = jax.device_put(seeds, jax.sharding.NamedSharding(self.mesh, P(MESH_AXES[1])))
        if self.constants is None:
            return self.compiled(hp, seeds)
        return self.compiled(hp, seeds, self.constants)

    def __call__(self, hp: Mapping[str, Any], seeds) -> Outputs:
        out = self.raw(hp, seeds)
        if self.mesh is None:
            return out
        return jax.tree_util.tree_map(lambda x: np.asarray(x)[:self.n_hp, :self.n_seeds], out)


def compile_cell(problem: problems.Problem, grid: Grid, steps: int, log_every: int, dtype: str,
                 n_seeds: int, curvature: bool = False, devices: int | None = None) -> tuple[Any, float, bool]:
    """The compiled program of a cell: (``CellExecutable``, compile seconds, whether it came from the cache).

    The problem's ``constants`` are arguments of the program, not part of it, so its size and compile
    time do not grow with theirs. ``devices``: how many local devices to shard the batch over
    (default all, ``batch_devices``); with one the program is ``build_program``'s as it always was.
    """
    optimizer = grid.optimizer
    devs = batch_devices(devices)
    # keyed by the problem object too: two Problems of one name (a re-initialized copy made with
    # dataclasses.replace) are different programs; the entry keeps its problem alive, so its id is not reused
    cache_key = (problem.name, id(problem), optimizer, tuple(sorted(grid.static.items())), steps, log_every, dtype,
                 tuple(grid.traced_names), len(grid.points), n_seeds, curvature, tuple(d.id for d in devs))
    if cache_key in _COMPILED:
        return _COMPILED[cache_key][1], 0.0, True
    n_hp = len(grid)
    constants = problem.constants
    if len(devs) == 1:
        program = build_program(problem, optimizer, grid.static, steps, log_every, dtype, curvature=curvature)
        mesh, jitted = None, jax.jit(program)
        shard = {"hp": None, "seeds": None, "constants": None}
        shape = (n_hp, n_seeds)
    else:
        # each device runs the one-device program on its block (shard_map, not the SPMD partitioner,
        # which would be free to split a contraction over devices and so change its rounding)
        program = build_program(problem, optimizer, grid.static, steps, log_every, dtype, curvature=curvature,
                                mesh_axes=MESH_AXES)
        d_hp, d_seeds = mesh_shape(n_hp, n_seeds, len(devs))
        mesh = jax.sharding.Mesh(np.asarray(devs).reshape(d_hp, d_seeds), MESH_AXES)
        P = jax.sharding.PartitionSpec
        specs = (P(MESH_AXES[0]), P(MESH_AXES[1])) + ((P(),) if constants is not None else ())
        shard = {"hp": jax.sharding.NamedSharding(mesh, specs[0]),
                 "seeds": jax.sharding.NamedSharding(mesh, specs[1]),
                 "constants": jax.sharding.NamedSharding(mesh, P())}
        jitted = jax.jit(jax.shard_map(program, mesh=mesh, in_specs=specs, out_specs=P(*MESH_AXES),
                                           check_vma=False))
        shape = (-(-n_hp // d_hp) * d_hp, -(-n_seeds // d_seeds) * d_seeds)
        if constants is not None:
            constants = jax.device_put(constants, shard["constants"])
    args = ({k: jax.ShapeDtypeStruct((shape[0],), np.float32, sharding=shard["hp"]) for k in grid.traced_names},
            jax.ShapeDtypeStruct((shape[1],), np.uint32, sharding=shard["seeds"]))
    if constants is not None:
        args = (*args, jax.tree_util.tree_map(
            lambda c: jax.ShapeDtypeStruct(c.shape, c.dtype, sharding=shard["constants"]), constants))
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile(compiler_options(optimizer))
    compile_s = time.perf_counter() - t0
    executable = CellExecutable(compiled, constants, n_hp, n_seeds, mesh)
    _COMPILED[cache_key] = (problem, executable)
    return executable, compile_s, False


def clear_caches() -> None:
    """Forget every compiled program of this process (cells and landscape)."""
    _COMPILED.clear()
    landscape.clear_cache()
