"""Pictures of the way: where each optimizer's median run went, and what the loss looks like there.

Three figures, each from a re-run of one stored run. The runner keeps logged losses and end-point
statistics, not trajectories, so each picture re-runs the run it shows: the (problem, optimizer,
hyperparameter point, seed) of the *median-seed run* of a leaderboard row, i.e. the held-out run,
at the hyperparameter point the leaderboard chose, whose final loss is the median of that cell's
held-out runs at that point (the lower median for an even count; a non-finite final loss sorts
last). The re-run (``rerun``) is the benchmark's own step (``bench.program.make_step``) under the
runner's PRNG discipline and compiler options, in a ``lax.scan`` that records the parameters every
``every`` steps; ``tests/bench/test_pictures.py`` checks that its full loss at the logged steps is
the stored ``loss`` column of that run, to float32 round-off, so a picture shows the benchmark's run.

``paths_figure`` (2-D problems only): contours of ``full_loss`` (log-spaced levels of f - f* where
the loss spans decades) with each optimizer's median-seed trajectory, its start and end, and the
problem's known saddles (``problem.saddles``) and global minima (``KNOWN_MINIMA``, whose value is
``problem.reference.f_star``) marked.

``line_figure`` (every problem): the loss along the straight line from a run's start x0 to its end
x1, f((1 - a) x0 + a x1) for a in [-0.25, 1.25], one line per optimizer (Goodfellow, Vinyals and
Saxe 2015, "Qualitatively characterizing neural network optimization problems", ICLR): a loss that
falls monotonically along the line says that the start and the end are joined by a simple descent
path, a bump that the run went around a barrier. On a log scale of f - f* where the loss spans
decades.

``slice_figure`` (the ReLU MLP, family ``relu_mlp``): f(x1 + a d1 + b d2) on a grid of (a, b) in
[-1, 1]^2 around a run's end point x1, with d1, d2 random Gaussian directions *filter-normalised*
(Li, Xu, Taylor, Studer and Goldstein 2018, "Visualizing the loss landscape of neural nets",
NeurIPS, Section 4): each filter of a direction is rescaled to the norm of the corresponding filter
of x1, so that the picture does not depend on the scale invariance of ReLU layers and slices of
different end points are comparable. A *filter* of a dense kernel is the weight vector of one
output unit: in flax's (d_in, d_out) layout a column (a row of PyTorch's (d_out, d_in) weight, the
layout of the paper's code); generally the slice along the last axis of any leaf of two or more
dimensions. Biases (and other leaves of under two dimensions) get a zero direction by default, as
the paper does ("we do not perturb bias parameters": its code's ``ignore='biasbn'``);
``bias="filter"`` makes each bias entry its own filter instead. One panel per optimizer (the best
ranked ones), on one colour scale.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import re
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import optimizers  # noqa: E402
import problems  # noqa: E402
from bench import grid as grids  # noqa: E402
from bench import program  # noqa: E402
from bench import schema as S  # noqa: E402

# Global minimizers of the 2-D families, from the closed forms in each problem's module docstring;
# ``tests/bench/test_pictures.py`` checks that full_loss there is the problem's f*.
KNOWN_MINIMA: dict[str, tuple[tuple[float, float], ...]] = {
    "strict_saddle": ((0.0, 1.0), (0.0, -1.0)),  # x^2 + y^4/4 - y^2/2: f* = -1/4
    "monkey_saddle": ((-0.75, 0.0), (0.375, 0.375 * math.sqrt(3.0)), (0.375, -0.375 * math.sqrt(3.0))),  # -27/256
    "degenerate_saddle": ((0.0, -0.75),),  # x^2 + y^3 + y^4: f* = -27/256
    "rosenbrock": ((1.0, 1.0),),  # at dim = 2: f* = 0
}

LINE_ALPHAS = np.arange(-10, 51) / 40.0  # a in [-0.25, 1.25] in steps of 1/40; holds 0 and 1 exactly
SLICE_FAMILIES = ("relu_mlp",)
MAX_RECORDS = 2000  # recorded points of a 2-D trajectory (every step up to this budget)
_DPI = 120


# --- which run ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MedianRun:
    """The median-seed held-out run of one leaderboard row, and what it takes to run it again.

    Attributes:
      problem, optimizer: the cell.
      hp_index: the hyperparameter point the leaderboard chose.
      hparams: that point's hyperparameters (the optimizer's own, as stored).
      seed: the run's seed.
      steps, log_every, dtype: the cell's budget, log interval and float type.
      final_loss, status: how the stored run ended.
      rank: the row's position among its problem's rows in the leaderboard (0: best).
    """

    problem: str
    optimizer: str
    hp_index: int
    hparams: dict[str, Any]
    seed: int
    steps: int
    log_every: int
    dtype: str
    final_loss: float
    status: str
    rank: int


def _own_hparams(optimizer: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's hyperparameters from a run row's ``hp_<name>`` columns, typed as its spec
    types them (a frame that mixes optimizers holds their columns as floats or objects)."""
    spec = optimizers.spec(optimizer)
    out = {}
    for name, default in spec.defaults.items():
        v = row.get(S.HP_PREFIX + name)
        if v is None or (np.ndim(v) == 0 and pd.isna(v)):
            continue
        if isinstance(default, bool):
            v = bool(v)
        elif isinstance(default, int) and name in spec.static:
            v = int(v)
        elif isinstance(default, (int, float)):
            v = float(v)
        out[name] = v
    return out


