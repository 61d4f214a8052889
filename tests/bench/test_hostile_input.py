"""Hostile input (issue 14, item 4): every mistake is one clear line on stderr, exit status 2, nothing written.

Nothing here compiles or runs a cell: ``bench.execute.run_cells`` is replaced by a stub (a test
fails if a bad command reaches it), and the checks (``bench.validate``, ``bench.suite_file``,
``bench.plugins``) run before any JAX program. Property-based tests (hypothesis) throw argument
lists and hyperparameter dictionaries at the CLI and at the checks: the CLI either accepts the
command (and what it would run passes every check) or exits 2 with one ``error:`` line, never a
traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optimizers
from bench import cli, suite_file, validate
from bench import execute as execute_mod
from bench import grid as grids


class _Ran(Exception):
    pass


def _main(argv: list[str], fake_run=None) -> tuple[int, str, list]:
    """``cli.main(argv)`` with ``run_cells`` stubbed: (exit status, stderr, the cells it would run)."""
    ran: list = []

    def stub(cells, store, **kwargs):
        ran.extend(cells)
        return execute_mod.Outcome(specs=[c.spec() for c in cells])

    err = io.StringIO()
    with mock.patch.object(execute_mod, "run_cells", fake_run or stub), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as exit_:  # argparse
            rc = exit_.code
    return rc, err.getvalue(), ran


def _assert_one_line(rc: int, err: str, expect: str | None = None) -> None:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if expect is not None:
        assert expect in lines[0], (expect, lines[0])


def _never_run(cells, store, **kwargs):
    raise _Ran("a bad command reached run_cells")


RUN = ["run", "--problems", "strict_saddle", "--optimizers", "adam", "--steps", "20", "--log-every", "10",
       "--seeds", "2"]


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replacing it if present)."""
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
        return out
    return out + [flag, value]


