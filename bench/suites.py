"""Suites are data: which problems, which optimizers, how many seeds and steps, which grid.

``smoke`` runs in seconds (tests use it); ``quick`` is what ``make bench`` runs on a 2-core CPU
(every registered problem x a representative subset of the optimizers, ``QUICK_OPTIMIZERS``, at
small size); ``full`` is the accelerator-sized version (N = 300 spin glass, depth-6 linear
networks, wider MLPs) and runs every registered optimizer.

``QUICK_OPTIMIZERS``: 15 optimizers, as many as the quick suite ran before the modern optimizers
came, so its 165 cells stay and its time does not grow: every saddle-specific method it had
(noisy SGD, sphere-noise SGD, perturbed GD, cubic regularization, stochastic cubic
regularization, saddle-free Newton, negative-curvature descent), the baselines each family is
measured against (SGD, heavy-ball momentum, Adam; L-BFGS; Newton-CG), and three of the
optimizers users train with, chosen for what is different about them on a saddle and for being
cheap: Lion (sign steps of size lr), SAM (the gradient at an ascent point; 2 gradients a step) and
Sophia (clipped diagonal Newton: sign steps along negative curvature; one HVP every 10 steps; its
digits-MLP cell ran 8 s against 5-14 s for the Nesterov and RMSProp cells it replaces, 40 seeds x
5 points, 2-core CPU). Left to ``full``: Nesterov, RMSProp and AdaGrad (close to momentum and
Adam), AdamW, NAdam, RAdam, AMSGrad, AdaBelief, Adafactor, schedule-free AdamW, Prodigy, Muon,
AdaHessian, and the sub-sampled methods, SGD + Neon2 and Natasha2, whose digits-MLP cells did not
finish within 4 minutes of CPU on the same machine (the quick suite's cell timeout is 240 s).
Muon on a problem without matrix parameters (the 2-D saddles, Rosenbrock, the chained saddle,
the spin glass) is AdamW, as ``optax.contrib.muon`` routes non-matrix leaves
(``optimizers.classics.muon``); ``full`` runs it there too, so its row is complete.

A suite's hyperparameters come from a grid rule (``bench.grid.rule``): ``"defaults"`` runs each
optimizer's defaults; ``"lr<K>"`` runs K log-spaced learning rates across the optimizer's
``learning_rate`` search range; ``"qmc<K>"`` the defaults and K Halton points over the whole search
space. The leaderboard then picks each optimizer's best point on the first ``tune_seeds`` seeds
(tuning seeds; default half) and reports it on the others (held-out seeds), so the published
numbers are not selected on the data they report.

Expanding a suite into cells builds no problem instance: canonical names come from the registry
(``problems.canonical_name``).
"""

from __future__ import annotations

import dataclasses

import optimizers
import problems
from bench import grid as grids
from bench.store import CellSpec, make_spec


@dataclasses.dataclass(frozen=True)
class Entry:
    """A problem in a suite, with its step budget."""

    problem: str
    steps: int
    log_every: int


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (problem, optimizer) cell: the unit that is compiled, run and stored."""

    problem: str  # canonical name
    optimizer: str
    grid: grids.Grid
    seeds: list
    steps: int
    log_every: int
    tune_seeds: int | None = None  # the first seeds that are tuning seeds (None: half of them)
    curvature: bool = False  # Hessian extremes and index at every logged step

    def spec(self, dtype: str = "float32") -> CellSpec:
        """What determines the cell's numbers (and names its file in the store)."""
        return make_spec(self.problem, self.optimizer, self.grid.full_points(), self.seeds, self.steps,
                         self.log_every, dtype, self.tune_seeds, self.curvature)


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    entries: tuple[Entry, ...]
    seeds: int
    # the first tune_seeds seeds choose each optimizer's hyperparameters, the rest are held out
    # and reported (None: half of them)
    tune_seeds: int | None = None
    curvature: bool = False  # record the Hessian's extremes and index at every logged step
    grid: str = "defaults"
    optimizers: tuple[str, ...] | None = None  # None: every registered optimizer
    # per optimizer, hyperparameters fixed for this suite in place of the registered defaults
    overrides: dict[str, dict] = dataclasses.field(default_factory=dict)

    def optimizer_names(self) -> list[str]:
        return list(self.optimizers) if self.optimizers is not None else optimizers.names()

    def cells(self) -> list[Cell]:
        out = []
        for e in self.entries:
            name = problems.canonical_name(e.problem)
            for opt in self.optimizer_names():
                out.append(Cell(name, opt, grids.rule(opt, self.grid, self.overrides.get(opt)),
                                list(range(self.seeds)), e.steps, e.log_every, self.tune_seeds,
                                self.curvature))
        return out


# The quick suite's optimizers (see the module doc for why these), grouped by family.
QUICK_OPTIMIZERS = (
    "sgd", "momentum", "adam", "lion", "sam",  # first-order
    "noisy_sgd", "sphere_noise_sgd", "perturbed_gd",  # noise-injecting
    "lbfgs",  # quasi-Newton
    "newton", "saddle_free_newton", "cubic_reg", "nc_descent", "stochastic_cubic", "sophia",  # Hessian-vector
)

SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite(
            name="smoke",
            description="seconds: two saddle problems x two optimizers (used by the tests)",
            entries=(Entry("strict_saddle", 200, 20), Entry("rosenbrock(dim=2)", 200, 20)),
            seeds=4,
            optimizers=("sgd", "adam"),
        ),
        Suite(
            name="quick",
            description="every problem x 15 representative optimizers at small size; minutes on a 2-core CPU",
            entries=(
                # saddle starts: the 2-D saddles and saddle_nd start within 1e-3 (1e-2 for the
                # degenerate ones) of the saddle at the origin, so escaping it is what is measured
                Entry("strict_saddle(init_radius=0.001)", 500, 10),
                Entry("saddle_nd(dim=10,index=3)", 1000, 20),
                Entry("monkey_saddle(init_radius=0.01)", 500, 10),
                Entry("degenerate_saddle(init_radius=0.01)", 500, 10),
                Entry("rosenbrock(dim=5)", 2000, 20),
                Entry("chained_saddle(dim=5)", 1000, 20),
                Entry("matrix_factorization(n=10,rank=2)", 500, 10),
                Entry("deep_linear(depth=3,width=4,d_in=4,d_out=4,n_samples=32,teacher_rank=2)", 500, 10),
                # k = n = 12: gradient descent ends at a spurious minimum from about half of the starts
                # (problems/relu_teacher.py), where k = 6 does from well under 1%
                Entry("relu_teacher(k=12,batch_size=32)", 500, 10),
                Entry("relu_mlp(dataset='digits',width=16,depth=1,batch_size=64)", 500, 25),
                Entry("spin_glass(p=3,n=30)", 300, 10),
            ),
            # 8 tuning seeds choose each optimizer's point, 32 held-out seeds measure it: Wilson
            # intervals of a success rate at most +-17 points wide
            seeds=40,
            tune_seeds=8,
            # the defaults (the defaults track) and 4 Halton points over each optimizer's whole
            # search space: 5 points, as many as the learning-rate grid this replaced
            grid="qmc4",
            optimizers=QUICK_OPTIMIZERS,
            # stochastic cubic's sub-solver and final solver run T_sub and T_final HVPs a step,
            # and under vmap both branches run where the batch's runs differ (batch_cond): 20 + 20
            # instead of the default 50 + 50 makes its cells cost what the other second-order cells
            # cost (the digits MLP: 32 s
            # instead of 100 s); it reached the MLP target on 15 of 16 seeds at its best rate.
            overrides={"stochastic_cubic": {"T_sub": 20, "T_final": 20}},
        ),
        Suite(
            name="full",
            description="accelerator sizes: N = 300 spin glass, depth-6 linear nets, wider MLPs; every optimizer",
            entries=(
                Entry("strict_saddle", 1000, 10),
                Entry("saddle_nd(dim=1000,index=50)", 5000, 50),
                Entry("monkey_saddle", 1000, 10),
                Entry("degenerate_saddle", 1000, 10),
                Entry("rosenbrock(dim=50)", 20000, 200),
                Entry("chained_saddle(dim=10)", 10000, 100),
                Entry("matrix_factorization(n=100,rank=5)", 5000, 50),
                Entry("deep_linear(depth=6,width=64,d_in=32,d_out=32,n_samples=1024,teacher_rank=16,"
                      "init='balanced',init_scale=0.5)", 5000, 50),
                Entry("relu_teacher(k=20)", 10000, 100),
                Entry("relu_mlp(width=256,depth=3,batch_size=256)", 5000, 50),
                Entry("spin_glass(p=3,n=300)", 5000, 50),
                Entry("spin_glass(p=4,n=60)", 5000, 50),
            ),
            seeds=160,
            tune_seeds=32,  # 128 held-out runs per cell
            grid="qmc8",
        ),
        Suite(
            name="escape",
            description="saddle starts only: escape steps and cost (hit_step@escape); minutes on a 2-core CPU",
            entries=(
                # within 1e-3 of the strict saddle / the index-k saddle of saddle_nd at the origin
                Entry("strict_saddle(init_radius=0.001)", 500, 10),
                Entry("saddle_nd(dim=10,index=1)", 500, 10),
                Entry("saddle_nd(dim=100,index=10)", 500, 10),
                # the origin of a deep linear net from a small balanced init: strict (D = 2), degenerate (D = 3)
                Entry("deep_linear(depth=2,width=4,d_in=4,d_out=4,n_samples=32,teacher_rank=2,init='balanced',"
                      "init_scale=0.1)", 1000, 10),
                Entry("deep_linear(depth=3,width=4,d_in=4,d_out=4,n_samples=32,teacher_rank=2,init='balanced',"
                      "init_scale=0.1)", 1000, 10),
                # Du et al. 2017: from their init, GD passes the 4 saddles one ~4x slower than the last
                Entry("chained_saddle(dim=4)", 1000, 20),
            ),
            seeds=16,
            tune_seeds=8,
            grid="lr4",
            optimizers=("sgd", "adam", "perturbed_gd", "cubic_reg", "saddle_free_newton"),
            # lambda_min, lambda_max and the index at every logged step: does a run leave the saddle
            # region along its negative curvature? (the report's curvature figures)
            curvature=True,
        ),
    ]
}


def get(name: str) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; valid suites: {', '.join(sorted(SUITES))}")
    return SUITES[name]


def names() -> list[str]:
    return sorted(SUITES)
