"""One compiled XLA program per (problem, optimizer) cell.

The program is ``vmap`` (hyperparameter points) of ``vmap`` (seeds) of a ``lax.scan`` over
log points: each measures the full loss and gradient norm, then (but after the last) runs a
``lax.scan`` over ``log_every`` optimizer steps. Hyperparameters are
traced arrays in the optimizer state (``optax.inject_hyperparams``), so a sweep of 100 learning
rates and 128 seeds is one compile. Compilation is done ahead of time
(``jit(...).lower(...).compile()``) so its cost is measured apart from the run.

PRNG discipline: one root key per seed, ``jax.random.key(seed)``, split once into an init key
and a run key; step ``t`` uses ``fold_in(run_key, t)`` split into a loss key (mini-batch / noise
of the objective) and an optimizer key (noise the optimizer draws). Same seed, same backend,
same bits.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import optimizers
import problems
from bench import landscape

# A run counts as diverged when its loss is non-finite or rises this far above the start.
BLOWUP_FACTOR = 1e6

STATUSES = (
    "converged",
    "diverged",
    "stalled_at_saddle",
    "stalled_at_minimum",
    "budget_exhausted",
)


@dataclasses.dataclass(frozen=True)
class Grid:
    """Hyperparameter points of a cell: static values shared by all, traced values per point."""

    static: dict[str, Any]
    points: list[dict[str, float]]

    @property
    def traced_names(self) -> list[str]:
        return sorted(self.points[0]) if self.points else []


def hparam_grid(optimizer: str, hparams: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Grid:
    """Expand ``hparams`` into hyperparameter points (defaults filled in, types checked).

    ``None`` is the defaults; a mapping whose values may be lists is a Cartesian product
    (``{"learning_rate": [1e-3, 1e-2], "b1": 0.9}`` is two points); a list of mappings is
    those points. Static hyperparameters (shapes, loop counts) must agree across points.
    """
    spec = optimizers.spec(optimizer)
    if hparams is None:
        raw_points: list[Mapping[str, Any]] = [{}]
    elif isinstance(hparams, Mapping):
        keys = list(hparams)
        values = [v if isinstance(v, (list, tuple, np.ndarray)) else [v] for v in hparams.values()]
        if any(len(v) == 0 for v in values):
            raise ValueError(f"{optimizer}: an empty list of hyperparameter values")
        raw_points = [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    else:
        raw_points = list(hparams)
        if not raw_points:
            raise ValueError(f"{optimizer}: an empty list of hyperparameter points")
    full = [optimizers.check_hparams(optimizer, p) for p in raw_points]
    static = {k: full[0][k] for k in spec.static}
    for p in full[1:]:
        for k in spec.static:
            if p[k] != static[k]:
                raise ValueError(
                    f"{optimizer}: static hyperparameter {k!r} varies across points "
                    f"({static[k]!r} vs {p[k]!r}); it fixes the program, so run one cell per value"
                )
    traced = [k for k in spec.traced if not isinstance(spec.defaults[k], bool)]
    bools = {k: full[0][k] for k in spec.traced if isinstance(spec.defaults[k], bool)}
    for p in full[1:]:
        for k in bools:
            if p[k] != bools[k]:
                raise ValueError(f"{optimizer}: boolean hyperparameter {k!r} varies across points")
    points = []
    for p in full:
        point = {}
        for k in traced:
            v = float(p[k])
            if not math.isfinite(v):
                raise ValueError(f"{optimizer}: hyperparameter {k!r} = {v} is not finite")
            point[k] = v
        points.append(point)
    return Grid(static={**static, **bools}, points=points)


def _finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _first_order(optimizer: str) -> bool:
    sp = optimizers.spec(optimizer)
    return not (sp.needs_hvp or sp.needs_value_fn)


def step_unroll(optimizer: str) -> int:
    """Steps per iteration of the inner ``lax.scan``: 2 for first-order methods, else 1.

    A first-order step is a handful of small kernels, so the loop's own per-iteration work
    (carry copies, the trip-count test) is a visible share of it: unrolling by 2 cut Adam on
    rosenbrock(dim=20) at 32 seeds by 10-15% on a 2-core CPU. A second-order step is dominated
    by its own inner loops (Lanczos, CG, line search), where unrolling only adds compile time.
    """
    return 2 if _first_order(optimizer) else 1


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
    if optimizer is not None and _first_order(optimizer):
        return {"xla_backend_optimization_level": 1}
    return {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


def build_program(problem: problems.Problem, optimizer: str, static: Mapping[str, Any], steps: int,
                  log_every: int, dtype: str = "float32", unroll: int | None = None):
    """The pure function ``(hp_arrays: {name: (H,)}, seeds: uint32 (S,)) -> outputs`` of a cell.

    Outputs are arrays of shape (H, S, ...): per logged step (``steps // log_every + 1`` of
    them, step 0 included) the full loss, full-gradient norm and cumulative oracle counts; per
    run the first step at the target, the oracle counts spent to get there, the first step of
    divergence, and the end point's parameters (see ``end_point_eigenvalues``).
    ``unroll``: steps per iteration of the step scan (default ``step_unroll(optimizer)``).
    """
    tx = optimizers.get(optimizer, **static)
    unroll = step_unroll(optimizer) if unroll is None else unroll
    target = float(problem.reference.f_target)
    n_logs = steps // log_every
    fdtype = jnp.dtype(dtype)
    exact_values = not problem.stochastic

    def counts(state, t):
        extra = optimizers.oracle_counts(state)
        # The runner spends one (mini-batch) value and gradient per step.
        return jnp.stack([t + extra["values"], t + extra["grads"], extra["hvps"]]).astype(jnp.int32)

    def measure(params):
        f, g = jax.value_and_grad(problem.full_loss)(params)
        return f, optax.tree.norm(g)

    def one_run(hp, seed_key):
        k_init, k_run = jax.random.split(seed_key)
        params = _cast(problem.init(k_init), fdtype)
        state = tx.init(params)
        state = state._replace(hyperparams={**state.hyperparams, **hp})
        no = jnp.int32(-1)
        # tracking: first step at target (-1: never), its oracle counts, first diverged step,
        # and the divergence threshold (set from the loss at step 0)
        track0 = (no, jnp.zeros(3, jnp.int32), no, jnp.zeros((), fdtype))

        def step(carry, t):
            params, state, (hit, hit_counts, bad, blowup) = carry
            key = jax.random.fold_in(k_run, t)
            k_loss, k_opt = jax.random.split(key)

            def value_fn(p):
                return problem.loss(p, k_loss)

            value, grads = jax.value_and_grad(value_fn)(params)
            if exact_values:  # the loss is the full loss: the target check is exact, per step
                now = (hit < 0) & (value <= target)
                hit = jnp.where(now, t, hit)
                hit_counts = jnp.where(now, counts(state, t), hit_counts)
            is_bad = ~jnp.isfinite(value) | (value > blowup)
            bad = jnp.where((bad < 0) & is_bad, t, bad)
            updates, state = tx.update(grads, state, params, value=value, value_fn=value_fn, key=k_opt)
            params = problem.retract(optax.apply_updates(params, updates))
            return (params, state, (hit, hit_counts, bad, blowup)), None

        def steps_of(i, carry):
            carry, _ = jax.lax.scan(step, carry, i * log_every + jnp.arange(log_every), unroll=unroll)
            return carry

        def interval(carry, i):
            # measure the full loss at t = i * log_every, then run the interval's steps (none
            # after the last measurement): one copy of the measurement in the program
            params, state, (hit, hit_counts, bad, blowup) = carry
            t = i * log_every
            f, g = measure(params)
            blowup = jnp.where(i == 0, f + BLOWUP_FACTOR * jnp.maximum(1.0, jnp.abs(f)), blowup)
            now = (hit < 0) & (f <= target)  # stochastic losses: the target at log resolution
            hit = jnp.where(now, t, hit)
            hit_counts = jnp.where(now, counts(state, t), hit_counts)
            bad = jnp.where((bad < 0) & ~(jnp.isfinite(f) & (f <= blowup)), t, bad)
            logged = (f, g, counts(state, t))
            carry = (params, state, (hit, hit_counts, bad, blowup))
            carry = jax.lax.cond(i < n_logs, steps_of, lambda i, c: c, i, carry)
            return carry, logged

        carry = (params, state, track0)
        carry, (fs, gs, cs) = jax.lax.scan(interval, carry, jnp.arange(n_logs + 1))
        params, state, (hit, hit_counts, bad, _) = carry
        return {
            "loss": fs, "grad_norm": gs, "counts": cs, "hit_step": hit, "hit_counts": hit_counts,
            "diverged_step": bad, "params": params,
        }

    def program(hp, seeds):
        keys = jax.vmap(jax.random.key)(seeds)  # one root key per seed
        over_seeds = jax.vmap(one_run, in_axes=(None, 0))
        return jax.vmap(over_seeds, in_axes=(0, None))(hp, keys)

    return program


# In-process cache of compiled cells: a second call with other hyperparameter values or seeds
# of the same shapes reuses the executable.
_COMPILED: dict[tuple, Any] = {}


def _compiled(problem, optimizer, grid: Grid, steps, log_every, dtype, hp_arrays, keys):
    cache_key = (problem.name, optimizer, tuple(sorted(grid.static.items())), steps, log_every, dtype,
                 tuple(grid.traced_names), len(grid.points), keys.shape[0])
    if cache_key in _COMPILED:
        return _COMPILED[cache_key], 0.0, True
    program = build_program(problem, optimizer, grid.static, steps, log_every, dtype)
    t0 = time.perf_counter()
    compiled = jax.jit(program).lower(hp_arrays, keys).compile(compiler_options(optimizer))
    compile_s = time.perf_counter() - t0
    _COMPILED[cache_key] = compiled
    return compiled, compile_s, False


_LANDSCAPE: dict[tuple, Any] = {}

# End points go through the landscape program in chunks of this many runs, so one compiled
# program per problem serves every cell of it, whatever its number of seeds and grid points.
LANDSCAPE_CHUNK = 16


def _landscape_program(problem: problems.Problem, leaves: list[np.ndarray], treedef):
    cache_key = (problem.name, treedef, tuple((x.shape[1:], str(x.dtype)) for x in leaves))
    if cache_key not in _LANDSCAPE:
        chunk = jax.tree_util.tree_unflatten(
            treedef, [jax.ShapeDtypeStruct((LANDSCAPE_CHUNK,) + x.shape[1:], x.dtype) for x in leaves])
        fn = jax.vmap(lambda p: landscape.extreme_eigenvalues(problem.full_loss, p))
        _LANDSCAPE[cache_key] = jax.jit(fn).lower(chunk).compile(compiler_options())
    return _LANDSCAPE[cache_key]


def _dispatch_eigenvalues(problem: problems.Problem, params):
    """Start the end-point eigenvalue program; returns a function that waits for its results.

    JAX dispatches asynchronously, so the caller builds its tables while the Lanczos runs.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    lead = leaves[0].shape[:2]
    n = lead[0] * lead[1]
    flat = [np.asarray(x).reshape((n,) + x.shape[2:]) for x in leaves]
    pad = -n % LANDSCAPE_CHUNK
    if pad:  # repeat the last end point; its copies are computed and dropped
        flat = [np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) for x in flat]
    program = _landscape_program(problem, flat, treedef)
    outs = [program(jax.tree_util.tree_unflatten(treedef, [x[i:i + LANDSCAPE_CHUNK] for x in flat]))
            for i in range(0, n + pad, LANDSCAPE_CHUNK)]

    def wait() -> tuple[np.ndarray, np.ndarray]:
        lo = np.concatenate([np.asarray(o[0]) for o in outs])[:n].reshape(lead)
        hi = np.concatenate([np.asarray(o[1]) for o in outs])[:n].reshape(lead)
        return lo, hi

    return wait


