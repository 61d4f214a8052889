"""Your own suite as a TOML file: ``python -m bench run --suite-file my_suite.toml``.

The file describes a ``bench.suites.Suite`` (the same object the built-in suites are), so its cells,
keys and store files are those a built-in suite with the same contents would have. The format
(``docs/example_suite.toml`` is a complete, commented example)::

    name = "my_suite"               # optional; default: the file's stem
    description = "one line"        # optional
    seeds = 8                       # runs per hyperparameter point (seeds 0 .. seeds-1)
    tune_seeds = 4                  # optional: the first seeds choose the point, the rest are reported
                                    # (default: half)
    grid = "lr5"                    # "defaults", "lr<K>" or "qmc<K>" (bench.grid); or instead:
    # tuning_budget = 5             # K points per optimizer: the defaults and K - 1 Halton points
    optimizers = ["sgd", "adam"]    # optional; default: every registered optimizer
    curvature = false               # optional: Hessian extremes at every logged step
    imports = ["my_plugin"]         # optional: plug-in modules (names, or .py paths relative to this file)
    steps = 500                     # optional: the default budget of every problem below
    log_every = 10                  # optional: likewise

    [overrides.adam]                # optional: hyperparameters fixed for this suite (instead of the
    b1 = 0.8                        # registered defaults; the grid rule still sets the points)

    [[problems]]                    # one table per problem
    name = "rosenbrock"             # a family, or a full name "rosenbrock(dim=5)"
    params = { dim = 5 }            # optional: parameters (merged into the name's)
    steps = 1000                    # its budget (default: the top-level steps)
    log_every = 20                  # (default: the top-level log_every)

``load(path)`` checks the whole file before returning: every mistake (a TOML syntax error, an
unknown key, a wrong type, an unknown problem, parameter, optimizer or hyperparameter, with the
closest valid names suggested; a value a factory or a method does not allow; a budget that is not a
positive multiple of its log interval; a problem listed twice) is one line ``file: where: what``,
and all of them are raised together in one ``SuiteFileError``. Problems are built during the check
(their factories' own checks run), nothing is compiled or run.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from bench import grid as grids
from bench import plugins, suites, validate

TOP_KEYS = ("name", "description", "seeds", "tune_seeds", "grid", "tuning_budget", "optimizers", "curvature",
            "imports", "steps", "log_every", "overrides", "problems")
PROBLEM_KEYS = ("name", "params", "steps", "log_every")


class SuiteFileError(Exception):
    """A suite file with mistakes: ``errors`` holds one line per mistake."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def _fmt_value(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_fmt_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(v), type(v).__name__)


@dataclasses.dataclass
class _Checker:
    where: str
    errors: list[str] = dataclasses.field(default_factory=list)

    def add(self, loc: str, msg: str) -> None:
        self.errors.append(f"{self.where}: {loc}: {msg}" if loc else f"{self.where}: {msg}")

    def keys(self, table: Mapping, valid: tuple[str, ...], loc: str) -> None:
        for k in table:
            if k not in valid:
                self.add(f"{loc}{k}", f"unknown key{validate.suggest(k, valid)}; valid keys: {', '.join(valid)}")

    def typed(self, table: Mapping, key: str, kinds: tuple[type, ...], what: str, loc: str = "") -> Any:
        """``table[key]`` if present and of the right type (bool is never an int here), else None."""
        if key not in table:
            return None
        v = table[key]
        ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
        if not ok:
            self.add(f"{loc}{key}", f"must be {what}, got {_type_name(v)} {v!r}")
            return None
        return v


