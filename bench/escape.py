"""Saddle-escape benchmark: steps and oracle cost to leave a saddle, swept over dimension and curvature.

Every run starts within a radius delta of a known saddle x_s (value f_s) of its problem, and its
escape is the first step t with

    f(x_t) <= f_s - 0.1 (f_s - f_ref)                                    (``schema.escape_threshold``)

(f_ref the best known value or f*): a tenth of the way down from the saddle. The runner records it
exactly, per step, for deterministic problems (columns ``hit_step@escape`` ...). Its cost is the
oracle calls spent by then in gradient-equivalents (``bench.cost``). The chained saddle of Du et al.
is the exception: its escape threshold concerns the first of its d saddles only (f_s = 0), which every
method leaves in a dimension-free ~10 steps; what the construction is about is passing the whole
chain, so there the measure is the problem's target f* + 1e-4 d nu (``hit_step``), reached only after
all d saddles s_0..s_{d-1} are passed (``ESCAPE_MEASURE``).

Sweeps (``SWEEPS``): the dimension of ``saddle_nd`` (index 1, the origin is the saddle), its curvature
ratio kappa = lambda_max / |lambda_min| (ill-conditioning caps GD's step at 2 / lambda_max, so its escape
rate per step is 1 + 2 |lambda_min| / lambda_max: Jin et al. 2017's l / sqrt(rho eps) dependence), the depth
of a deep linear network from a small balanced init (depth 2: strict saddle at the origin; depth >= 3:
the Hessian there vanishes, a degenerate saddle; Saxe et al. 2014), and the dimension of the chained
saddle (Du et al. 2017: gradient descent needs exp(Omega(d)) steps from the paper's initialization,
perturbed GD poly(d)).

Per (sweep, value, optimizer) the hyperparameter point is chosen on the tuning seeds (highest escape
fraction, then lowest median escape cost), and the held-out seeds are reported: the median escape
cost with a bootstrap 95% interval and the fraction that escaped. The scaling exponent is the
least-squares slope of log(median cost) against log(value) (``fit_exponent``), its 95% interval a
percentile bootstrap resampling the runs within each value independently (``scipy.stats.bootstrap``
with one sample per value). A run that never escapes has infinite cost: the median stays finite while
fewer than half the runs fail, and values whose median is infinite are left out of the fit (the
table shows them as "> budget").

The spin-glass sweep starts near critical points of chosen Morse index k of the spherical 3-spin glass
(``spin_glass_saddle``: Newton's method on the gradient field from partly descended starts, as in the
census), each run at distance 1e-3 in a random tangent direction. Near a nondegenerate saddle Riemannian
gradient descent with step eta multiplies the tangent deviation along an eigenvector of Hessian
eigenvalue lambda < 0 by 1 + eta |lambda| per step, so starting delta along the bottom eigenvector it
escapes after ln(C / delta) / ln(1 + eta |lambda_min|) steps: a 100x smaller delta costs
ln(100) / ln(1 + eta |lambda_min|) more steps (tested). Higher-index saddles sit higher (theory: index
fraction F(u / E_inf), ``bench.census``) with a more negative lambda_min and more unstable directions
for a random perturbation to load: the sweep measures how much faster they release a run.

Special starts (GD from (1, y0) on the strict saddle, the spin-glass saddles) use ``problem_with_starts``:
a Problem whose run with seed i starts at a given point.

Command line: ``python -m bench escape`` is ``main(argv)``; ``run`` is the library entry point.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import pathlib
import re
import warnings
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import problems
from bench import cost, schema
from bench import grid as grids
from bench.runner import run_cell

# --- starting points -------------------------------------------------------------------------


def init_key(seed: int) -> jax.Array:
    """The key the runner passes to ``problem.init`` for ``seed``: one root key per seed, split once
    (``(k_init, k_run) = split(key(seed))``; DESIGN.md, ``bench.program.build_program``)."""
    return jax.random.split(jax.random.key(np.uint32(seed)))[0]


def problem_with_starts(problem: problems.Problem, starts, label: str) -> problems.Problem:
    """``problem`` whose run with seed i (i < K) starts at ``starts[i]``.

    ``starts``: a list of K params pytrees (the K starting points; a list, since a params pytree may
    itself be a tuple). ``label`` names the starts; the Problem is named ``"<problem.name>[<label>]"``
    (distinct labels: the runner caches compiled programs by name).

    The init identifies the seed by its init key (``init_key``: the same key data as one of the K
    precomputed keys); a key that matches none of seeds 0..K-1 starts at NaN, so a run with a seed
    outside the table is a ``diverged`` row, never a silent wrong start.
    """
    if not isinstance(starts, list) or not starts:
        raise TypeError("problem_with_starts: starts must be a non-empty list of params pytrees")
    starts = jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *starts)
    k = jax.tree_util.tree_leaves(starts)[0].shape[0]
    table = np.stack([np.asarray(jax.random.key_data(init_key(i))).ravel() for i in range(k)])

    def init(key):
        data = jax.random.key_data(key).ravel()
        match = jnp.all(jnp.asarray(table) == data[None, :], axis=1)
        i = jnp.argmax(match)
        found = jnp.any(match)
        return jax.tree_util.tree_map(lambda a: jnp.where(found, a[i], jnp.nan), starts)

    return dataclasses.replace(problem, init=init, name=f"{problem.name}[{label}]")


def base_problem_name(name: str) -> str:
    """The registry name of a problem built by ``problem_with_starts`` (the name without ``[label]``)."""
    return re.sub(r"\[[^\]]*\]$", "", name)


# --- spin-glass saddles of chosen index --------------------------------------------------------

SPIN_GLASS_DELTA = 1e-3  # distance of the starts from the saddle (on the unit sphere)


@functools.lru_cache(maxsize=32)
def spin_glass_saddle(p: int, n: int, instance: int, index: int, starts: int = 128,
                      max_descent_steps: int = 60, seed: int = 0) -> dict:
    """A critical point of Morse index ``index`` of ``spin_glass(p, n, instance)``, found by Newton's method.

    ``bench.census.find`` (Riemannian gradient descent for a spread of step counts, then Newton-Raphson on
    the gradient field, in float64) from ``starts`` random points; among the converged points (Riemannian
    gradient norm below ``census.GRAD_TOL``) whose tangent Hessian has exactly ``index`` negative
    eigenvalues, the lowest in energy. Fewer descent steps reach higher, higher-index critical points:
    at p = 3, N = 30, 128 starts with up to 60 descent steps find indices 0 to ~17 (energy per spin from
    -1.56 to ~0.2), each index below 9 several times.

    Returns a dict: ``point`` (n,) float64 unit vector, ``energy`` (per spin), ``eigs`` (n - 1,) the
    tangent Hessian's eigenvalues ascending, ``index``. Raises ``ValueError`` when no critical point of
    that index was found (more starts or other descent lengths may find one).
    """
    from bench import census

    if not 0 <= index <= n - 1:
        raise ValueError(f"spin_glass_saddle: index must be in 0..{n - 1} (the tangent dimension), got {index}")
    problem = problems.get(f"spin_glass(p={p},n={n},instance={instance})")
    found = census.find(problem, jax.random.key(seed), starts=starts, max_descent_steps=max_descent_steps)
    ok = (found["grad_norm"] < census.GRAD_TOL) & (found["index"] == index)
    if not ok.any():
        have = sorted(set(found["index"][found["grad_norm"] < census.GRAD_TOL].tolist()))
        raise ValueError(f"no critical point of index {index} of {problem.name} among {starts} Newton searches "
                         f"(indices found: {have}); try more starts")
    i = np.flatnonzero(ok)[np.argmin(found["energy"][ok])]
    return {"point": found["point"][i], "energy": float(found["energy"][i]), "eigs": found["eigs"][i],
            "index": int(found["index"][i])}


def spin_glass_saddle_problem(p: int, n: int, instance: int, index: int, seeds: int,
                              delta: float = SPIN_GLASS_DELTA) -> problems.Problem:
    """``spin_glass(p, n, instance)`` whose run with seed i < ``seeds`` starts at distance ~``delta`` from
    the index-``index`` critical point w_s of ``spin_glass_saddle``: w_i = (w_s + delta z_i) / |w_s + delta z_i|,
    z_i a uniformly random unit tangent vector (numpy seed i). The problem's first saddle is w_s with its
    energy, so ``schema.escape_threshold`` measures the escape from that saddle. Named
    ``"spin_glass(...)[index=<k>,delta=<delta>]"``.
    """
    base = problems.get(f"spin_glass(p={p},n={n},instance={instance})")
    sad = spin_glass_saddle(p, n, instance, index)
    w = sad["point"]
    starts = []
    for i in range(seeds):
        z = np.random.default_rng(i).standard_normal(n)
        z -= w * (w @ z)
        x = w + delta * z / np.linalg.norm(z)
        starts.append(x / np.linalg.norm(x))
    saddle = problems.Saddle(point=jnp.asarray(w, jnp.float32), value=sad["energy"], index=index,
                             name=f"index-{index} critical point (Newton search, bench.escape.spin_glass_saddle)")
    q = problem_with_starts(base, starts, f"index={index},delta={delta:g}")
    return dataclasses.replace(q, saddles=(saddle,))


# --- the strict saddle in closed form ---------------------------------------------------------

STRICT_SADDLE_ESCAPE_F = -0.025  # escape threshold of strict_saddle: f_s - 0.1 (f_s - f*) = 0 - 0.1 * 0.25


def strict_saddle_escape_y(f_escape: float = STRICT_SADDLE_ESCAPE_F) -> float:
    """The y at which y^4/4 - y^2/2 = f_escape (0 > f_escape > -1/4): y*^2 = 1 - sqrt(1 + 4 f_escape).

    At f_escape = -0.025: y*^2 = 1 - sqrt(0.9) = 0.0513167, y* = 0.2265318.
    """
    return math.sqrt(1.0 - math.sqrt(1.0 + 4.0 * f_escape))


def gd_strict_saddle_escape_time(y0: float, eta: float, f_escape: float = STRICT_SADDLE_ESCAPE_F) -> float:
    """Predicted escape time of gradient descent from (1, y0) on x^2 + y^4/4 - y^2/2 (a real number).

    GD with step eta: x_{t+1} = (1 - 2 eta) x_t, y_{t+1} = y_t + eta (y_t - y_t^3). In the linear regime
    y_t = y0 (1 + eta)^t, so the escape (f <= f_escape, i.e. y >= y* = ``strict_saddle_escape_y``, once
    x_t^2 = (1 - 2 eta)^(2t) is negligible) comes after ln(y*/y0) / ln(1 + eta) steps. The cubic term
    slows the last e-folds: treating ln y as flowing at rate c (1 - y^2), c = ln(1 + eta), gives
    dt = dy / (c y (1 - y^2)), integrated:

        t(y0) = [ln(y*/y0) + 1/2 ln((1 - y0^2) / (1 - y*^2))] / ln(1 + eta).

    The correction is -ln(1 - y*^2) / (2c) = 0.0263 / c (2.6 steps at eta = 0.01, 0.14 at eta = 0.2).
    The map's per-step log-growth ln(1 + eta (1 - y^2)) differs from c (1 - y^2) by
    y^2 (c - eta / (1 + eta)) ~ eta^2 y^2 / 2; summed over the geometric tail (sum_t y_t^2 ~ y*^2 / (2 eta))
    that is eta y*^2 / 4 in ln y, i.e. y*^2 / 4 = 0.013 steps. x_t^2 = (1 - 2 eta)^(2t) is below 1e-8 at the
    escape for eta >= 0.01, y0 <= 1e-2, shifting it by under 1e-4 steps. So the real crossing time
    lies within ~0.02 of t(y0), and the first step t with f <= f_escape is an integer in
    [t(y0) - 0.05, t(y0) + 1.05].
    """
    ys = strict_saddle_escape_y(f_escape)
    c = math.log1p(eta)
    return (math.log(ys / y0) + 0.5 * math.log((1.0 - y0**2) / (1.0 - ys**2))) / c


def gd_strict_saddle_escape_step(y0: float, eta: float, x0: float = 1.0,
                                 f_escape: float = STRICT_SADDLE_ESCAPE_F, max_steps: int = 10**6) -> int:
    """The exact first step t with f(x_t, y_t) <= f_escape of GD from (x0, y0), by the float64 recurrence."""
    x, y = float(x0), float(y0)
    for t in range(max_steps + 1):
        if x * x + 0.25 * y**4 - 0.5 * y * y <= f_escape:
            return t
        x, y = x - eta * 2.0 * x, y + eta * (y - y**3)
    return -1


# --- per-run escape measurements --------------------------------------------------------------

ESCAPE_STEP = "escape_step"
ESCAPE_COST = "escape_cost"  # gradient-equivalents; inf where the run never escaped
ESCAPED = "escaped"
SWEEP = "sweep"
VALUE = "value"  # the swept variable's value


# family -> the measure of escape: "target" (the problem's f_target; the chained saddle, whose escape
# threshold concerns its first saddle only), else "escape" (``schema.escape_threshold``)
ESCAPE_MEASURE = {"chained_saddle": "target"}


def _measure(problem_name: str) -> str:
    return ESCAPE_MEASURE.get(base_problem_name(problem_name).split("(")[0], schema.ESCAPE)


def _weights(name: str) -> cost.Weights:
    return cost.weights(problems.canonical_name(base_problem_name(name)))


def escape_runs(df: pd.DataFrame, weights: Callable[[str], cost.Weights] | None = None) -> pd.DataFrame:
    """One row per run of a runner frame (several cells allowed): whether and when it escaped.

    Columns: problem, optimizer, hp_index, seed, tuning, status, the ``hp_*`` columns, ``escaped`` (reached
    the escape measure and did not diverge: leaving a saddle by blowing up is no escape),
    ``escape_step`` (-1: never), ``escape_cost`` (gradient-equivalents up to the escape step: values,
    gradients and HVPs weighted by ``weights(problem)``, default ``bench.cost.weights`` of the
    registry name; inf where the run never escaped), ``steps`` (the budget) and ``measure``
    (``"escape"`` or ``"target"``, see the module docstring).
    """
    weights = weights or _weights
    runs = schema.summarize(df)
    out = []
    for name, g in runs.groupby(schema.PROBLEM, observed=True, sort=False):
        measure = _measure(str(name))
        if measure == "target":
            cols = (schema.HIT_STEP, schema.HIT_VALUES, schema.HIT_GRADS, schema.HIT_HVPS)
        else:
            cols = tuple(schema.tau_column(k, schema.ESCAPE) for k in schema.TAU_KINDS)
        step = g[cols[0]].to_numpy(np.int64)
        ok = (step >= 0) & (g[schema.STATUS].astype(str).to_numpy() != schema.DIVERGED)
        w = weights(str(name))
        c = cost.gradient_equivalents(g[cols[1]].to_numpy(), g[cols[2]].to_numpy(), g[cols[3]].to_numpy(), w)
        keep = [schema.PROBLEM, schema.OPTIMIZER, schema.HP_INDEX, schema.SEED, schema.TUNING, schema.STEPS,
                schema.STATUS, *schema.hp_columns(g.columns)]
        r = g[keep].copy()
        r[schema.PROBLEM] = r[schema.PROBLEM].astype(str)
        r[schema.OPTIMIZER] = r[schema.OPTIMIZER].astype(str)
        r[ESCAPED] = ok
        r[ESCAPE_STEP] = np.where(ok, step, -1)
        r[ESCAPE_COST] = np.where(ok, c, np.inf)
        r["measure"] = measure
        out.append(r)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# --- statistics -------------------------------------------------------------------------------


def _median(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.median(x)) if x.size else float("nan")


def median_interval(costs, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0):
    """Median of per-run costs (inf = never escaped) and its percentile-bootstrap interval."""
    from scipy import stats

    x = np.asarray(costs, np.float64)
    med = _median(x)
    if x.size < 2 or np.all(x == x[0]):
        return med, med, med
    with warnings.catch_warnings():  # resamples with an infinite median (never escaped) are fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap((x,), np.median, confidence_level=confidence, n_resamples=n_resamples,
                              method="percentile", random_state=np.random.default_rng(seed))
    return med, float(res.confidence_interval.low), float(res.confidence_interval.high)


def _slope(logx: np.ndarray, logy: np.ndarray) -> float:
    xm = logx - logx.mean()
    return float(np.sum(xm * (logy - logy.mean())) / np.sum(xm * xm))


def fit_exponent(values: Sequence[float], costs: Sequence[Sequence[float]], confidence: float = 0.95,
                 n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Scaling exponent b of median cost ~ a value^b, with a bootstrap interval.

    ``values``: the swept variable (> 0), one per group; ``costs``: per value, the per-run costs (inf:
    never escaped). b is the least-squares slope of log(median cost) on log(value) over the values
    whose median is finite (NaN if fewer than two). The interval resamples the runs of each value
    independently (``scipy.stats.bootstrap`` with one sample per value, percentile method); resamples
    whose median is infinite count as +inf slopes when the infinite value is the largest, which the
    percentile interval then reports as an open upper end.
    """
    from scipy import stats

    v = np.asarray(values, np.float64)
    samples = [np.asarray(c, np.float64) for c in costs]
    meds = np.array([_median(s) for s in samples])
    ok = np.isfinite(meds) & (meds > 0) & (v > 0)
    if ok.sum() < 2:
        return float("nan"), float("nan"), float("nan")
    lv = np.log(v[ok])
    kept = [s for s, k in zip(samples, ok) if k]
    b = _slope(lv, np.log(meds[ok]))
    if all(s.size < 2 for s in kept):
        return b, b, b

    def stat(*ss, axis=-1):
        m = np.stack([np.median(s, axis=axis) for s in ss], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ly = np.log(m)
        xm = lv - lv.mean()
        out = np.sum(xm * (ly - ly.mean(axis=-1, keepdims=True)), axis=-1) / np.sum(xm * xm)
        return np.where(np.isfinite(out), out, np.inf)

    with warnings.catch_warnings():  # +inf slopes (resampled medians that never escaped) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(tuple(kept), stat, confidence_level=confidence, n_resamples=n_resamples,
                              method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    return b, float(res.confidence_interval.low), float(res.confidence_interval.high)


# --- sweeps -----------------------------------------------------------------------------------

TAU_DU = math.e  # Du et al. 2017's tau = L = e, gamma = 1 (the chained_saddle defaults)
L_DU = math.e
DU_STEP = 1.0 / (4.0 * L_DU)  # their step size 1/(4L)
# Perturbed GD on the chained saddle: the paper's GD step; a perturbation of radius 0.1 whenever the
# gradient norm falls under 0.1 (near a saddle, where the contracting coordinates have halved away),
# at most every 20 steps: escaping along the saddle's -2 gamma direction from r / sqrt(d) to tau takes
# ln(tau sqrt(d) / r) / ln(1 + 2 gamma eta) = 20-25 steps for d <= 10, so t_thres = 20 does not
# perturb a run that is already on its way out.
PGD_CHAINED = {"learning_rate": DU_STEP, "radius": 0.1, "g_thres": 0.1, "t_thres": 20.0}


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One sweep: a variable and, per value, a saddle-start problem with its step budget.

    Attributes:
      name: short id (file names, tables).
      variable: axis label of the swept variable, with its meaning (``"dimension d"``).
      points: (value, problem) pairs; the value is what the exponent is fitted against, the problem a
        registry name or ``seeds -> Problem`` (saddle starts built per seed count, e.g.
        ``spin_glass_saddle_problem``).
      steps, log_every: the budget of every cell of the sweep.
      grid: the grid rule for this sweep (None: the one ``run`` is given).
      overrides: per optimizer, hyperparameters fixed in every point of the grid rule (``bench.grid.rule``;
        the rule still sets the learning rate).
      fixed: per optimizer, the one hyperparameter point it runs in this sweep (no grid): the settings a
        paper's claim is about (Du et al.'s step 1/(4L) for GD on the chained saddle).
      description: one line for the report.
      symbol: the variable's symbol in table headers (default: the first word of ``variable``).
    """

    name: str
    variable: str
    points: tuple[tuple[float, str | Callable[[int], problems.Problem]], ...]
    steps: int
    log_every: int
    grid: str | None = None
    overrides: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    description: str = ""
    fixed: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    symbol: str = ""  # the variable's symbol in table headers (default: the variable's first word)


DEEP_LINEAR_SMALL = "deep_linear(depth={D},width=4,d_in=4,d_out=4,n_samples=32,teacher_rank=2,init='balanced'," \
    "init_scale=0.1)"

SWEEPS: dict[str, Sweep] = {
    s.name: s
    for s in [
        Sweep("saddle_nd_dim", "dimension d",
              tuple((float(d), f"saddle_nd(dim={d},index=1,init_radius=0.001)") for d in (8, 64, 512)),
              steps=500, log_every=10, symbol="d",
              description="saddle_nd, index 1, unit curvatures, start uniform in [-1e-3, 1e-3]^d"),
        Sweep("saddle_nd_kappa", "curvature ratio kappa = lambda_max / |lambda_min|",
              tuple((float(k), f"saddle_nd(dim=10,index=1,pos_curvature={float(k)},init_radius=0.001)")
                    for k in (1, 10, 100)),
              steps=2000, log_every=20, grid="lr7", symbol="kappa",
              description="saddle_nd(dim=10, index 1), |lambda_min| = 1, lambda_max = kappa; the stable step "
                          "is < 2/kappa"),
        Sweep("deep_linear_depth", "depth D",
              tuple((float(D), DEEP_LINEAR_SMALL.format(D=D)) for D in (2, 3, 4)),
              steps=3000, log_every=20, symbol="D",
              description="deep linear net 4-4-..-4 on a rank-2 teacher, balanced init of scale 0.1: origin "
                          "strict at D = 2, degenerate at D >= 3"),
        Sweep("chained_saddle_dim", "dimension d (number of chained saddles)",
              tuple((float(d), f"chained_saddle(dim={d})") for d in (2, 3, 4, 5)),
              steps=2000, log_every=20, symbol="d",
              fixed={"sgd": {"learning_rate": DU_STEP}, "perturbed_gd": PGD_CHAINED,
                         "momentum": {"learning_rate": DU_STEP}, "nesterov": {"learning_rate": DU_STEP}},
              description="Du et al. 2017 chained saddles from their init (uniform in [-1, 1]^d); escape = "
                          "all d saddles passed (the target f* + 1e-4 d nu); GD and PGD at their step 1/(4L)"),
        Sweep("spin_glass_index", "Morse index k of the spin-glass saddle",
              tuple((float(k), functools.partial(spin_glass_saddle_problem, 3, 30, 0, k)) for k in (1, 2, 4, 8)),
              steps=2000, log_every=20, symbol="k",
              description="spherical 3-spin glass, N = 30, instance 0: starts 1e-3 (random tangent direction) from "
                          "the lowest critical point of index k that Newton's method on the gradient found "
                          "(lambda_min -0.24 at k = 1: GD at step 0.1 needs ~300 steps to leave it)"),
    ]
}

DEFAULT_OPTIMIZERS = ("sgd", "perturbed_gd", "adam")
SELECTED = "selected"  # per-run column: the run is a held-out run of its cell's chosen point


@dataclasses.dataclass
class EscapeResult:
    """What ``run`` produced: per-run rows, the per-(sweep, value, optimizer) summary, the exponents,
    and the files written (``None`` without an output directory)."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    exponents: pd.DataFrame
    paths: dict[str, pathlib.Path]


