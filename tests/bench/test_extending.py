"""Suites as files, plug-ins, and stores from several machines (issue 12, items 3, 4 and 5).

* ``docs/example_suite.toml`` is loaded into the ``Suite`` it describes (the same cells and keys as
  the built-in form) and run and reported through the CLI (``main(argv)`` in this process);
* ``docs/examples/my_plugin.py`` is imported as a plug-in (``--import`` and a suite file's
  ``imports``), its cells are run, stored and reported like built-in ones, and the shared optimizer
  and problem checks are run on it;
* the example's store, a copy with its device and times rewritten, and a plain copy are reported
  together (``report --store A --store B --store C``): each cell counted once, times side by side
  per device, the seconds score computed within each device.

The registries are restored after the plug-in tests, so other tests in the same worker see only
the built-in optimizers and problems.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import optimizers
import problems
from bench import cli, multistore, plugins, store, suite_file, suites
from bench.store import META_KEY, Store, frame_digest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "example_suite.toml"
PLUGIN = ROOT / "docs" / "examples" / "my_plugin.py"


def _cli(argv, capsys) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


# --- the suite file --------------------------------------------------------------------------------------


def test_example_suite_file_is_the_suite_it_describes():
    suite = suite_file.load(EXAMPLE)
    same = suites.Suite(name="example", description=suite.description, seeds=4, tune_seeds=2, grid="lr3",
                        optimizers=("sgd", "adam"), overrides={"adam": {"b1": 0.8}},
                        entries=(suites.Entry("strict_saddle(init_radius=0.001)", 100, 10),
                                 suites.Entry("rosenbrock(dim=2)", 200, 20)))
    assert suite == same
    cells = suite.cells()
    assert [c.spec().key for c in cells] == [c.spec().key for c in same.cells()]
    # lr3: geomspace over sgd's and adam's learning-rate range [1e-4, 1] -> 1e-4, 1e-2, 1
    for c in cells:
        assert [p["learning_rate"] for p in c.grid.points] == [1e-4, 1e-2, 1.0]
        assert c.seeds == [0, 1, 2, 3] and c.tune_seeds == 2
    assert {c.grid.full_points()[0]["b1"] for c in cells if c.optimizer == "adam"} == {0.8}


def _run_example(root: pathlib.Path, capsys) -> None:
    """The example suite, run (4 cells), run again (all reused) and reported, as a user would."""
    rc, err = _cli(["run", "--suite-file", EXAMPLE, "--results", root, "--workers", "1", "--no-progress"], capsys)
    assert rc == 0 and "4 cells run" in err, err
    keys = {c.spec().key for c in suite_file.load(EXAMPLE).cells()}
    assert {p.stem.rsplit("__", 1)[1] for p in Store(root).files()} == keys
    rc, err = _cli(["run", "--suite-file", EXAMPLE, "--results", root, "--workers", "1", "--no-progress"], capsys)
    assert rc == 0 and "0 cells run, 4 reused" in err, err
    rc, err = _cli(["report", "--suite-file", EXAMPLE, "--results", root, "--no-plots"], capsys)
    assert rc == 0, err
    tab = pd.read_csv(root / "leaderboard.csv")
    assert len(tab) == 4 and set(tab["optimizer"]) == {"sgd", "adam"}
    assert (tab["runs"] == 2).all()  # the 2 held-out seeds of 4, at the point chosen on the 2 tuning seeds
    assert "strict_saddle(init_radius=0.001)" in (root / "LEADERBOARD.md").read_text()


# --- plug-ins --------------------------------------------------------------------------------------------


def _load_test_module(relative: str):
    """A shared test file of the project as a module (its test functions are called on the plug-in)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"_shared_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugin():
    """docs/examples/my_plugin.py registered for this module's tests, unregistered afterwards."""
    from optimizers import base as opt_base
    from problems import base as prob_base

    env = os.environ.get(plugins.ENV)
    before = (dict(opt_base._REGISTRY), dict(prob_base._FAMILIES), dict(plugins._LOADED))
    (module,) = plugins.load([str(PLUGIN)])
    yield module
    opt_base._REGISTRY.clear()
    opt_base._REGISTRY.update(before[0])
    prob_base._FAMILIES.clear()
    prob_base._FAMILIES.update(before[1])
    plugins._LOADED.clear()
    plugins._LOADED.update(before[2])
    sys.modules.pop(module.__name__, None)
    if env is None:
        os.environ.pop(plugins.ENV, None)
    else:
        os.environ[plugins.ENV] = env
    # the store's look-ups of modules by name (not problems' instance cache: clearing it would recompile others)
    for cached in (store._problem_module, store._optimizer_module, store._fingerprint):
        cached.cache_clear()


