"""Checks of user input before anything runs: names, hyperparameters, budgets, the results directory.

Every function here returns a list of one-line messages (empty: the input is valid), so a caller
can list every mistake at once (``bench.suite_file``) or stop at the first (the CLI). Nothing here
compiles, runs or writes anything.

Unknown names get the closest valid ones as suggestions (``difflib.get_close_matches``, ratio
>= 0.6): ``unknown optimizer 'adma' (did you mean 'adam'?)``.

Hyperparameter constraints are generic, so an optimizer registered later (a plug-in) gets them
with nothing to declare, and ``declare`` adds the rest:

* every numeric value must be finite;
* a hyperparameter searched on a log scale (a log ``Range`` in its search space) is a positive
  scale, so it must be > 0;
* a static integer hyperparameter whose default is >= 1 (a Krylov dimension, a memory size, a
  number of iterations) must be an integer >= 1;
* names that mean the same thing in every method (``NAMED``): learning rates, damping, radii and
  the cubic penalty sigma are > 0; decay rates of moving averages and momentum lie in [0, 1);
  stabilizing epsilons are >= 0; acceptance thresholds of trust-region and line-search tests
  lie in (0, 1);
* per optimizer, what ``declare(optimizer, name, Bound(...))`` added.

Problem parameters are checked by their factories (``rosenbrock: dim must be >= 2``); here they
are built (``problems.get``) so those checks run before any cell does.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Bound:
    """An interval of allowed values: low < x (``low_open``) or low <= x, and likewise for high."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def text(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low == -math.inf:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def intersect(self, other: Bound) -> Bound:
        if (other.low, other.low_open) > (self.low, self.low_open):
            low, low_open = other.low, other.low_open
        else:
            low, low_open = self.low, self.low_open
        if (other.high, not other.high_open) < (self.high, not self.high_open):
            high, high_open = other.high, other.high_open
        else:
            high, high_open = self.high, self.high_open
        return Bound(low, high, low_open, high_open)


POSITIVE = Bound(0.0, low_open=True)
NON_NEGATIVE = Bound(0.0)
UNIT_HALF_OPEN = Bound(0.0, 1.0, high_open=True)  # [0, 1)
UNIT_OPEN = Bound(0.0, 1.0, low_open=True, high_open=True)  # (0, 1)

# Hyperparameter names with one meaning in every method of the registry (and in optax).
NAMED: dict[str, Bound] = {
    "learning_rate": POSITIVE,
    "damping": POSITIVE,
    "radius": POSITIVE,
    "noise_radius": POSITIVE,
    "sigma": POSITIVE,
    "sigma_min": NON_NEGATIVE,
    "b1": UNIT_HALF_OPEN,
    "b2": UNIT_HALF_OPEN,
    "decay": UNIT_HALF_OPEN,
    "momentum": UNIT_HALF_OPEN,
    "eps": NON_NEGATIVE,
    "eta1": UNIT_OPEN,
    "eta2": UNIT_OPEN,
    "slope_rtol": UNIT_OPEN,
    "curv_rtol": UNIT_OPEN,
    "cg_tol": NON_NEGATIVE,
}

_DECLARED: dict[tuple[str, str], Bound] = {}


def declare(optimizer: str, name: str, bound: Bound) -> None:
    """Add a constraint on ``optimizer``'s hyperparameter ``name`` (a plug-in's own, for instance)."""
    _DECLARED[(optimizer, name)] = bound


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown optimizer 'adma' (did you mean 'adam'?); valid optimizers: ...``."""
    choices = sorted(choices)
    return f"unknown {kind} {name!r}{suggest(name, choices)}; valid {kind}s: {', '.join(choices)}"


# --- optimizers and their hyperparameters -------------------------------------------------------------


def bound(optimizer: str, name: str) -> Bound | None:
    """The allowed values of ``optimizer``'s hyperparameter ``name`` (see the module doc); None: any."""
    import optimizers

    sp = optimizers.spec(optimizer)
    default = sp.defaults.get(name)
    b = NAMED.get(name, Bound())
    r = sp.search_space.get(name)
    if r is not None and r.log:
        b = b.intersect(POSITIVE)
    if name in sp.static and isinstance(default, int) and not isinstance(default, bool) and default >= 1:
        b = b.intersect(Bound(1.0))
    if (optimizer, name) in _DECLARED:
        b = b.intersect(_DECLARED[(optimizer, name)])
    return None if b == Bound() else b