def select_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, optimizer): the hp_index chosen on the tuning seeds (all seeds where there are
    none): highest escape fraction, then lowest median escape cost, then lowest index."""
    rows = []
    for (prob, opt), g in runs.groupby([schema.PROBLEM, schema.OPTIMIZER], sort=False):
        tune = g[g[schema.TUNING].astype(bool)]
        tune = tune if len(tune) else g
        stats_ = [(-t[ESCAPED].mean(), _median(t[ESCAPE_COST]), int(h))
                  for h, t in tune.groupby(schema.HP_INDEX)]
        rows.append({schema.PROBLEM: prob, schema.OPTIMIZER: opt, schema.HP_INDEX: min(stats_)[2]})
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, exponents) from ``escape_runs`` rows carrying ``sweep`` and ``value`` columns.

    summary: one row per (sweep, value, optimizer): the chosen hp point, held-out runs ``n``,
    ``escaped_fraction``, ``median_cost`` with its bootstrap 95% interval (``cost_lo``, ``cost_hi``;
    inf where more than half never escaped), ``median_steps``, the budget ``steps``.
    exponents: one row per (sweep, optimizer): ``exponent`` [``exponent_lo``, ``exponent_hi``] and the
    number of values fitted.
    """
    chosen = select_points(runs)
    runs = runs.merge(chosen.assign(**{SELECTED: True}), how="left",
                      on=[schema.PROBLEM, schema.OPTIMIZER, schema.HP_INDEX])
    runs[SELECTED] = runs[SELECTED].notna()  # True where merged, NaN elsewhere
    held = runs[runs[SELECTED]]
    if (~held[schema.TUNING].astype(bool)).any():
        held = held[~held[schema.TUNING].astype(bool)]
    rows, exps = [], []
    for (sweep, opt), g in held.groupby([SWEEP, schema.OPTIMIZER], sort=False):
        values, samples = [], []
        for value, gv in g.groupby(VALUE, sort=True):
            med, lo, hi = median_interval(gv[ESCAPE_COST])
            steps = np.where(gv[ESCAPED], gv[ESCAPE_STEP], np.inf)
            rows.append({SWEEP: sweep, VALUE: float(value), schema.PROBLEM: gv[schema.PROBLEM].iloc[0],
                         schema.OPTIMIZER: opt, schema.HP_INDEX: int(gv[schema.HP_INDEX].iloc[0]), "n": len(gv),
                         "escaped_fraction": float(gv[ESCAPED].mean()), "median_cost": med, "cost_lo": lo,
                         "cost_hi": hi, "median_steps": _median(steps), schema.STEPS: int(gv[schema.STEPS].iloc[0]),
                         "measure": gv["measure"].iloc[0]})
            values.append(float(value))
            samples.append(gv[ESCAPE_COST].to_numpy(np.float64))
        b, lo, hi = fit_exponent(values, samples)
        n_fit = int(sum(np.isfinite(_median(s)) for s in samples))
        exps.append({SWEEP: sweep, schema.OPTIMIZER: opt, "exponent": b, "exponent_lo": lo, "exponent_hi": hi,
                     "n_values": len(values), "n_fitted": n_fit})
    return pd.DataFrame(rows), pd.DataFrame(exps)