def end_point_eigenvalues(problem: problems.Problem, params) -> tuple[np.ndarray, np.ndarray]:
    """Extreme Hessian eigenvalues of ``full_loss`` at a batch of end points (leading axes H, S).

    A program of its own, compiled once per problem (end points go through it
    ``LANDSCAPE_CHUNK`` at a time) rather than once per cell: every cell of a problem shares it.
    """
    return _dispatch_eigenvalues(problem, params)()


def seed_array(seeds: int | Sequence[int]) -> tuple[list[int], np.ndarray]:
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("need at least one seed")
    if min(seed_list) < 0 or max(seed_list) >= 2**32:
        raise ValueError("seeds must be in [0, 2**32)")
    return seed_list, np.asarray(seed_list, np.uint32)


def run_cell(
    problem: problems.Problem | str,
    optimizer: str,
    hparams: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    seeds: int | Sequence[int] = 8,
    steps: int = 1000,
    log_every: int = 10,
    dtype: str = "float32",
) -> pd.DataFrame:
    """Run one (problem, optimizer) cell over seeds and hyperparameter points.

    Args:
      problem: a ``problems.Problem`` or a problem name (``"rosenbrock(dim=5)"``).
      optimizer: a registered optimizer name.
      hparams: ``None`` (defaults), a mapping (list values form a Cartesian grid), or a list
        of mappings; see ``hparam_grid``.
      seeds: a count (seeds 0..S-1) or an explicit list of seeds.
      steps: optimizer steps per run; a multiple of ``log_every``.
      log_every: steps between logged measurements.
      dtype: ``"float32"`` (default) or ``"float64"`` (needs ``jax_enable_x64``).

    Returns:
      A tidy DataFrame, one row per (hyperparameter point, seed, logged step), with the
      logged measurements and, repeated on each row of a run, the run's summary (see
      ``summarize``). Failures (NaN, blow-up) are rows with status ``diverged``, not errors.
    """
    if isinstance(problem, str):
        problem = problems.get(problem)
    optimizers.spec(optimizer)  # unknown names fail here, before any work
    if not isinstance(steps, int) or not isinstance(log_every, int) or steps < 1 or log_every < 1:
        raise ValueError(f"steps and log_every must be positive integers, got {steps!r}, {log_every!r}")
    if steps % log_every:
        raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every})")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    grid = hparam_grid(optimizer, hparams)
    seed_list, keys = seed_array(seeds)
    names = grid.traced_names
    hp_arrays = {k: np.asarray([p[k] for p in grid.points], np.float32) for k in names}

    compiled, compile_s, cached = _compiled(problem, optimizer, grid, steps, log_every, dtype, hp_arrays, keys)
    t0 = time.perf_counter()
    out = jax.tree_util.tree_map(np.asarray, compiled(hp_arrays, keys))  # waits for the program
    cell_run_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    eigenvalues = _dispatch_eigenvalues(problem, out.pop("params"))  # runs while the frame is built
    return _to_frame(problem, optimizer, grid, seed_list, steps, log_every, dtype, out, eigenvalues,
                     compile_s=compile_s, compile_cached=cached, cell_run_s=cell_run_s, landscape_t0=t0)