def test_plugin_registers_like_a_builtin(plugin):
    assert "clipped_gd" in optimizers.names() and "double_well" in problems.names()
    assert os.environ[plugins.ENV] == str(PLUGIN)  # what spawned workers load
    assert plugins.load([str(PLUGIN)]) == [plugin]  # once per process
    assert optimizers.spec("clipped_gd").defaults == {"learning_rate": 1e-2, "max_norm": 1.0}
    assert problems.get("double_well").name == "double_well(dim=4,init_radius=0.5)"
    # the plug-in's own source is part of its cells' code fingerprint
    fp = store.code_fingerprint("double_well(dim=4,init_radius=0.5)", "clipped_gd")
    assert fp.components["plugin:my_plugin"] == store._file_digest(PLUGIN)


def test_spawned_workers_load_the_plugins(plugin):
    """Cells run in spawned worker processes: they load what ``--import`` loaded (SADDLEBENCH_IMPORT)."""
    from bench import execute
    from bench import grid as grids

    sys.path.insert(0, str(pathlib.Path(__file__).parent))  # spawned workers import plugin_work from here
    import plugin_work

    cell = suites.Cell("double_well(dim=4,init_radius=0.5)", "clipped_gd", grids.rule("clipped_gd", "defaults"),
                       [0], 10, 5)
    task = execute.Task(0, cell, cell.spec(), "unused")
    seen = []
    execute.LocalProcesses(workers=1, timeout=300.0, work=plugin_work.registered, poll_s=0.1).run([task], seen.append)
    assert [o.ok for o in seen] == [True], [o.error for o in seen]


