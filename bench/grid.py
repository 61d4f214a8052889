"""Hyperparameter grids: expansion, validation and the grid rules, in one place.

A cell runs one optimizer at several hyperparameter points in one compiled program. The points
split in two: *static* values (shapes, loop counts, booleans) fix the program and must agree
across points; *traced* values (learning rates, damping, radii) are float32 arrays with one
entry per point, so a sweep of 100 learning rates compiles once.

    g = grid.expand("adam", {"learning_rate": [1e-3, 1e-2], "b1": 0.9})   # a Cartesian product
    g = grid.rule("adam", "lr5")                                           # a suite's grid rule
    g.full_points()    # every hyperparameter of every point (what the store hashes)
    g.arrays()         # {name: float32 (H,)}: what the compiled program takes

Grid rules (what suites and ``--grid`` name):
  ``"defaults"``: the optimizer's registered defaults, one point.
  ``"lr<K>"``: K log-spaced learning rates across the optimizer's ``learning_rate`` search range
  (rounded to 3 significant digits); its defaults where it has no such range.
  ``"qmc<K>"``: the defaults (point 0, the *defaults track*) and K quasi-random points over the
  optimizer's whole registered search space: a scrambled Halton sequence (``scipy.stats.qmc``,
  fixed seed, so the points are reproducible), each coordinate mapped onto its range, log-uniform
  where the range is logarithmic, rounded to 3 significant digits. Every optimizer gets the same
  number of points, whatever the size of its search space.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import optimizers

HParams = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


@dataclasses.dataclass(frozen=True)
class Grid:
    """The hyperparameter points of one cell.

    Attributes:
      optimizer: the registered optimizer the points belong to.
      static: values shared by every point (static and boolean hyperparameters).
      points: per point, the traced values (every traced numeric hyperparameter, as float).
    """

    optimizer: str
    static: dict[str, Any]
    points: list[dict[str, float]]

    @property
    def traced_names(self) -> list[str]:
        return sorted(self.points[0]) if self.points else []

    def __len__(self) -> int:
        return len(self.points)

    def full_points(self) -> list[dict[str, Any]]:
        """Every hyperparameter of every point: defaults, then static values, then traced values."""
        defaults = optimizers.spec(self.optimizer).defaults
        return [{**defaults, **self.static, **p} for p in self.points]

    def arrays(self) -> dict[str, np.ndarray]:
        """The traced values as float32 arrays of shape (points,), the compiled program's input."""
        return {k: np.asarray([p[k] for p in self.points], np.float32) for k in self.traced_names}


def expand(optimizer: str, hparams: HParams | Grid = None) -> Grid:
    """Expand ``hparams`` into a ``Grid`` (defaults filled in, names and types checked).

    ``None`` is the defaults; a mapping whose values may be lists is a Cartesian product
    (``{"learning_rate": [1e-3, 1e-2], "b1": 0.9}`` is two points); a list of mappings is
    those points; a ``Grid`` is returned as it is (after checking its optimizer). Static
    hyperparameters (shapes, loop counts) and booleans must agree across points.
    """
    if isinstance(hparams, Grid):
        if hparams.optimizer != optimizer:
            raise ValueError(f"a grid of {hparams.optimizer!r} given for optimizer {optimizer!r}")
        return hparams
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
    bools = [k for k in spec.traced if isinstance(spec.defaults[k], bool)]
    fixed = list(spec.static) + bools
    for p in full[1:]:
        for k in fixed:
            if p[k] != full[0][k]:
                kind = "boolean" if k in bools else "static"
                raise ValueError(
                    f"{optimizer}: {kind} hyperparameter {k!r} varies across points "
                    f"({full[0][k]!r} vs {p[k]!r}); it fixes the program, so run one cell per value"
                )
    traced = [k for k in spec.traced if k not in bools]
    points = []
    for p in full:
        point = {}
        for k in traced:
            v = float(p[k])
            if not math.isfinite(v):
                raise ValueError(f"{optimizer}: hyperparameter {k!r} = {v} is not finite")
            point[k] = v
        points.append(point)
    static = {k: full[0][k] for k in spec.static}
    static.update({k: full[0][k] for k in bools})
    return Grid(optimizer=optimizer, static=static, points=points)


RULE_HELP = ("'defaults', 'lr<K>' (K log-spaced learning rates) or 'qmc<K>' (the defaults and K Halton points "
             "over the whole search space)")

# Seed of the Halton scrambling: part of what a grid rule means, so it never changes.
QMC_SEED = 0


@functools.lru_cache(maxsize=256)
def halton_points(optimizer: str, k: int) -> tuple[dict[str, float], ...]:
    """K scrambled-Halton points over ``optimizer``'s registered search space (see ``qmc<K>``).

    Cached: callers copy the points, never change them.
    """
    from scipy.stats import qmc

    space = optimizers.spec(optimizer).search_space
    if not space or k < 1:
        return ()
    names = list(space)
    u = qmc.Halton(d=len(names), scramble=True, seed=QMC_SEED).random(k)
    points = []
    for row in u:
        point = {}
        for name, x in zip(names, row):
            r = space[name]
            v = math.exp(math.log(r.low) + x * (math.log(r.high) - math.log(r.low))) if r.log \
                else r.low + x * (r.high - r.low)
            point[name] = float(f"{v:.3g}")
        points.append(point)
    return tuple(points)


def rule(optimizer: str, name: str, overrides: Mapping[str, Any] | None = None) -> Grid:
    """The grid of ``optimizer`` under a grid rule (see the module docstring).

    ``overrides`` replace registered defaults in every point (the rule still sets the learning rate).
    """
    spec = optimizers.spec(optimizer)
    base = optimizers.check_hparams(optimizer, {**spec.defaults, **(overrides or {})})
    if name == "defaults":
        return expand(optimizer, [base])
    m = re.fullmatch(r"(lr|qmc)(\d+)", name)
    if not m:
        raise ValueError(f"unknown grid rule {name!r}; valid: {RULE_HELP}")
    k = int(m.group(2))
    if m.group(1) == "qmc":
        return expand(optimizer, [base, *({**base, **p} for p in halton_points(optimizer, k))])
    rng = spec.search_space.get("learning_rate")
    if rng is None or k < 1:
        return expand(optimizer, [base])
    values = np.geomspace(rng.low, rng.high, k) if rng.log else np.linspace(rng.low, rng.high, k)
    return expand(optimizer, [{**base, "learning_rate": float(f"{v:.3g}")} for v in values])