def _cost(x: float) -> str:
    if not np.isfinite(x):
        return "inf"
    return f"{x:.3g}" if x < 1e4 else f"{x:.2e}"


def markdown(summary: pd.DataFrame, exponents: pd.DataFrame, sweeps: Mapping[str, Sweep] | None = None,
             heading: str = "### Saddle escape", figures: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines: per sweep, a table optimizer x value of median escape cost [95% CI] (gradient-
    equivalents) with the escaped fraction, and the fitted exponent [95% CI]; ``figures`` (sweep ->
    relative path) are linked under their tables."""
    sweeps = SWEEPS if sweeps is None else sweeps
    lines = [heading, "",
             "Runs start near a known saddle; escape = first step with f <= f_s - 0.1 (f_s - f_ref) (for the "
             "chained saddle: the target, all d saddles passed). Cost in gradient-equivalents (`bench/cost.py`), "
             "median over held-out seeds at the hyperparameter point chosen on the tuning seeds, bootstrap 95% "
             "interval in brackets, then the fraction of runs that escaped within the budget. Exponent: slope "
             "of log median cost against log of the swept variable, percentile-bootstrap 95% interval "
             "(values whose median is infinite are left out of the fit).", ""]
    if summary.empty:
        return [*lines, "No runs."]
    for sweep, s in summary.groupby(SWEEP, sort=False):
        sw = sweeps.get(sweep)
        var = sw.variable if sw else VALUE
        sym = (sw.symbol if sw and sw.symbol else var.split()[0])
        values = sorted(s[VALUE].unique())
        lines += [f"#### {sweep}" + (f": {sw.description}" if sw and sw.description else ""), "",
                  f"| optimizer | {' | '.join(f'{sym} = {v:g}' for v in values)} | exponent [95% CI] |",
                  "|---|" + "---|" * len(values) + "---|"]
        for opt, so in s.groupby(schema.OPTIMIZER, sort=False):
            cells = []
            for v in values:
                r = so[so[VALUE] == v]
                if r.empty:
                    cells.append("-")
                    continue
                r = r.iloc[0]
                med = r["median_cost"]
                head = _cost(med) if np.isfinite(med) else f"> {r[schema.STEPS]} steps"
                ci = f" [{_cost(r['cost_lo'])}, {_cost(r['cost_hi'])}]" if np.isfinite(med) else ""
                cells.append(f"{head}{ci} ({r['escaped_fraction']:.0%})")
            e = exponents[(exponents[SWEEP] == sweep) & (exponents[schema.OPTIMIZER] == opt)]
            if e.empty or not np.isfinite(e["exponent"].iloc[0]):
                ex = "-"
            else:
                e = e.iloc[0]
                ex = f"{e['exponent']:.2f} [{e['exponent_lo']:.2f}, {e['exponent_hi']:.2f}]"
                if e["n_fitted"] < e["n_values"]:
                    ex += f" (fitted on {e['n_fitted']} of {e['n_values']})"
            lines.append(f"| {opt} | {' | '.join(cells)} | {ex} |")
        if figures and sweep in figures:
            lines += ["", f"![escape cost against {var}]({figures[sweep]})"]
        lines.append("")
    return lines


def run(sweeps: Sequence[str] | None = None, optimizers_: Sequence[str] = DEFAULT_OPTIMIZERS, seeds: int = 16,
        tune_seeds: int | None = None, grid: str = "lr4", out_dir: str | pathlib.Path | None = "results/escape",
        progress: bool = True, weights: Callable[[str], cost.Weights] | None = None) -> EscapeResult:
    """Run the escape sweeps and write the results.

    Args:
      sweeps: names from ``SWEEPS`` (None: all).
      optimizers_: registered optimizer names.
      seeds: seeds per cell; the first ``tune_seeds`` (default half) choose the hyperparameter point,
        the rest are reported.
      grid: grid rule of every sweep that sets none (``bench.grid.rule``: "defaults", "lr<K>", "qmc<K>").
      out_dir: where ``escape.csv`` (summary with exponents), ``escape_runs.csv`` (every run),
        ``ESCAPE.md`` and ``escape_<sweep>.png`` go; None writes nothing.
      progress: a tqdm progress bar over cells.
      weights: ``problem name -> bench.cost.Weights`` (default: ``bench.cost.weights``).
    """
    names = list(SWEEPS) if sweeps is None else list(sweeps)
    unknown = [s for s in names if s not in SWEEPS]
    if unknown:
        raise KeyError(f"unknown sweep(s) {unknown}; valid: {', '.join(SWEEPS)}")
    import optimizers as opt_registry

    for o in optimizers_:
        opt_registry.spec(o)  # unknown names fail before anything runs
    jobs = [(SWEEPS[s], v, p, o) for s in names for v, p in SWEEPS[s].points for o in optimizers_]
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; stay usable without it
        def tqdm(it, **_):
            return it
    runs = []
    for sw, value, pname, opt in tqdm(jobs, desc="escape cells", unit="cell", disable=not progress):
        if opt in sw.fixed:
            g = grids.rule(opt, "defaults", sw.fixed[opt])
        else:
            g = grids.rule(opt, sw.grid or grid, sw.overrides.get(opt))
        problem = pname(seeds) if callable(pname) else pname
        df = run_cell(problem, opt, g, seeds=seeds, steps=sw.steps, log_every=sw.log_every, tune_seeds=tune_seeds)
        r = escape_runs(df, weights)
        r[SWEEP] = sw.name
        r[VALUE] = float(value)
        runs.append(r)
    runs_df = pd.concat(runs, ignore_index=True)
    summary, exps = summarize(runs_df)
    paths: dict[str, pathlib.Path] = {}
    if out_dir is not None:
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        from bench.reports import escape_plots

        figures = {}
        for s in names:
            sub = summary[summary[SWEEP] == s]
            if sub.empty:
                continue
            sw = SWEEPS[s]
            p = escape_plots.plot_escape_scaling(sub, exps[exps[SWEEP] == s], out / f"escape_{s}.png",
                                                 xlabel=sw.variable,
                                                 title=f"Saddle-escape cost against {sw.variable}\n{sw.description}")
            paths[f"figure_{s}"] = p
            figures[s] = p.name
        table = summary.merge(exps, on=[SWEEP, schema.OPTIMIZER], how="left")
        paths["csv"] = out / "escape.csv"
        table.to_csv(paths["csv"], index=False)
        paths["runs_csv"] = out / "escape_runs.csv"
        runs_df.to_csv(paths["runs_csv"], index=False)
        paths["markdown"] = out / "ESCAPE.md"
        paths["markdown"].write_text("\n".join(markdown(summary, exps, figures=figures)) + "\n")
    return EscapeResult(runs=runs_df, summary=summary, exponents=exps, paths=paths)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The arguments of ``python -m bench escape`` (added to ``parser`` when given)."""
    p = parser or argparse.ArgumentParser(prog="python -m bench escape", description=__doc__.splitlines()[0])
    p.add_argument("--sweeps", default=",".join(SWEEPS), help=f"comma-separated, of: {', '.join(SWEEPS)}")
    p.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS), help="comma-separated optimizer names")
    p.add_argument("--seeds", type=int, default=16, help="seeds per cell (default 16)")
    p.add_argument("--tune-seeds", type=int, default=None, help="tuning seeds among them (default half)")
    p.add_argument("--grid", default="lr4", help="grid rule where a sweep sets none (default lr4)")
    p.add_argument("--out", default="results/escape", help="output directory (default results/escape)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_from_args(args: argparse.Namespace) -> EscapeResult:
    """Run from parsed ``build_parser`` arguments and print the files written (the CLI's ``escape``)."""
    res = run(sweeps=[s for s in args.sweeps.split(",") if s],
              optimizers_=[o for o in args.optimizers.split(",") if o], seeds=args.seeds, tune_seeds=args.tune_seeds,
              grid=args.grid, out_dir=args.out, progress=not args.no_progress)
    for k, v in res.paths.items():
        print(f"{k}: {v}")
    return res


def main(argv: Sequence[str] | None = None) -> EscapeResult:
    """``python -m bench escape [--sweeps ...] [--optimizers ...] [--seeds N] [--grid R] [--out DIR]``."""
    return run_from_args(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