@pytest.mark.parametrize("changes, expect", [
    ([("--optimizers", "adma")], "unknown optimizer 'adma' (did you mean 'adam'"),
    ([("--problems", "rosenbrok")], "unknown problem 'rosenbrok' (did you mean 'rosenbrock'?)"),
    ([("--problems", "rosenbrock(dimm=3)")], "unknown parameter 'dimm' (did you mean 'dim'?)"),
    ([("--problems", "rosenbrock(dim=")], "cannot parse problem name 'rosenbrock(dim='"),
    ([("--problems", "spin_glass(p=1,n=10)")], "spin_glass: p must be 2, 3 or 4, got 1"),
    ([("--problems", "strict_saddle(init_radius=-1.0)")], "init_radius must be > 0"),
    ([("--hparams", '{"learning_rate": -1}')], "adam: hyperparameter 'learning_rate' must be > 0, got -1"),
    ([("--optimizers", "sgd"), ("--hparams", '{"learning_rate": [0.1, 0]}')], "'learning_rate' must be > 0, got 0"),
    ([("--optimizers", "saddle_free_newton"), ("--hparams", '{"damping": 0}')], "'damping' must be > 0, got 0"),
    ([("--optimizers", "newton"), ("--hparams", '{"damping": -0.5}')], "'damping' must be > 0"),
    ([("--optimizers", "perturbed_gd"), ("--hparams", '{"radius": -0.1}')], "'radius' must be > 0"),
    ([("--optimizers", "sphere_noise_sgd"), ("--hparams", '{"noise_radius": 0.0}')], "'noise_radius' must be > 0"),
    ([("--optimizers", "cubic_reg"), ("--hparams", '{"sigma": -1}')], "'sigma' must be > 0"),
    ([("--optimizers", "cubic_reg"), ("--hparams", '{"krylov_dim": 0}')], "'krylov_dim' must be >= 1, got 0"),
    ([("--optimizers", "cubic_reg"), ("--hparams", '{"krylov_dim": 2.5}')], "'krylov_dim' must be an integer"),
    ([("--hparams", '{"b1": 1.5}')], "'b1' must be in [0, 1), got 1.5"),
    ([("--hparams", '{"learning_rate": "fast"}')], "'learning_rate' must be a number, got 'fast'"),
    ([("--hparams", '{"learning_rate": NaN}')], "'learning_rate' = nan is not finite"),
    ([("--hparams", '{"learning_rate": 1e999}')], "'learning_rate' = inf is not finite"),
    ([("--hparams", '{"lerning_rate": 0.1}')], "unknown hyperparameter(s) ['lerning_rate'] (did you mean "
                                               "'learning_rate'?)"),
    ([("--hparams", "{bad")], "--hparams is not valid JSON"),
    ([("--hparams", '{"a":\n')], "--hparams is not valid JSON"),
    ([("--hparams", "[" * 100_000)], "--hparams"),
    ([("--hparams", '"adam"')], "--hparams must be a JSON object"),
    ([("--steps", "-5")], "--steps must be a positive integer, got -5"),
    ([("--steps", "0")], "--steps must be a positive integer, got 0"),
    ([("--seeds", "0")], "--seeds must be a positive integer, got 0"),
    ([("--seeds", "10000000000")], "--seeds must be at most 1000000"),
    ([("--log-every", "0")], "--log-every must be a positive integer, got 0"),
    ([("--steps", "25")], "--steps (25) must be a multiple of --log-every (10)"),
    ([("--tune-seeds", "3")], "--tune-seeds must be between 0 and --seeds (2), got 3"),
    ([("--grid", "lr0")], "unknown grid rule 'lr0'"),
    ([("--grid", "qmc")], "unknown grid rule 'qmc'"),
    ([("--steps", "abc")], "argument --steps: invalid int value: 'abc'"),
    ([("--workers", "0")], "--workers must be a positive integer, got 0"),
    ([("--cell-timeout", "-1")], "--cell-timeout must be a positive number of seconds"),
    ([("--cell-timeout", "nan")], "--cell-timeout must be a positive number of seconds"),
    ([("--import", "no_such_module_xyz")], "cannot import plug-in 'no_such_module_xyz': no module named"),
    ([("--import", "missing_dir/plugin.py")], "no such file"),
])
def test_bad_run_arguments_are_one_line_errors(changes, expect, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = RUN + ["--results", str(tmp_path / "results")]
    for flag, value in changes:
        argv = _with(argv, flag, value)
    rc, err, _ = _main(argv, _never_run)
    _assert_one_line(rc, err, expect)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_unknown_suite_suggests_the_closest(tmp_path):
    rc, err, _ = _main(["run", "--suite", "quik", "--results", str(tmp_path / "r")], _never_run)
    _assert_one_line(rc, err, "unknown suite 'quik' (did you mean 'quick'?)")


def test_unwritable_results_directory_is_refused_before_anything_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    rc, err, _ = _main(RUN + ["--results", str(blocker / "results")], _never_run)
    _assert_one_line(rc, err, f"{str(blocker)!r} is not a directory")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "cells").write_text("a file where the cells go")
    rc, err, _ = _main(RUN + ["--results", str(tmp_path / "results")], _never_run)
    _assert_one_line(rc, err, "cells' is not a writable directory")
    assert validate.writable_dir_errors(tmp_path / "new" / "deeper") == []
    assert not (tmp_path / "new").exists()


def test_report_of_missing_stores_is_an_error(tmp_path):
    rc, err, _ = _main(["report", "--store", str(tmp_path / "nowhere"), "--results", str(tmp_path / "out")])
    _assert_one_line(rc, err, "no stored results there")
    assert not (tmp_path / "out").exists()


def test_argparse_errors_are_one_line():
    for argv in (["run", "--no-such-flag"], ["nonsense"], [], ["run", "--seeds"]):
        rc, err, _ = _main(argv, _never_run)
        _assert_one_line(rc, err)


# --- the suite file: every mistake listed, one line each -------------------------------------------------