def test_entry_points_are_loaded_and_broken_ones_named(tmp_path, monkeypatch, capsys):
    """An installed package's ``saddlebench.plugins`` entry point registers its names; a broken one is one line."""
    from optimizers import base as opt_base

    dist = tmp_path / "ep_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[saddlebench.plugins]\ndemo = ep_demo_plugin:register_all\n")
    (tmp_path / "ep_demo_plugin.py").write_text(
        "import optax, optimizers\n"
        "def ep_sgd(learning_rate=0.1):\n    return optax.sgd(learning_rate)\n"
        "def register_all():\n"
        "    optimizers.register('ep_sgd', ep_sgd, {'learning_rate': optimizers.Range(1e-3, 1.0)})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.delenv(plugins.NO_ENTRY_POINTS_ENV, raising=False)
    try:
        assert plugins.load_entry_points() == ["demo"]
        assert optimizers.spec("ep_sgd").defaults == {"learning_rate": 0.1}
        assert plugins.load_entry_points() == []  # once per process
    finally:
        opt_base._REGISTRY.pop("ep_sgd", None)
        sys.modules.pop("ep_demo_plugin", None)
    (dist / "entry_points.txt").write_text("[saddlebench.plugins]\ndemo = ep_demo_missing\n")
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    rc, err = _cli(["list"], capsys)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "plug-in entry point 'demo' (ep_demo_missing, group saddlebench.plugins) failed to load" in err
    monkeypatch.setenv(plugins.NO_ENTRY_POINTS_ENV, "1")
    monkeypatch.setattr(plugins, "_ENTRY_POINTS_LOADED", False)
    assert plugins.load_entry_points() == []


def test_plugin_passes_the_shared_checks(plugin):
    """The key shared checks (tests/optimizers/test_shared.py, test_optax_alias.py, tests/problems/test_shared.py),
    called on the plug-in as ``pytest -k`` would with ``SADDLEBENCH_IMPORT`` set (docs/ADDING.md)."""
    shared = _load_test_module("tests/optimizers/test_shared.py")
    for problem in ("quadratic", "rosenbrock"):
        shared.test_reaches_known_minimum("clipped_gd", problem)
    for check in (shared.test_float32_pytree, shared.test_vmap_over_seeds, shared.test_oracle_counts,
                  shared.test_no_recompile, shared.test_inject_matches_raw_factory):
        check("clipped_gd")
    alias = _load_test_module("tests/optimizers/test_optax_alias.py")
    alias.test_complex_params_refused_at_init_or_supported("clipped_gd")
    prob_checks = _load_test_module("tests/problems/test_shared.py")
    p = problems.get("double_well")
    for check in (prob_checks.test_jit_and_vmap_over_seeds, prob_checks.test_loss_and_gradient_finite_at_init,
                  prob_checks.test_gradient_matches_central_differences_in_float64,
                  prob_checks.test_reference_is_consistent, prob_checks.test_name_is_canonical_and_round_trips,
                  prob_checks.test_retract_is_idempotent,
                  prob_checks.test_known_saddles_are_critical_with_stated_value):
        check(p)


def test_plugin_cells_run_store_and_report_through_the_cli(plugin, tmp_path, capsys):
    suite = tmp_path / "mine.toml"
    suite.write_text(f"""
seeds = 4
tune_seeds = 2
grid = "lr3"
optimizers = ["clipped_gd", "sgd"]
imports = [{json.dumps(str(PLUGIN))}]

[[problems]]
name = "double_well"
params = {{ dim = 3 }}
steps = 100
log_every = 10
""")
    results = tmp_path / "results"
    rc, err = _cli(["run", "--suite-file", suite, "--results", results, "--workers", "1", "--no-progress"], capsys)
    assert rc == 0 and "2 cells run" in err, err
    df = Store(results).load_all()
    assert set(df["optimizer"]) == {"clipped_gd", "sgd"}
    assert set(df["problem"]) == {"double_well(dim=3,init_radius=0.5)"}
    # From [-0.5, 0.5]^3 the gradient x^3 - x has norm <= sqrt(3) 2/(3 sqrt 3) = 0.67 < max_norm = 1 on the
    # way to the minima (|x_i| <= 1 up to the small overshoot at lr = 1), so clipping never acts: clipped
    # GD's runs are gradient descent's, which the built-in sgd computes.
    a = df[df["optimizer"] == "clipped_gd"].sort_values(["hp_index", "seed", "step"])
    b = df[df["optimizer"] == "sgd"].sort_values(["hp_index", "seed", "step"])
    np.testing.assert_allclose(a["loss"].to_numpy(), b["loss"].to_numpy(), rtol=1e-5, atol=1e-7)
    assert (a["status"].astype(str).to_numpy() == b["status"].astype(str).to_numpy()).all()
    rc, err = _cli(["report", "--import", PLUGIN, "--suite-file", suite, "--results", results, "--no-plots"],
                   capsys)
    assert rc == 0, err
    tab = pd.read_csv(results / "leaderboard.csv")
    assert set(tab["optimizer"]) == {"clipped_gd", "sgd"} and (tab["runs"] == 2).all()
    assert "clipped_gd" in (results / "LEADERBOARD.md").read_text()


# --- stores from several machines ------------------------------------------------------------------------

GPU = "gpu:Test H200"


def _rewrite_device(root: pathlib.Path, device: str, time_factor: float) -> None:
    """Make a store look computed elsewhere: its device columns and times changed, its checksum redone."""
    for path in Store(root).files():
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[META_KEY])
        df = table.to_pandas()
        df["device"], df["backend"], df["device_kind"] = device, device.split(":")[0], device.split(":")[1]
        for col in ("run_s_amortized", "cell_run_s", "compile_s"):
            df[col] = df[col] * time_factor
        new = pa.Table.from_pandas(df, preserve_index=False)
        meta["checksum"] = frame_digest(new.to_pandas())
        new = new.replace_schema_metadata({**(new.schema.metadata or {}), META_KEY: json.dumps(meta)})
        pq.write_table(new, path)