def optimizer_errors(names: Iterable[str]) -> list[str]:
    import optimizers

    valid = optimizers.names()
    return [unknown("optimizer", n, valid) for n in names if n not in valid]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def value_errors(optimizer: str, name: str, value: Any) -> list[str]:
    """What is wrong with one value of one hyperparameter (names and types known to be right)."""
    if not _is_number(value):
        return []
    v = float(value)
    if not math.isfinite(v):
        return [f"{optimizer}: hyperparameter {name!r} = {value!r} is not finite"]
    b = bound(optimizer, name)
    if b is not None and not b.contains(v):
        return [f"{optimizer}: hyperparameter {name!r} must be {b.text()}, got {value!r}"]
    return []


def hparam_errors(optimizer: str, hparams: Any) -> list[str]:
    """Every mistake in ``hparams`` of ``optimizer``: a mapping (values may be lists: a grid) or a
    list of such points (``bench.grid.expand``'s forms). Unknown names come with suggestions."""
    import optimizers

    if optimizer not in optimizers.names():
        return optimizer_errors([optimizer])
    if isinstance(hparams, Mapping):
        points = [hparams]
    elif isinstance(hparams, list) and all(isinstance(p, Mapping) for p in hparams):
        if not hparams:
            return [f"{optimizer}: an empty list of hyperparameter points"]
        points = hparams
    else:
        return [f"{optimizer}: hyperparameters must be an object of name: value (or a list of them), "
                f"got {hparams!r}"]
    sp = optimizers.spec(optimizer)
    errors: list[str] = []
    for point in points:
        for k, raw in point.items():
            if k not in sp.defaults:
                errors.append(f"{optimizer}: unknown hyperparameter(s) {[k]}{suggest(k, sp.defaults)}; valid: "
                              + ", ".join(f"{n}={d!r}" for n, d in sp.defaults.items()))
                continue
            values = raw if isinstance(raw, (list, tuple)) else [raw]
            if not values:
                errors.append(f"{optimizer}: an empty list of values for hyperparameter {k!r}")
            for v in values:
                try:
                    optimizers.check_hparams(optimizer, {k: v})
                except (TypeError, ValueError) as err:
                    errors.append(" ".join(str(err).split()))
                    continue
                if not (_is_number(v) or isinstance(v, bool)):  # e.g. a string where a string is the default
                    continue
                errors.extend(value_errors(optimizer, k, v))
    return list(dict.fromkeys(errors))  # each mistake once


# --- problems -----------------------------------------------------------------------------------------


def problem_errors(name: str, build: bool = True) -> list[str]:
    """What is wrong with a problem name (unknown family or parameter, with suggestions; a bad type);
    with ``build``, the instance is built so its factory's own checks run (``p must be 2, 3 or 4``)."""
    import problems

    if not isinstance(name, str) or not name.strip():
        return [f"a problem name must be a non-empty string, got {name!r}"]
    try:
        fam, params = problems.parse_name(name)
    except ValueError as err:
        return [str(err)]
    if fam not in problems.names():
        return [unknown("problem", fam, problems.names())]
    defaults = problems.family(fam).defaults
    bad = [k for k in params if k not in defaults]
    if bad:
        return [f"{fam}: unknown parameter {k!r}{suggest(k, defaults)}; valid parameters: "
                + ", ".join(f"{n}={d!r}" for n, d in defaults.items()) for k in bad]
    try:
        problems.canonical_name(name)
        if build:
            problems.get(name)
    except (KeyError, TypeError, ValueError) as err:
        return [" ".join(str(err.args[0] if err.args else err).split())]
    except Exception as err:  # a factory that fails on odd values without a message of its own
        return [f"cannot build problem {name!r}: {type(err).__name__}: {' '.join(str(err).split())}"]
    return []


GRID_RULE_MAX_POINTS = 9999  # lr<K> and qmc<K>: K at most this (the points of one compiled cell)


def grid_rule_errors(rule: Any) -> list[str]:
    """Whether ``rule`` is a grid rule (``bench.grid``): defaults, lr<K> or qmc<K> with 1 <= K <= 9999."""
    import re

    from bench import grid as grids

    if isinstance(rule, str) and (rule == "defaults" or re.fullmatch(r"(lr|qmc)[1-9]\d{0,3}", rule)):
        return []
    return [f"unknown grid rule {rule!r}{suggest(str(rule), ['defaults', 'lr5', 'qmc4'])}; valid: {grids.RULE_HELP}"]