BAD_SUITE = """
name = "bad"
seeds = 0
tune_seeds = 3
grid = "lr"
optimizers = ["adma", "sgd", "sgd"]
curvatur = true

[overrides.sgd]
learning_rate = -0.1

[overrides.nesterov]
momentum = 0.5

[[problems]]
name = "rosenbrok"
steps = 100
log_every = 10

[[problems]]
name = "spin_glass"
params = { p = 1, n = 10 }
steps = -5
log_every = 10

[[problems]]
name = "strict_saddle"
steps = 30
log_every = 20

[[problems]]
name = "strict_saddle(init_radius=0.5)"
params = { init_radius = 0.1 }
steps = 10
"""


def test_every_mistake_in_a_suite_file_is_listed(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_SUITE)
    rc, err, _ = _main(["run", "--suite-file", str(path), "--results", str(tmp_path / "results")], _never_run)
    assert rc == 2 and "Traceback" not in err, err
    lines = err.splitlines()
    assert all(line.startswith(f"error: {path}: ") for line in lines), err
    expected = [
        "curvatur: unknown key (did you mean 'curvature'?)",
        "seeds: must be a positive integer (at most 1000000), got 0",
        "grid: unknown grid rule 'lr'",
        "optimizers[0]: unknown optimizer 'adma' (did you mean 'adam'",
        "optimizers[2]: 'sgd' is listed twice",
        "overrides.sgd: sgd: hyperparameter 'learning_rate' must be > 0, got -0.1",
        "overrides.nesterov: 'nesterov' is not among the suite's optimizers",
        "problems[0].name: unknown problem 'rosenbrok' (did you mean 'rosenbrock'?)",
        "problems[1]: spin_glass: p must be 2, 3 or 4, got 1",
        "problems[1]: steps must be a positive integer, got -5",
        "problems[2]: steps (30) must be a multiple of log_every (20)",
        "problems[3].params: init_radius given both in the name and in params",
        "problems[3].log_every: missing (give log_every here or at the top level)",
    ]
    for e in expected:
        assert sum(e in line for line in lines) == 1, (e, err)
    assert len(lines) == len(expected), err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("text, expect", [
    ("seeds = 2\n[[problems]\nname = 'x'", "invalid TOML"),
    ("seeds = 'four'\n[[problems]]\nname = 'strict_saddle'\nsteps = 10\nlog_every = 5", "seeds: must be a positive "
     "integer, got a string 'four'"),
    ("seeds = 10000000000\n[[problems]]\nname = 'strict_saddle'\nsteps = 10\nlog_every = 5", "seeds: must be a "
     "positive integer (at most 1000000), got 10000000000"),
    ("seeds = 2", "missing [[problems]]"),
    ("seeds = true\n[[problems]]\nname = 'strict_saddle'\nsteps = 10\nlog_every = 5", "seeds: must be a positive "
     "integer, got a boolean True"),
    ("seeds = 2\ngrid = 'lr3'\ntuning_budget = 4\n[[problems]]\nname = 'strict_saddle'\nsteps = 10\nlog_every = 5",
     "give either grid or tuning_budget, not both"),
    ("seeds = 2\nimports = ['no_such_plugin_xyz']\n[[problems]]\nname = 'strict_saddle'\nsteps = 10\nlog_every = 5",
     "imports[0]: cannot import plug-in 'no_such_plugin_xyz'"),
    ("seeds = 2\n[overrides.adam]\nb1 = [0.8, 0.9]\n[[problems]]\nname = 'strict_saddle'\nsteps = 10\nlog_every = 5",
     "overrides.adam: b1: one value each"),
    ("seeds = 2\nproblems = 3", "problems: must be an array of tables"),
])
def test_malformed_suite_files(text, expect, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(text)
    rc, err, _ = _main(["run", "--suite-file", str(path), "--results", str(tmp_path / "results")], _never_run)
    assert rc == 2 and "Traceback" not in err, err
    assert any(expect in line for line in err.splitlines()), (expect, err)
    assert all(line.startswith("error: ") for line in err.splitlines())
    assert not (tmp_path / "results").exists()


def test_missing_suite_file_and_tuning_budget(tmp_path):
    rc, err, _ = _main(["run", "--suite-file", str(tmp_path / "nope.toml")], _never_run)
    _assert_one_line(rc, err, "nope.toml: no such file")
    path = tmp_path / "t.toml"
    path.write_text("seeds = 4\ntuning_budget = 3\noptimizers = ['adam']\n[[problems]]\nname = 'strict_saddle'\n"
                    "steps = 10\nlog_every = 5\n")
    suite = suite_file.load(path)
    assert suite.grid == "qmc2" and suite.name == "t"
    (cell,) = suite.cells()
    assert len(cell.grid) == 3  # the defaults and 2 Halton points


# --- the generic constraints ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", optimizers.names())
def test_registered_defaults_and_grid_points_pass_the_checks(name):
    """No false alarms: every registered default and every point of the suites' grid rules is allowed."""
    sp = optimizers.spec(name)
    assert validate.hparam_errors(name, dict(sp.defaults)) == []
    for rule in ("lr5", "qmc8"):
        for point in grids.rule(name, rule).full_points():
            assert validate.hparam_errors(name, point) == [], (rule, point)
    if "learning_rate" in sp.defaults:  # and the learning rate is > 0 for every method that has one
        for bad in (0.0, -1e-3):
            assert validate.hparam_errors(name, {"learning_rate": bad}) == [
                f"{name}: hyperparameter 'learning_rate' must be > 0, got {bad!r}"]


def test_bounds_compose_and_can_be_declared():
    # stochastic_cubic's eps is searched on a log scale (> 0) and named like a stabilizer (>= 0): > 0 wins
    assert validate.bound("stochastic_cubic", "eps").text() == "> 0"
    assert validate.bound("adam", "eps").text() == ">= 0"
    assert validate.bound("lbfgs", "memory_size").text() == ">= 1"
    assert validate.bound("perturbed_gd", "f_thres") is None  # no rule: any finite value
    validate.declare("perturbed_gd", "f_thres", validate.Bound(0.0))
    try:
        assert validate.hparam_errors("perturbed_gd", {"f_thres": -1.0}) == [
            "perturbed_gd: hyperparameter 'f_thres' must be >= 0, got -1.0"]
    finally:
        validate._DECLARED.pop(("perturbed_gd", "f_thres"))


def test_suggestions_are_the_closest_names():
    assert validate.suggest("adma", optimizers.names()).startswith(" (did you mean 'adam'")
    assert validate.suggest("zzzz", optimizers.names()) == ""
    assert validate.suggest("sadle_free_newton", optimizers.names()).startswith(" (did you mean 'saddle_free_newton'")
    assert validate.suggest("rosenbrok", ["rosenbrock", "strict_saddle"]) == " (did you mean 'rosenbrock'?)"


# --- property-based: whatever is thrown at the CLI -------------------------------------------------------

_PROBLEMS = ["strict_saddle", "rosenbrock(dim=3)", "saddle_nd(dim=3,index=2)", "rosenbrok", "strict_saddle(",
             "rosenbrock(dim=1)", "rosenbrock(dim='x')", "saddle_nd(index=9,dim=3)", "", ",", "spin_glass(p=1)",
             "strict_saddle(init_radius=-1.0)", "monkey_saddle(init_radius=1e400)", "deep_linear(widths=3)"]
_OPTS = optimizers.names() + ["adma", "", "sgd,,adam", "newton,sgd", "SGD"]
_HP_NAMES = sorted({k for n in optimizers.names() for k in optimizers.spec(n).defaults}) + ["lerning_rate", ""]
_scalars = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12), st.booleans(),
                     st.text(max_size=4), st.none())
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3))
_hparams = st.dictionaries(st.sampled_from(_HP_NAMES), _values, max_size=3)