def _classify(final_loss, final_grad, diverged, lam_min, lam_max, target):
    """Status of a run from its end point (vectorized over runs)."""
    scale = np.maximum(1.0, np.abs(lam_max))
    flat = final_grad <= GRAD_TOL
    negative = lam_min < -EIG_TOL * scale
    status = np.full(final_loss.shape, "budget_exhausted", dtype=object)
    status[flat & negative] = "stalled_at_saddle"
    status[flat & ~negative] = "stalled_at_minimum"
    status[final_loss <= target] = "converged"
    status[diverged] = "diverged"
    return status


# End-point classification thresholds: a run has stalled when its full-gradient norm is at
# most GRAD_TOL; the end point is a saddle when lambda_min < -EIG_TOL * max(1, |lambda_max|).
GRAD_TOL = 1e-3
EIG_TOL = 1e-3


def _to_frame(problem, optimizer, grid, seed_list, steps, log_every, dtype, out, eigenvalues, *, compile_s,
              compile_cached, cell_run_s, landscape_t0) -> pd.DataFrame:
    H, S, L = out["loss"].shape
    ref = problem.reference
    n_runs = H * S
    n_rows = n_runs * L
    hp_idx = np.repeat(np.arange(H), S * L)

    def per_run(v):  # a run-level value, repeated on each logged row of the run
        return np.repeat(np.asarray(v).reshape(n_runs), L)

    frame = {
        "problem": _const(problem.name, n_rows),
        "family": _const(problem.family, n_rows),
        "dim": _const(problem.dim, n_rows),
        "optimizer": _const(optimizer, n_rows),
        "hp_index": hp_idx,
    }
    for k in grid.traced_names:
        frame[f"hp_{k}"] = np.asarray([p[k] for p in grid.points], np.float64)[hp_idx]
    for k, v in grid.static.items():
        frame[f"hp_{k}"] = _const(v, n_rows)
    counts = out["counts"].astype(np.int64)
    frame.update({
        "seed": np.tile(np.repeat(np.asarray(seed_list, np.int64), L), H),
        "step": np.tile(np.arange(L, dtype=np.int64) * log_every, n_runs),
        "loss": out["loss"].ravel().astype(np.float64),
        "grad_norm": out["grad_norm"].ravel().astype(np.float64),
        "n_values": counts[..., 0].ravel(),
        "n_grads": counts[..., 1].ravel(),
        "n_hvps": counts[..., 2].ravel(),
    })
    final_loss = out["loss"][..., -1].astype(np.float64)
    final_grad = out["grad_norm"][..., -1].astype(np.float64)
    diverged = (out["diverged_step"] >= 0) | ~np.isfinite(final_loss)
    hit = out["hit_step"].astype(np.int64)
    reached = hit >= 0
    hit_counts = out["hit_counts"].astype(np.int64)
    run = {
        "final_loss": final_loss,
        "final_grad_norm": final_grad,
        "final_gap": final_loss - ref.f_star if ref.f_star is not None else np.full_like(final_loss, np.nan),
        "hit_step": np.where(reached, hit, -1),
        "hit_values": np.where(reached, hit_counts[..., 0], -1),
        "hit_grads": np.where(reached, hit_counts[..., 1], -1),
        "hit_hvps": np.where(reached, hit_counts[..., 2], -1),
        "diverged_step": out["diverged_step"].astype(np.int64),
    }
    for k, v in run.items():
        frame[k] = per_run(v)
    lam_min, lam_max = eigenvalues()  # the landscape program ran while the columns above were built
    landscape_s = time.perf_counter() - landscape_t0
    frame["final_lambda_min"] = per_run(lam_min.astype(np.float64))
    frame["final_lambda_max"] = per_run(lam_max.astype(np.float64))
    status = _classify(final_loss, final_grad, diverged, lam_min, lam_max, ref.f_target)
    codes = np.searchsorted(_STATUS_SORTED, status.reshape(n_runs))
    frame["status"] = pd.Categorical.from_codes(per_run(_STATUS_CODE[codes]), dtype=_STATUS_DTYPE, validate=False)
    frame.update({
        "f_star": _const(np.nan if ref.f_star is None else float(ref.f_star), n_rows),
        "f_target": _const(float(ref.f_target), n_rows),
        "steps": _const(steps, n_rows),
        "log_every": _const(log_every, n_rows),
        "dtype": _const(dtype, n_rows),
        "compile_s": _const(compile_s, n_rows),
        "compile_cached": _const(compile_cached, n_rows),
        "cell_run_s": _const(cell_run_s, n_rows),
        "landscape_s": _const(landscape_s, n_rows),
        # one compiled program runs every run of the cell at once: its wall time, shared
        "run_s": _const(cell_run_s / n_runs, n_rows),
    })
    return pd.DataFrame(frame, copy=False)