# --- budgets and the results directory -------------------------------------------------------------------


MAX_SEEDS = 1_000_000


def budget_errors(seeds: Any, steps: Any, log_every: Any, tune_seeds: Any = None, where: str = "") -> list[str]:
    """Seeds, steps and log interval: positive integers, steps a multiple of log_every, tune_seeds in
    [0, seeds]. ``where`` prefixes each message (``--`` for command-line flags)."""
    errors = []

    def positive(label, v):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            errors.append(f"{where}{label} must be a positive integer, got {v!r}")
            return False
        if v < 1:
            errors.append(f"{where}{label} must be a positive integer, got {v}")
            return False
        return True

    ok_seeds = positive("seeds", seeds)
    if ok_seeds and seeds > MAX_SEEDS:
        errors.append(f"{where}seeds must be at most {MAX_SEEDS} (one compiled program runs them all), got {seeds}")
        ok_seeds = False
    ok_steps = positive("steps", steps)
    ok_log = positive("log_every" if not where else "log-every", log_every)
    if ok_steps and ok_log and steps % log_every:
        errors.append(f"{where}steps ({steps}) must be a multiple of {where}{'log-every' if where else 'log_every'} "
                      f"({log_every})")
    if tune_seeds is not None:
        label = "tune-seeds" if where else "tune_seeds"
        if isinstance(tune_seeds, bool) or not isinstance(tune_seeds, (int, np.integer)):
            errors.append(f"{where}{label} must be an integer, got {tune_seeds!r}")
        elif ok_seeds and not 0 <= tune_seeds <= seeds:
            errors.append(f"{where}{label} must be between 0 and {where}seeds ({seeds}), got {tune_seeds}")
        elif tune_seeds < 0:
            errors.append(f"{where}{label} must be >= 0, got {tune_seeds}")
    return errors


def writable_dir_errors(path: str | os.PathLike, label: str = "results directory") -> list[str]:
    """Whether ``path`` is, or can be created as, a writable directory; creates nothing.

    Walks up to the nearest existing ancestor: it must be a directory (not a file) that this
    process may write into (``os.access``; a root process may write anywhere but never below a file).
    """
    p = pathlib.Path(path)
    if str(path).strip() == "":
        return [f"the {label} is empty"]
    cur = p
    while not cur.exists():
        if cur.is_symlink():  # a dangling link
            return [f"cannot write the {label} {str(p)!r}: {str(cur)!r} is a broken symbolic link"]
        parent = cur.parent
        if parent == cur:
            break
        cur = parent
    if cur.exists() and not cur.is_dir():
        return [f"cannot write the {label} {str(p)!r}: {str(cur)!r} is not a directory"]
    if not os.access(cur, os.W_OK | os.X_OK):
        return [f"cannot write the {label} {str(p)!r}: no permission to write in {str(cur)!r}"]
    if p.exists():
        for sub in ("cells", ".locks"):
            q = p / sub
            if q.exists() and (not q.is_dir() or not os.access(q, os.W_OK | os.X_OK)):
                return [f"cannot write the {label} {str(p)!r}: {str(q)!r} is not a writable directory"]
    return []


# --- executors -----------------------------------------------------------------------------------------


def ray_installed() -> bool:
    """Whether Ray can be imported (looked up, not imported: the local path never loads Ray)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def executor_errors(executor: Any, address: Any = None) -> list[str]:
    """``--executor`` and ``--address``: a known executor (``bench.execute.EXECUTORS``), an address only
    with ``ray``, and Ray installed when it is asked for."""
    from bench.execute import EXECUTORS

    if executor not in EXECUTORS:
        return [unknown("executor", str(executor), EXECUTORS)]
    errors = []
    if address is not None and executor != "ray":
        errors.append(f"--address {address!r} is a Ray cluster's address: it needs --executor ray")
    elif address is not None and not str(address).strip():
        errors.append("--address is empty; give the head node's host:port, or auto")
    if executor == "ray" and not ray_installed():
        errors.append("--executor ray needs Ray, which is not installed: pip install -e '.[ray]'")
    return errors