def _json(v) -> str:
    return json.dumps(v, allow_nan=True)


_hparams_text = st.one_of(
    st.none(),
    _hparams.map(_json),
    st.dictionaries(st.sampled_from(["adam", "sgd", "cubic_reg", "adma"]), _hparams, max_size=2).map(_json),
    st.lists(_hparams, max_size=2).map(_json),
    st.text(max_size=12),
)
# a third of the draws valid-looking, so that accepted commands are exercised too
_ints = st.one_of(st.sampled_from([2, 4, 10, 20]), st.integers(-3, 60), st.sampled_from(["x", "1.5", "", "-0"]))


@st.composite
def _valid_argv(draw):
    """A command the CLI must accept: valid names, budgets and positive learning rates."""
    log_every = draw(st.sampled_from([1, 5, 10]))
    seeds = draw(st.integers(1, 6))
    argv = ["run", "--problems", ",".join(draw(st.lists(st.sampled_from(_PROBLEMS[:3]), min_size=1, max_size=2,
                                                        unique=True))),
            "--optimizers", ",".join(draw(st.lists(st.sampled_from(["sgd", "adam", "momentum", "cubic_reg"]),
                                                   min_size=1, max_size=2, unique=True))),
            "--seeds", str(seeds), "--log-every", str(log_every), "--steps", str(log_every * draw(st.integers(1, 9))),
            "--grid", draw(st.sampled_from(["defaults", "lr2", "qmc1"]))]
    if draw(st.booleans()):
        argv += ["--tune-seeds", str(draw(st.integers(0, seeds)))]
    if draw(st.booleans()):
        lrs = draw(st.lists(st.floats(1e-6, 10.0), min_size=1, max_size=3))
        argv += ["--hparams", json.dumps({"learning_rate": lrs})]
    return argv