_STATUS_DTYPE = pd.CategoricalDtype(list(STATUSES))
_STATUS_SORTED = np.asarray(sorted(STATUSES), dtype=object)
_STATUS_CODE = np.asarray([STATUSES.index(x) for x in sorted(STATUSES)], np.int8)


@functools.lru_cache(maxsize=256)
def _one_category(value: str) -> pd.CategoricalDtype:
    return pd.CategoricalDtype([value])


def _const(value, n: int):
    """A constant column; strings as a one-category Categorical (cheap to build and to store)."""
    if isinstance(value, str):
        return pd.Categorical.from_codes(np.zeros(n, np.int8), dtype=_one_category(value), validate=False)
    return np.full(n, value)


RUN_COLUMNS = [
    "problem", "family", "dim", "optimizer", "hp_index", "seed", "final_loss", "final_grad_norm",
    "final_gap", "hit_step", "hit_values", "hit_grads", "hit_hvps", "diverged_step",
    "final_lambda_min", "final_lambda_max", "status", "f_star", "f_target", "steps", "run_s",
]


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (hyperparameter point x seed) from a ``run_cell`` frame."""
    hp_cols = [c for c in df.columns if c.startswith("hp_") and c != "hp_index"]
    cols = [c for c in RUN_COLUMNS if c in df.columns] + hp_cols
    last = df.loc[df["step"].to_numpy() == df["steps"].to_numpy(), cols]  # every run logs its last step
    return last.sort_values(["problem", "optimizer", "hp_index", "seed"]).reset_index(drop=True)