def test_example_suite_then_stores_of_several_devices(tmp_path, capsys):
    """One test, so that the example's cells are computed once (pytest-xdist spreads tests over workers):
    the example suite run and reported, then its store combined with two copies of it."""
    a, b, c = tmp_path / "example", tmp_path / "gpu", tmp_path / "copy"
    _run_example(a, capsys)
    shutil.copytree(a / "cells", b / "cells")
    shutil.copytree(a / "cells", c / "cells")
    _rewrite_device(b, GPU, 2.0)
    stored_key = next(Store(a).files()).stem.rsplit("__", 1)[1]
    (c / "failures.json").write_text(json.dumps({
        stored_key: {"problem": "p", "optimizer": "sgd", "error": "old", "utc_time": "t"},
        "0123456789abcdef": {"problem": "p", "optimizer": "adam", "error": "boom", "utc_time": "t"}}))
    combined = multistore.combine([Store(a), Store(b), Store(c)])
    single = Store(a).load_all()
    cpu = str(single["device"].iloc[0])
    assert cpu.startswith("cpu:")
    assert len(combined.frame) == len(single) and combined.frame["cell_key"].nunique() == 4
    assert set(combined.frame["device"]) == {cpu} and combined.duplicates == 8
    assert sorted(combined.devices) == sorted([cpu, GPU]) and len(combined.cells) == 8  # the copy on A's device: once
    assert list(combined.failures) == ["0123456789abcdef"]  # a failure of a cell some store holds is forgotten
    side = multistore.seconds_side_by_side(combined)
    assert len(side) == 4
    np.testing.assert_array_equal(side[GPU].to_numpy(), 2.0 * side[cpu].to_numpy())  # doubling is exact
    # the seconds score within each device: doubling every time changes no ratio, so the scores agree
    scores = multistore.seconds_scores(combined)
    np.testing.assert_array_equal(scores[GPU].to_numpy(), scores[cpu].to_numpy())

    out = tmp_path / "report"
    rc, err = _cli(["report", "--store", a, "--store", b, "--store", c, "--results", out, "--no-plots"], capsys)
    assert rc == 0, err
    tab = pd.read_csv(out / "leaderboard.csv")
    alone = pd.read_csv(a / "leaderboard.csv")  # the example's own report
    assert len(tab) == 4 and (tab["device"] == cpu).all()
    key = ["problem", "optimizer"]
    merged = tab.merge(alone, on=key, suffixes=("", "_alone"))
    np.testing.assert_array_equal(merged["runs"], merged["runs_alone"])
    np.testing.assert_array_equal(merged["success"], merged["success_alone"])
    md = (out / "LEADERBOARD.md").read_text()
    assert "## Devices" in md and GPU in md and cpu in md and "8 further copies" in md
    summary = pd.read_csv(out / "scores.csv", index_col="optimizer")
    assert summary["score_seconds"].isna().all()  # never across devices


def test_rows_stored_before_the_device_column_get_one_from_their_provenance():
    df = pd.DataFrame({"backend": ["gpu", "cpu", "tpu"], "device_kind": ["H200", "cpu", "TPU v5"],
                       "device_count": [2, 1, 1], "device": [None, "cpu:EPYC x16", None]})
    assert multistore.device_column(df).tolist() == ["gpu:H200 x2", "cpu:EPYC x16", "tpu:TPU v5"]
    assert multistore.device_column(df.drop(columns="device")).tolist() == ["gpu:H200 x2", "cpu:cpu", "tpu:TPU v5"]
    assert store.device_label("gpu", "NVIDIA H200", 1) == "gpu:NVIDIA H200"
    assert store.device_label("cpu", "cpu", 1).startswith("cpu:") and " x" in store.device_label("cpu", "cpu", 1)