@st.composite
def _any_argv(draw):
    argv = ["run"]
    if draw(st.booleans()):
        names = st.one_of(st.sampled_from(_PROBLEMS[:3]), st.sampled_from(_PROBLEMS))
        argv += ["--problems", ",".join(draw(st.lists(names, min_size=1, max_size=2)))]
    if draw(st.booleans()):
        argv += ["--optimizers", ",".join(draw(st.lists(st.sampled_from(_OPTS), min_size=1, max_size=2)))]
    if draw(st.integers(0, 9)) == 0:
        argv += ["--suite", draw(st.sampled_from(["smoke", "quik", ""]))]
    for flag in ("--seeds", "--steps", "--log-every", "--tune-seeds", "--workers"):
        if draw(st.booleans()):
            argv += [flag, str(draw(_ints))]
    if draw(st.booleans()):
        argv += ["--grid", draw(st.sampled_from(["defaults", "lr3", "qmc2", "lr0", "qmc", "grid", "lr99999"]))]
    hp = draw(_hparams_text)
    if hp is not None:
        argv += ["--hparams", hp]
    if draw(st.integers(0, 4)) == 0:
        argv += ["--cell-timeout", draw(st.sampled_from(["-1", "0", "nan", "inf", "5"]))]
    return argv


@st.composite
def _argv(draw):
    """Anything; or a valid command with one of its arguments replaced by a hostile one."""
    kind = draw(st.sampled_from(["any", "valid", "mutated"]))
    if kind == "any":
        return draw(_any_argv()), kind
    argv = draw(_valid_argv())
    if kind == "mutated":
        hostile = draw(_any_argv())
        if len(hostile) > 2:
            i = draw(st.integers(0, (len(hostile) - 1) // 2 - 1))
            argv += hostile[1 + 2 * i: 3 + 2 * i]  # a later flag wins in argparse
    return argv, kind


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(drawn=_argv())
def test_any_command_line_runs_or_is_one_line_error(drawn, scratch):
    argv, kind = drawn
    results = scratch / "results"
    rc, err, cells = _main(argv + ["--results", str(results)])
    assert "Traceback" not in err, (argv, err)
    if kind == "valid":  # no false alarms
        assert rc == 0, (argv, err)
    if rc == 0:  # accepted: what it would run passes every check
        assert cells, argv
        for c in cells:
            assert c.steps >= 1 and c.log_every >= 1 and c.steps % c.log_every == 0 and len(c.seeds) >= 1
            for point in c.grid.full_points():
                assert validate.hparam_errors(c.optimizer, point) == [], (argv, point)
    else:
        _assert_one_line(rc, err)
    assert not results.exists()


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(optimizers.names()), hp=st.one_of(_hparams, st.lists(_hparams, max_size=2)))
def test_hparam_checks_agree_with_the_grid(name, hp):
    """``validate.hparam_errors`` never raises; where it finds nothing, the grid builds and every value
    is finite and within its bound; where ``grid.expand`` refuses, it found something."""
    errors = validate.hparam_errors(name, hp)
    assert all(isinstance(e, str) and "\n" not in e for e in errors)
    try:
        g = grids.expand(name, hp)
    except (TypeError, ValueError):
        assert errors, (name, hp)
        return
    if not errors:
        for point in g.full_points():
            for k, v in point.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    assert math.isfinite(v)
                    b = validate.bound(name, k)
                    assert b is None or b.contains(float(v)), (name, k, v)


_toml_scalars = st.one_of(st.integers(-5, 50), st.floats(allow_nan=False, width=32), st.booleans(),
                         st.sampled_from(["", "lr3", "qmc2", "defaults", "strict_saddle", "rosenbrok", "sgd", "adma"]))
_toml_values = st.one_of(_toml_scalars, st.lists(_toml_scalars, max_size=3))
_problem_tables = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["strict_saddle", "rosenbrock(dim=3)", "rosenbrok", "spin_glass(p=1)", "strict_saddle("]),
    "params": st.dictionaries(st.sampled_from(["init_radius", "dim", "dimm"]), _toml_scalars, max_size=2),
    "steps": _toml_values, "log_every": _toml_values, "extra": _toml_values})