def _problem_name(entry: Mapping, chk: _Checker, loc: str) -> str | None:
    name = chk.typed(entry, "name", (str,), "a string (a problem family or a full name)", loc)
    if "name" not in entry:
        chk.add(loc.rstrip("."), "missing key 'name' (the problem)")
    params = chk.typed(entry, "params", (dict,), "a table of parameters", loc)
    if name is None:
        return None
    if params:
        import problems

        try:
            fam, given = problems.parse_name(name)
        except ValueError as err:
            chk.add(f"{loc}name", str(err))
            return None
        clash = sorted(set(given) & set(params))
        if clash:
            chk.add(f"{loc}params", f"{', '.join(clash)} given both in the name and in params")
            return None
        merged = {**given, **params}
        name = f"{fam}(" + ",".join(f"{k}={_fmt_value(v)}" for k, v in merged.items()) + ")"
    errors = validate.problem_errors(name)
    for e in errors:
        chk.add(f"{loc}name" if not params else loc.rstrip("."), e)
    return None if errors else name


def parse(data: Mapping, where: str = "<suite>", base: pathlib.Path | None = None) -> suites.Suite:
    """The ``Suite`` a decoded suite file describes; raises ``SuiteFileError`` listing every mistake."""
    import optimizers
    import problems

    chk = _Checker(where)
    chk.keys(data, TOP_KEYS, "")
    # plug-ins first: the names below may be theirs
    imports = chk.typed(data, "imports", (list,), "an array of module names or .py paths")
    for i, spec in enumerate(imports or []):
        if not isinstance(spec, str) or not spec.strip():
            chk.add(f"imports[{i}]", f"must be a module name or a path to a .py file, got {spec!r}")
            continue
        if plugins._is_path(spec) and base is not None and not pathlib.Path(spec).is_absolute():
            spec = str(base / spec)
        try:
            plugins.load([spec])
        except plugins.PluginError as err:
            chk.add(f"imports[{i}]", str(err))
    name = chk.typed(data, "name", (str,), "a string") or (pathlib.Path(where).stem if where != "<suite>" else "file")
    description = chk.typed(data, "description", (str,), "a string") or f"suite file {where}"
    seeds = chk.typed(data, "seeds", (int,), "a positive integer")
    if "seeds" not in data:
        chk.add("", "missing key 'seeds' (runs per hyperparameter point)")
    elif seeds is not None and not 1 <= seeds <= validate.MAX_SEEDS:
        chk.add("seeds", f"must be a positive integer (at most {validate.MAX_SEEDS}), got {seeds}")
        seeds = None
    tune_seeds = chk.typed(data, "tune_seeds", (int,), "an integer")
    if tune_seeds is not None and (tune_seeds < 0 or (seeds is not None and tune_seeds > seeds)):
        chk.add("tune_seeds", f"must be between 0 and seeds ({seeds}), got {tune_seeds}")
    curvature = chk.typed(data, "curvature", (bool,), "true or false")
    grid = chk.typed(data, "grid", (str,), "a grid rule: " + grids.RULE_HELP)
    budget = chk.typed(data, "tuning_budget", (int,), "a positive integer (hyperparameter points per optimizer)")
    if grid is not None and budget is not None:
        chk.add("tuning_budget", "give either grid or tuning_budget, not both")
    elif budget is not None:
        if budget < 1:
            chk.add("tuning_budget", f"must be a positive integer, got {budget}")
        grid = "defaults" if budget <= 1 else f"qmc{budget - 1}"
    grid = grid or "defaults"
    for e in validate.grid_rule_errors(grid):
        chk.add("grid", e)
        grid = None
    opts = chk.typed(data, "optimizers", (list,), "an array of optimizer names")
    if opts is not None:
        if not opts:
            chk.add("optimizers", "is empty; leave it out to run every registered optimizer")
        for i, o in enumerate(opts):
            if not isinstance(o, str):
                chk.add(f"optimizers[{i}]", f"must be an optimizer name, got {o!r}")
            elif o not in optimizers.names():
                chk.add(f"optimizers[{i}]", validate.unknown("optimizer", o, optimizers.names()))
            elif opts.index(o) != i:
                chk.add(f"optimizers[{i}]", f"{o!r} is listed twice")
    overrides_raw = chk.typed(data, "overrides", (dict,), "a table of [overrides.<optimizer>] tables")
    overrides: dict[str, dict] = {}
    for o, hp in (overrides_raw or {}).items():
        loc = f"overrides.{o}"
        if o not in optimizers.names():
            chk.add(loc, validate.unknown("optimizer", o, optimizers.names()))
            continue
        if opts is not None and o not in opts:
            chk.add(loc, f"{o!r} is not among the suite's optimizers ({', '.join(map(str, opts))})")
            continue
        if not isinstance(hp, dict):
            chk.add(loc, f"must be a table of hyperparameters, got {_type_name(hp)} {hp!r}")
            continue
        lists = [k for k, v in hp.items() if isinstance(v, list)]
        if lists:
            chk.add(loc, f"{', '.join(lists)}: one value each (the grid rule chooses the points)")
            continue
        errors = validate.hparam_errors(o, hp)
        for e in errors:
            chk.add(loc, e)
        if not errors:
            overrides[o] = dict(hp)
    default_steps = chk.typed(data, "steps", (int,), "a positive integer")
    default_log = chk.typed(data, "log_every", (int,), "a positive integer")
    entries = []
    probs = data.get("problems")
    if probs is None:
        chk.add("", "missing [[problems]]: at least one problem table")
        probs = []
    elif not isinstance(probs, list) or not all(isinstance(p, dict) for p in probs):
        chk.add("problems", "must be an array of tables: [[problems]] name = ..., steps = ..., log_every = ...")
        probs = []
    elif not probs:
        chk.add("problems", "is empty: give at least one [[problems]] table")
    seen: dict[str, int] = {}
    for i, entry in enumerate(probs):
        loc = f"problems[{i}]."
        chk.keys(entry, PROBLEM_KEYS, loc)
        pname = _problem_name(entry, chk, loc)
        steps = chk.typed(entry, "steps", (int,), "a positive integer", loc)
        log_every = chk.typed(entry, "log_every", (int,), "a positive integer", loc)
        steps = steps if "steps" in entry else default_steps
        log_every = log_every if "log_every" in entry else default_log
        if steps is None and "steps" not in entry and default_steps is None:
            chk.add(f"{loc}steps", "missing (give steps here or at the top level)")
        if log_every is None and "log_every" not in entry and default_log is None:
            chk.add(f"{loc}log_every", "missing (give log_every here or at the top level)")
        if steps is None or log_every is None:
            continue
        budget_errs = validate.budget_errors(1, steps, log_every)
        for e in budget_errs:
            chk.add(loc.rstrip("."), e)
        if pname is None or budget_errs:
            continue
        canonical = problems.canonical_name(pname)
        key = f"{canonical} x {steps} steps"
        if key in seen:
            chk.add(loc.rstrip("."), f"the same problem and budget as problems[{seen[key]}] ({canonical})")
            continue
        seen[key] = i
        entries.append(suites.Entry(pname, steps, log_every))
    if chk.errors:
        raise SuiteFileError(chk.errors)
    suite = suites.Suite(name=name, description=description, entries=tuple(entries), seeds=seeds,
                         tune_seeds=tune_seeds, curvature=bool(curvature), grid=grid,
                         optimizers=tuple(opts) if opts is not None else None, overrides=overrides)
    for o in suite.optimizer_names():  # the rule with the overrides: what cells() will build
        try:
            grids.rule(o, grid, overrides.get(o))
        except (KeyError, TypeError, ValueError) as err:
            chk.add(f"overrides.{o}" if o in overrides else "grid", " ".join(str(err).split()))
    if chk.errors:
        raise SuiteFileError(chk.errors)
    return suite


def load(path: str | pathlib.Path) -> suites.Suite:
    """Read and check a suite file (see the module doc); raises ``SuiteFileError`` listing every mistake."""
    path = pathlib.Path(path)
    where = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SuiteFileError([f"{where}: no such file"]) from None
    except IsADirectoryError:
        raise SuiteFileError([f"{where}: is a directory, not a suite file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteFileError([f"{where}: cannot read it ({' '.join(str(err).split())})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SuiteFileError([f"{where}: invalid TOML: {' '.join(str(err).split())}"]) from None
    return parse(data, where, base=path.resolve().parent)