def median_runs(df: pd.DataFrame, tab: pd.DataFrame) -> list[MedianRun]:
    """Per leaderboard row (``leaderboard.build(df)[0]``), its median-seed held-out run.

    The held-out runs are those with ``tuning`` false at the row's ``hp_index`` (a frame without
    the ``tuning`` column: the leaderboard's own split, ``leaderboard.selection``); the median run
    is the one whose final loss is the lower median of theirs (NaN sorts last).
    """
    if tab.empty or df.empty:
        return []
    runs = S.summarize(df)
    cell_cols = [S.PROBLEM, S.OPTIMIZER, S.STEPS]
    consts = (df[cell_cols + [S.LOG_EVERY, S.DTYPE]].astype({S.PROBLEM: str, S.OPTIMIZER: str})
              .drop_duplicates(cell_cols).set_index(cell_cols))
    held_out = None
    if S.TUNING not in runs or runs[S.TUNING].isna().any():
        from bench.reports.leaderboard import selection

        held_out = {k: v[1] for k, v in selection(runs).items()}
    out = []
    for problem, rows in tab.groupby("problem", sort=False):
        for rank, (_, r) in enumerate(rows.iterrows()):
            optimizer, steps, hp = str(r["optimizer"]), int(r["steps_budget"]), int(r[S.HP_INDEX])
            if optimizer not in optimizers.names():  # a stored cell of an optimizer no longer registered
                continue
            g = runs[(runs[S.PROBLEM] == problem) & (runs[S.OPTIMIZER] == optimizer) & (runs[S.STEPS] == steps)
                     & (runs[S.HP_INDEX] == hp)]
            if held_out is None:
                g = g[~g[S.TUNING].to_numpy(bool)]
            else:
                g = g[g[S.SEED].isin(held_out[(problem, optimizer, steps)])]
            if g.empty:
                continue
            final = g[S.FINAL_LOSS].to_numpy(np.float64)
            order = np.argsort(np.where(np.isfinite(final), final, np.inf), kind="stable")
            m = g.iloc[int(order[(len(order) - 1) // 2])]
            c = consts.loc[(problem, optimizer, steps)]
            out.append(MedianRun(problem=problem, optimizer=optimizer, hp_index=hp,
                                 hparams=_own_hparams(optimizer, m.to_dict()), seed=int(m[S.SEED]), steps=steps,
                                 log_every=int(c[S.LOG_EVERY]), dtype=str(c[S.DTYPE]),
                                 final_loss=float(m[S.FINAL_LOSS]), status=str(m[S.STATUS]), rank=rank))
    return out


# --- the re-run -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Recorded points of one re-run.

    Attributes:
      steps: int (R,), the step at which each point was recorded (before that step's update;
        the last is the budget, the end point).
      params: the parameters at those steps, a pytree with leading axis R.
      loss: float (R,), ``full_loss`` at those points.
    """

    steps: np.ndarray
    params: Any
    loss: np.ndarray

    def point(self, i: int) -> Any:
        """The parameters of record ``i`` (negative: from the end)."""
        return jax.tree_util.tree_map(lambda a: a[i], self.params)

    @property
    def start(self) -> Any:
        return self.point(0)

    @property
    def end(self) -> Any:
        return self.point(-1)


_RERUNS: dict[tuple, Any] = {}


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _compiled_rerun(problem: problems.Problem, optimizer: str, static: Mapping[str, Any], traced: Sequence[str],
                    steps: int, every: int, dtype: str):
    key = (problem.name, optimizer, tuple(sorted(static.items())), tuple(traced), steps, every, dtype)
    if key in _RERUNS:
        return _RERUNS[key]
    tx = optimizers.get(optimizer, **static)
    step_fn = program.make_step(problem, tx, target=None)
    unroll = program.step_unroll(optimizer)
    n_int, rem = divmod(steps, every)
    fdtype = jnp.dtype(dtype)

    def run(hp, seed):
        k_init, k_run = jax.random.split(jax.random.key(seed))  # the runner's keys (bench.program)
        params = _cast(problem.init(k_init), fdtype)
        state = optimizers.set_hparams(tx.init(params), **hp)
        carry = (params, state, program.Tracker.start(fdtype))

        def step(c, t):
            return step_fn(c, t, k_run), None

        def interval(c, i):
            here = c[0]
            c, _ = jax.lax.scan(step, c, i * every + jnp.arange(every), unroll=unroll)
            return c, (here, problem.full_loss(here))

        carry, (ps, fs) = jax.lax.scan(interval, carry, jnp.arange(n_int))
        if rem:
            carry, _ = jax.lax.scan(step, carry, n_int * every + jnp.arange(rem), unroll=unroll)
        last = carry[0]
        ps = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), ps, last)
        return ps, jnp.append(fs, problem.full_loss(last))

    hp_spec = {k: jax.ShapeDtypeStruct((), np.float32) for k in traced}
    compiled = jax.jit(run).lower(hp_spec, jax.ShapeDtypeStruct((), np.uint32)).compile(
        program.compiler_options(optimizer))
    _RERUNS[key] = compiled
    return compiled


def rerun(problem: problems.Problem | str, optimizer: str, hparams: Mapping[str, Any] | None, seed: int,
          steps: int, every: int, dtype: str = "float32") -> Trajectory:
    """Run one (problem, optimizer, hyperparameters, seed) again, recording its parameters.

    Exactly the benchmark's run: ``k_init, k_run = split(key(seed))``, params = ``problem.init(k_init)``,
    the optimizer built as the runner builds it (static hyperparameters in ``optimizers.get``,
    traced ones set as float32 scalars with ``optimizers.set_hparams``), ``steps`` steps of
    ``bench.program.make_step``, compiled with the runner's options. The parameters (and their
    full loss) are recorded at steps 0, ``every``, 2 ``every``, ... and at ``steps``. One compile per
    (problem, optimizer, static hyperparameters, steps, every): other seeds and traced values reuse it.
    """
    if isinstance(problem, str):
        problem = problems.get(problem)
    if not (isinstance(every, int) and isinstance(steps, int) and 1 <= every and steps >= 0):
        raise ValueError(f"need integers steps >= 0 and every >= 1, got {steps!r}, {every!r}")
    g = grids.expand(optimizer, dict(hparams or {}))
    fn = _compiled_rerun(problem, optimizer, g.static, g.traced_names, steps, every, dtype)
    hp = {k: np.float32(v) for k, v in g.points[0].items()}
    ps, fs = fn(hp, np.uint32(seed))
    n_int = steps // every
    at = np.append(np.arange(n_int) * every, steps)
    return Trajectory(at, jax.tree_util.tree_map(np.asarray, ps), np.asarray(fs))


def record_every(run: MedianRun, dim: int) -> int:
    """Steps between recorded points of a re-run for the pictures: every step for a 2-D problem
    (its path is drawn) of at most ``MAX_RECORDS`` steps, else the cell's log interval (whose
    points the runner logged, so the re-run can be checked against them)."""
    return 1 if dim == 2 and run.steps <= MAX_RECORDS else run.log_every


def rerun_median(run: MedianRun, every: int | None = None) -> Trajectory:
    """``rerun`` of a ``MedianRun`` (``every``: default the cell's log interval)."""
    every = run.log_every if every is None else every
    return rerun(run.problem, run.optimizer, run.hparams, run.seed, run.steps, max(1, every), run.dtype)


def check_against_store(run: MedianRun, traj: Trajectory, df: pd.DataFrame, rtol: float = 1e-5) -> bool:
    """Whether the re-run's full loss at the logged steps is the stored ``loss`` of the run (to
    float32 round-off): the picture then shows the benchmark's run. False when the stored run
    cannot be reproduced (code changed since it was stored) or its rows are missing."""
    stored = df[(df[S.PROBLEM] == run.problem) & (df[S.OPTIMIZER] == run.optimizer) & (df[S.STEPS] == run.steps)
                & (df[S.HP_INDEX] == run.hp_index) & (df[S.SEED] == run.seed)]
    at = dict(zip(traj.steps.tolist(), traj.loss.tolist()))
    steps, losses = stored[S.STEP].to_numpy(), stored[S.LOSS].to_numpy(np.float64)
    if len(steps) == 0 or not all(int(t) in at for t in steps):
        return False
    mine = np.asarray([at[int(t)] for t in steps], np.float64)
    return bool(np.allclose(mine, losses, rtol=rtol, atol=rtol * max(1.0, float(np.nanmax(np.abs(losses)))),
                            equal_nan=True))


# --- the line from start to end (Goodfellow et al. 2015) -----------------------------------

_LINES: dict[str, Any] = {}


def line_losses(problem: problems.Problem, x0: Any, x1: Any, alphas: Sequence[float] = LINE_ALPHAS) -> np.ndarray:
    """f((1 - a) x0 + a x1) for each a in ``alphas``: the linear path of Goodfellow, Vinyals and
    Saxe 2015. ``(1 - a) x0 + a x1`` is x0 exactly at a = 0 and x1 at a = 1 (finite points), and
    the points are evaluated one at a time (``lax.map``, not ``vmap``: a batched matmul rounds
    differently), so those two values are ``full_loss(x0)`` and ``full_loss(x1)`` bit for bit."""
    if problem.name not in _LINES:
        def along(x0, x1, a):
            def f(a):
                return problem.full_loss(jax.tree_util.tree_map(lambda u, v: (1 - a) * u + a * v, x0, x1))
            return jax.lax.map(f, a)

        _LINES[problem.name] = jax.jit(along)
    dtype = jax.tree_util.tree_leaves(x0)[0].dtype
    return np.asarray(_LINES[problem.name](x0, x1, jnp.asarray(alphas, dtype)))


# --- filter-normalised directions and the slice (Li et al. 2018) ---------------------------

@functools.partial(jax.jit, static_argnames="bias")
def filter_normalized_direction(key: jax.Array, params: Any, bias: str = "zero") -> Any:
    """A random direction shaped like ``params``, filter-normalised as in Li et al. 2018 (Sec. 4).

    d ~ N(0, I); for every leaf of two or more dimensions each filter (the slice along the last
    axis: one output unit of a flax kernel) is rescaled, d_f <- d_f / |d_f| * |theta_f|. Leaves of
    under two dimensions (biases): ``bias="zero"`` (the paper's choice) gives them a zero direction;
    ``bias="filter"`` treats each entry as its own filter, d_j <- sign(d_j) |theta_j|.
    """
    if bias not in ("zero", "filter"):
        raise ValueError(f"bias must be 'zero' or 'filter', got {bias!r}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, theta in zip(keys, leaves):
        theta = jnp.asarray(theta)
        d = jax.random.normal(k, theta.shape, theta.dtype)
        if theta.ndim >= 2:
            axes = tuple(range(theta.ndim - 1))
            scale = jnp.linalg.norm(theta, axis=axes, keepdims=True) / jnp.linalg.norm(d, axis=axes, keepdims=True)
            out.append(d * scale)
        elif bias == "zero":
            out.append(jnp.zeros_like(theta))
        else:
            out.append(jnp.sign(d) * jnp.abs(theta))
    return jax.tree_util.tree_unflatten(treedef, out)


_SLICES: dict[str, Any] = {}


def loss_slice(problem: problems.Problem, center: Any, d1: Any, d2: Any, alphas: Sequence[float],
               betas: Sequence[float]) -> np.ndarray:
    """full_loss(center + a d1 + b d2) on the grid, shape (len(betas), len(alphas)): ``vmap`` over a
    row of a, ``lax.map`` over the rows (one row's batch in memory at a time), one ``jit``."""
    if problem.name not in _SLICES:
        def grid(center, d1, d2, a, b):
            def f(a, b):
                return problem.full_loss(jax.tree_util.tree_map(lambda c, u, v: c + a * u + b * v, center, d1, d2))

            return jax.lax.map(lambda b: jax.vmap(lambda a: f(a, b))(a), b)

        _SLICES[problem.name] = jax.jit(grid)
    dtype = jax.tree_util.tree_leaves(center)[0].dtype
    return np.asarray(_SLICES[problem.name](center, d1, d2, jnp.asarray(alphas, dtype), jnp.asarray(betas, dtype)))


# --- figures --------------------------------------------------------------------------------

def _palette(names: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _dashes(names: Sequence[str]) -> dict[str, str]:
    """A line style per optimizer, cycling, so that coinciding curves stay visible under each other."""
    return {n: ("-", "--", "-.")[i % 3] for i, n in enumerate(names)}


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(run: MedianRun) -> str:
    return f"{run.optimizer} ({run.status.replace('_', ' ')}, seed {run.seed})"


def _log_levels(lo: float, hi: float, n: int = 16) -> np.ndarray:
    return np.logspace(math.log10(lo), math.log10(hi), n)


def paths_figure(problem: problems.Problem, runs: Sequence[MedianRun], trajectories: Sequence[Trajectory],
                 path: str | pathlib.Path, grid_points: int = 301) -> pathlib.Path:
    """Contours of a 2-D problem's full loss with each optimizer's median-seed trajectory.

    Levels are log-spaced in f - f* (the known optimum; else f - min over the frame) where that
    spans more than two decades, else linear in f. Trajectories leaving the frame (divergence) are
    clipped; the frame holds every start, every finite end point near the rest, and the known
    saddles and minima. Where the runs start near a known saddle, an inset zooms on their escape
    (``_saddle_zoom``).
    """
    if problem.dim != 2:
        raise ValueError(f"paths_figure needs a 2-D problem, got {problem.name} (dim {problem.dim})")
    pts = [np.asarray(jax.tree_util.tree_leaves(t.params)[0], np.float64).reshape(len(t.steps), 2)
           for t in trajectories]
    minima = np.asarray(KNOWN_MINIMA.get(problem.family, ()), np.float64).reshape(-1, 2)
    saddles = [(np.asarray(s.point, np.float64).reshape(2), s) for s in problem.saddles]
    anchors = [p[0] for p in pts] + list(minima) + [s for s, _ in saddles]
    anchors = np.asarray(anchors).reshape(-1, 2)
    span = max(float(np.ptp(anchors, axis=0).max()) if len(anchors) > 1 else 1.0, 1e-3)
    centre = anchors.mean(axis=0)
    near = [p[np.all(np.isfinite(p), axis=1) & np.all(np.abs(p - centre) <= 5 * span, axis=1)] for p in pts]
    allpts = np.concatenate([anchors] + near)
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    # neither axis under half the other's span (a path along one axis is not drawn as a wall), 10% margin
    half = np.maximum(hi - lo, 0.5 * max(float(np.max(hi - lo)), 1e-3)) / 2 * 1.1
    mid = (lo + hi) / 2
    lo, hi = mid - half, mid + half
    xs, ys = np.linspace(lo[0], hi[0], grid_points), np.linspace(lo[1], hi[1], grid_points)
    X, Y = np.meshgrid(xs, ys)
    f = jax.jit(jax.vmap(problem.full_loss))
    Z = np.asarray(f(jnp.asarray(np.stack([X.ravel(), Y.ravel()], 1), jnp.float32)), np.float64).reshape(X.shape)
    f_star = problem.reference.f_star
    base = float(f_star) if f_star is not None else float(np.nanmin(Z))
    gap = Z - base
    pos = gap[np.isfinite(gap) & (gap > 0)]
    fig, ax = plt.subplots(figsize=(8.6, 6.4))
    if len(pos) and pos.max() / max(np.quantile(pos, 0.01), 1e-300) > 100:
        floor = max(float(np.quantile(pos, 0.01)), float(pos.max()) * 1e-8)
        levels = _log_levels(floor, float(pos.max()), 22)
        cs = ax.contourf(X, Y, np.clip(gap, floor, None), levels=levels, norm=mcolors.LogNorm(floor, pos.max()),
                         cmap="viridis", extend="both")
        ax.contour(X, Y, np.clip(gap, floor, None), levels=levels, colors="white", linewidths=0.3, alpha=0.5)
        cbar = fig.colorbar(cs, ax=ax, format="%.0e")
        cbar.set_label("full loss − f* (log-spaced levels)" if f_star is not None else "full loss − min (log levels)")
    else:
        cs = ax.contourf(X, Y, Z, levels=20, cmap="viridis")
        ax.contour(X, Y, Z, levels=20, colors="white", linewidths=0.3, alpha=0.5)
        fig.colorbar(cs, ax=ax).set_label("full loss")
    names = [r.optimizer for r in runs]
    pal, ls = _palette(names), _dashes(names)
    handles = []
    for r, p in zip(runs, pts):
        c = pal[r.optimizer]
        ax.plot(p[:, 0], p[:, 1], color=c, ls=ls[r.optimizer], lw=1.6, alpha=0.9, zorder=3)
        ax.plot(*p[0], "o", mfc="none", mec=c, ms=8, mew=1.6, zorder=4)
        if np.all(np.isfinite(p[-1])):
            ax.plot(*p[-1], "s", color=c, ms=6, mec="black", mew=0.6, zorder=4)
        handles.append(Line2D([], [], color=c, ls=ls[r.optimizer], lw=2, label=_label(r)))
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    for s, sad in saddles:
        kind = f"strict saddle, index {sad.index}" if sad.index else "degenerate saddle"
        ax.plot(*s, "X", color="red", mec="white", ms=13, mew=1.2, zorder=2.5)
        ax.annotate(f"{kind} (f = {sad.value:g})", s, xytext=(10, -16), textcoords="offset points",
                    color="black", fontsize=8, path_effects=halo)
    for m in minima:
        ax.plot(*m, "*", color="gold", mec="black", ms=16, mew=0.8, zorder=2.5)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    _saddle_zoom(ax, problem, runs, pts, saddles, minima, pal, lo, hi)
    ax.set_xlabel("x = params[0]")
    ax.set_ylabel("y = params[1]")
    marks = [Line2D([], [], ls="none", marker="o", mfc="none", mec="k", ms=8, label="start (step 0)"),
             Line2D([], [], ls="none", marker="s", color="grey", mec="k", ms=6, label=f"end (step {runs[0].steps})")]
    if saddles:
        marks.append(Line2D([], [], ls="none", marker="X", color="red", mec="k", ms=10, label="known saddle"))
    if len(minima):
        marks.append(Line2D([], [], ls="none", marker="*", color="gold", mec="k", ms=13,
                            label=f"global minimum (f* = {f_star:.4g})" if f_star is not None else "global minimum"))
    gap_handle = Line2D([], [], ls="none", label=" ")
    ax.legend(handles=handles + [gap_handle] + marks, title="optimizer (status, median held-out seed)",
              loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=8, title_fontsize=8, frameon=False)
    ax.set_title(f"{problem.name}: where each optimizer's median run went", fontsize=10)
    return _save(fig, pathlib.Path(path))


def _saddle_zoom(ax, problem, runs, pts, saddles, minima, pal, lo, hi, size: float = 0.34) -> None:
    """Where every start lies within 5% of the frame of the first known saddle (the saddle-start
    problems), an inset of the square around it holding the starts, 4 times as wide (less where
    the frame ends sooner; no inset where that leaves under 1.5 times): the escape.

    Grey contours of f (linear levels of its own, no colour scale; dashed where f is below the
    saddle's value, the way down); the inset sits in the corner
    of the axes that covers the fewest trajectory points, minima and saddles.
    """
    if not saddles:
        return
    s0 = saddles[0][0]
    r = float(np.max(np.abs(np.asarray([p[0] for p in pts]) - s0)))
    if not 0 < r < 0.05 * float(np.max(hi - lo)):
        return
    half = min(4 * r, float(np.min(np.concatenate([s0 - lo, hi - s0]))))  # the zoomed square inside the frame
    if half < 1.5 * r:
        return
    others = np.concatenate([np.concatenate([p[np.all(np.isfinite(p), axis=1)] for p in pts]),
                             minima.reshape(-1, 2), np.asarray([s for s, _ in saddles]).reshape(-1, 2)])
    u = (others - lo) / (hi - lo)  # axes coordinates
    us = (s0 - lo) / (hi - lo)
    u = np.concatenate([u, us + np.stack([np.linspace(0.02, 0.25, 8), np.full(8, -0.03)], 1)])  # its label
    corners = [(x0, y0) for y0 in (1 - size - 0.03, 0.03) for x0 in (1 - size - 0.03, 0.03)]
    crowd = [int(np.sum((u[:, 0] >= x0 - 0.03) & (u[:, 0] <= x0 + size + 0.03)
                        & (u[:, 1] >= y0 - 0.03) & (u[:, 1] <= y0 + size + 0.03))) for x0, y0 in corners]
    x0, y0 = corners[int(np.argmin(crowd))]
    ins = ax.inset_axes([x0, y0, size, size])
    g = np.linspace(-half, half, 121)
    X, Y = np.meshgrid(s0[0] + g, s0[1] + g)
    f = jax.jit(jax.vmap(problem.full_loss))
    Z = np.asarray(f(jnp.asarray(np.stack([X.ravel(), Y.ravel()], 1), jnp.float32)), np.float64).reshape(X.shape)
    ins.set_facecolor("white")
    # relative to the saddle's value, so that matplotlib's dashed negative levels are the descent region
    ins.contour(X, Y, Z - float(saddles[0][1].value), levels=12, colors="grey", linewidths=0.6)
    for run, p in zip(runs, pts):
        c = pal[run.optimizer]
        ins.plot(p[:, 0], p[:, 1], color=c, ls=_dashes([r.optimizer for r in runs])[run.optimizer], lw=1.3)
        ins.plot(*p[0], "o", mfc="none", mec=c, ms=6, mew=1.3)
    ins.plot(*s0, "X", color="red", mec="white", ms=10, mew=1.0)
    ins.set_xlim(s0[0] - half, s0[0] + half)
    ins.set_ylim(s0[1] - half, s0[1] + half)
    ins.set_xticks([])
    ins.set_yticks([])
    ins.text(0.5, 0.02, f"zoom: ±{half:.1g} around the saddle\ncontours of f, dashed below its value", fontsize=7,
             ha="center", va="bottom", transform=ins.transAxes, bbox=dict(facecolor="white", alpha=0.8, lw=0))
    ax.indicate_inset_zoom(ins, edgecolor="black", alpha=0.8)


def line_figure(problem: problems.Problem, runs: Sequence[MedianRun], trajectories: Sequence[Trajectory],
                path: str | pathlib.Path, log: bool | None = None,
                alphas: Sequence[float] = LINE_ALPHAS) -> pathlib.Path:
    """The loss on the straight line from each median run's start to its end (Goodfellow et al. 2015).

    ``log``: plot f - f* (f - the smallest value drawn where f* is unknown) on a log axis; None
    chooses it where those values span more than two decades. Runs with a non-finite end point
    (diverged) are listed in the legend and not drawn.
    """
    alphas = np.asarray(alphas, np.float64)
    curves = []
    for t in trajectories:
        x0, x1 = t.start, t.end
        finite = all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(x1))
        curves.append(line_losses(problem, x0, x1, alphas).astype(np.float64) if finite else None)
    drawn = [c for c in curves if c is not None]
    f_star = problem.reference.f_star
    vals = np.concatenate(drawn) if drawn else np.zeros(1)
    vals = vals[np.isfinite(vals)]
    base = float(f_star) if f_star is not None else (float(vals.min()) if len(vals) else 0.0)
    gaps = vals - base
    pos = gaps[gaps > 0]
    if log is None:
        log = bool(len(pos)) and pos.max() / pos.min() > 100
    target = problem.reference.f_target
    # gaps at or below round-off (an end point at f*) are drawn at a floor a decade under the
    # smallest positive gap and the target's
    lows = [float(pos.min())] if len(pos) else [1e-12]
    floor = 0.1 * min(lows + ([target - base] if target > base else []))
    fig, ax = plt.subplots(figsize=(8.6, 5.0))
    pal, ls = _palette([r.optimizer for r in runs]), _dashes([r.optimizer for r in runs])
    handles = []
    for r, c in zip(runs, curves):
        col = pal[r.optimizer]
        if c is None:
            handles.append(Line2D([], [], color=col, lw=2, ls=":", label=_label(r) + ": not drawn"))
            continue
        y = np.maximum(c - base, floor) if log else c
        (h,) = ax.plot(alphas, y, color=col, ls=ls[r.optimizer], lw=1.6, label=_label(r))
        handles.append(h)
        ax.plot([0, 1], [y[alphas == 0][0], y[alphas == 1][0]], "o", color=col, ms=4)
    for a, name in ((0.0, "start x0"), (1.0, "end x1")):
        ax.axvline(a, color="k", ls="--", lw=0.8)
        ax.text(a + 0.01, 0.98, name, transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=8)
    if log:
        ax.set_yscale("log")
        t_gap = target - base
        if t_gap > 0:
            ax.axhline(t_gap, color="k", ls=":", lw=1)
            handles.append(Line2D([], [], color="k", ls=":", lw=1, label="target"))
        ax.set_ylabel(("full loss − f*" if f_star is not None else "full loss − smallest shown")
                      + f" (log scale; ≤ {floor:.0e} drawn at {floor:.0e})")
    else:
        ax.axhline(target, color="k", ls=":", lw=1)
        handles.append(Line2D([], [], color="k", ls=":", lw=1, label="target"))
        if f_star is not None:
            ax.axhline(f_star, color="grey", ls="-", lw=0.8)
            handles.append(Line2D([], [], color="grey", lw=0.8, label="f*"))
        ax.set_ylabel("full loss")
    ax.set_xlabel("a: position on the line (1 − a) x0 + a x1 (0: run's start, 1: its end)")
    ax.set_xlim(alphas.min(), alphas.max())
    ax.legend(handles=handles, title="optimizer (median held-out seed)", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, title_fontsize=8, frameon=False)
    ax.set_title(f"{problem.name}: loss on the straight line from start to end\n"
                 "(Goodfellow, Vinyals and Saxe 2015; each run its own start and end)", fontsize=10)
    return _save(fig, pathlib.Path(path))


def slice_figure(problem: problems.Problem, runs: Sequence[MedianRun], trajectories: Sequence[Trajectory],
                 path: str | pathlib.Path, grid_points: int = 41, radius: float = 1.0, bias: str = "zero",
                 seed: int = 0) -> pathlib.Path:
    """Filter-normalised 2-D slices of the full loss around each run's end point (Li et al. 2018).

    One panel per run, f(x1 + a d1 + b d2) for a, b in [-``radius``, ``radius``] on a
    ``grid_points`` square grid (made odd, so that a = b = 0 is on it), d1 and d2 from
    ``filter_normalized_direction`` (the same PRNG ``seed`` for every panel, each normalised to its
    own end point), on one colour scale (log-spaced levels where the values span decades).
    """
    grid_points += 1 - grid_points % 2  # odd: the end point itself is on the grid
    ab = np.linspace(-radius, radius, grid_points)
    panels = []
    k1, k2 = jax.random.split(jax.random.key(seed))
    for t in trajectories:
        x1 = jax.tree_util.tree_map(jnp.asarray, t.end)
        d1 = filter_normalized_direction(k1, x1, bias)
        d2 = filter_normalized_direction(k2, x1, bias)
        panels.append(loss_slice(problem, x1, d1, d2, ab, ab).astype(np.float64))
    allv = np.concatenate([p[np.isfinite(p)].ravel() for p in panels] + [np.ones(0)])
    pos = allv[allv > 0]
    use_log = bool(len(pos)) and pos.max() / pos.min() > 100
    if use_log:
        lo, hi = float(pos.min()), float(pos.max())
        levels, norm = _log_levels(lo, hi, 20), mcolors.LogNorm(lo, hi)
    else:
        lo, hi = (float(allv.min()), float(allv.max())) if len(allv) else (0.0, 1.0)
        levels, norm = np.linspace(lo, hi if hi > lo else lo + 1, 20), None
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n + 1.2, 4.4), squeeze=False, constrained_layout=True)
    A, B = np.meshgrid(ab, ab)
    cs = None
    for ax, r, t, Z in zip(axes[0], runs, trajectories, panels):
        Zc = np.clip(Z, levels[0], levels[-1]) if use_log else Z
        cs = ax.contourf(A, B, Zc, levels=levels, norm=norm, cmap="viridis", extend="both")
        ax.contour(A, B, Zc, levels=levels, colors="white", linewidths=0.3, alpha=0.6)
        ax.plot(0, 0, "*", color="red", mec="white", ms=13, label="end point")
        ax.set_aspect("equal")
        ax.set_xlabel("a (direction 1, filter-normalised)")
        ax.set_title(f"{r.optimizer} (seed {r.seed})\nf(end) = {t.loss[-1]:.3g}",
                     fontsize=9)
    axes[0][0].set_ylabel("b (direction 2, filter-normalised)")
    axes[0][0].legend(loc="lower left", fontsize=8)
    cbar = fig.colorbar(cs, ax=axes[0].tolist(), format="%.2g")
    cbar.set_label("full loss (training cross-entropy)" + (", log-spaced levels" if use_log else ""))
    fig.suptitle(f"{problem.name}: full loss around each optimizer's median-seed end point\n"
                 f"filter-normalised random directions (Li et al. 2018), biases "
                 f"{'not perturbed' if bias == 'zero' else 'normalised entrywise'}; a = b = ±1: each filter "
                 f"moved by its own norm", fontsize=10)
    return _save(fig, pathlib.Path(path))


# --- everything -----------------------------------------------------------------------------

def _slug(name: str) -> str:
    """A problem name as a file-name part (as ``bench.reports.plots`` spells it)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _keep(problem: str, problems_filter) -> bool:
    if problems_filter is None:
        return True
    if callable(problems_filter):
        return bool(problems_filter(problem))
    return problem in problems_filter


def write_all(df: pd.DataFrame, tab: pd.DataFrame, out_dir: str | pathlib.Path,
              problems_filter: Collection[str] | Callable[[str], bool] | None = None, *,
              slice_optimizers: int = 3, slice_grid: int = 41) -> list[pathlib.Path]:
    """Every picture of the way for the stored runs ``df`` and their leaderboard ``tab``.

    In ``out_dir``: ``paths_<problem>.png`` for 2-D problems, ``line_<problem>.png`` for every
    problem, ``slice_<problem>.png`` for ReLU MLPs (the ``slice_optimizers`` best-ranked
    optimizers' end points). ``problems_filter``: problem names to draw, or a predicate on them
    (None: all). Each (problem, optimizer) costs one compile of its re-run; problems that can no
    longer be built (an unregistered family) are skipped.
    """
    out_dir = pathlib.Path(out_dir)
    written: list[pathlib.Path] = []
    chosen = [r for r in median_runs(df, tab) if _keep(r.problem, problems_filter)]
    by_problem: dict[str, list[MedianRun]] = {}
    for r in chosen:
        by_problem.setdefault(r.problem, []).append(r)
    for name, runs in by_problem.items():
        try:
            problem = problems.get(name)
        except (KeyError, TypeError, ValueError):
            continue
        two_d = problem.dim == 2
        kept, trajs = [], []
        for r in sorted(runs, key=lambda r: r.rank):
            try:
                t = rerun_median(r, every=record_every(r, problem.dim))
            except (KeyError, TypeError, ValueError) as err:  # stored hyperparameters the code no longer takes
                warnings.warn(f"pictures: cannot re-run {r.optimizer} on {name}: {err}", stacklevel=2)
                continue
            if not check_against_store(r, t, df):
                warnings.warn(f"pictures: the re-run of {r.optimizer} on {name} (seed {r.seed}) does not reproduce "
                              "the stored losses; its picture shows the run as the code runs it now", stacklevel=2)
            kept.append(r)
            trajs.append(t)
        runs = kept
        if not runs:
            continue
        slug = _slug(name)
        if two_d:
            written.append(paths_figure(problem, runs, trajs, out_dir / f"paths_{slug}.png"))
        written.append(line_figure(problem, runs, trajs, out_dir / f"line_{slug}.png"))
        if problem.family in SLICE_FAMILIES:
            ok = [(r, t) for r, t in zip(runs, trajs)
                  if all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(t.end))][:slice_optimizers]
            if ok:
                written.append(slice_figure(problem, [r for r, _ in ok], [t for _, t in ok],
                                            out_dir / f"slice_{slug}.png", grid_points=slice_grid))
    return written