_suite_data = st.fixed_dictionaries({}, optional={
    "seeds": _toml_values, "tune_seeds": _toml_values, "grid": _toml_values, "tuning_budget": _toml_values,
    "optimizers": st.lists(st.sampled_from(["sgd", "adam", "adma", ""]), max_size=3), "curvature": _toml_values,
    "steps": _toml_values, "log_every": _toml_values, "name": _toml_values, "nme": _toml_values,
    "overrides": st.dictionaries(st.sampled_from(["sgd", "adam", "adma"]), _hparams, max_size=2),
    "problems": st.one_of(st.lists(_problem_tables, max_size=3), _toml_scalars)})


@settings(max_examples=60, deadline=None)
@given(data=_suite_data)
def test_any_suite_file_is_a_suite_or_one_line_per_mistake(data):
    """``suite_file.parse`` never raises anything but ``SuiteFileError``, whose lines each name the file."""
    try:
        suite = suite_file.parse(data, "s.toml")
    except suite_file.SuiteFileError as err:
        assert err.errors and all(e.startswith("s.toml: ") and "\n" not in e for e in err.errors), err.errors
        return
    cells = suite.cells()
    assert cells
    for c in cells:
        assert c.steps >= 1 and c.steps % c.log_every == 0 and len(c.seeds) >= 1
        for point in c.grid.full_points():
            assert validate.hparam_errors(c.optimizer, point) == []


def test_nothing_in_this_file_compiles(scratch):
    """Guard: the stub keeps the CLI from running cells (a valid command reaches it, and only it)."""
    rc, err, cells = _main(RUN + ["--results", str(scratch / "never")])
    assert rc == 0 and len(cells) == 1 and cells[0].optimizer == "adam", err
