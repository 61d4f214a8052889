"""``bench.load``: the runs frame (and the per-step frame) of a results directory, and the README's example."""

import pathlib
import re

import numpy as np
import pytest

import bench
from bench import cost, grid, schema, suites
from bench import loader as load_module
from bench.execute import run_cells
from bench.reports import leaderboard as lb
from bench.store import Store

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Load the results in pandas"
PROBLEM = "strict_saddle(init_radius=1.0)"
SEEDS, STEPS, LOG_EVERY = 4, 40, 20


def build_store(root: pathlib.Path) -> None:
    """One cell: sgd with two learning rates on the strict saddle, 4 seeds (2 tuning, 2 held out)."""
    cell = suites.Cell(PROBLEM, "sgd", grid.expand("sgd", {"learning_rate": [0.05, 0.2]}), list(range(SEEDS)),
                       STEPS, LOG_EVERY)
    out = run_cells([cell], Store(root), progress=False, workers=1)
    assert out.ran == 1 and not out.failed


@pytest.fixture(scope="module")
def store_root(built_once):
    return built_once("load_results", build_store)


@pytest.fixture(scope="module")
def loaded(store_root):
    return bench.load(store_root, steps=True)


def test_one_row_per_run_with_the_leaderboards_numbers(store_root, loaded):
    runs, _ = loaded
    assert len(runs) == 2 * SEEDS
    assert not runs.duplicated([schema.HP_INDEX, schema.SEED]).any()
    df = Store(store_root).load_all()
    ref = lb.with_costs(df)  # what the leaderboard computes from
    for col in (schema.FINAL_LOSS, schema.HIT_STEP, schema.STATUS, lb.SUCCESS, lb.COST, lb.BUDGET_COST):
        a, b = runs[col].to_numpy(), ref[col].to_numpy()
        assert (a == b).all() if a.dtype == object else np.array_equal(a, b, equal_nan=True), col
    # provenance, per run, equal to the cell's rows
    assert (runs["cell_key"] == df["cell_key"].iloc[0]).all() and set(runs["backend"]) == {"cpu"}
    # `evaluated`: exactly the leaderboard's evaluated runs (held-out seeds at the point chosen on the tuning seeds)
    ev = lb.evaluated_runs(ref, lb.selection(ref))
    mine = runs[runs[load_module.EVALUATED]]
    assert sorted(zip(mine[schema.HP_INDEX], mine[schema.SEED])) == sorted(zip(ev[schema.HP_INDEX], ev[schema.SEED]))
    assert set(mine[schema.SEED]) == {2, 3} and not mine[schema.TUNING].any()


def test_every_column_is_documented(loaded):
    runs, steps = loaded
    doc = bench.load.__doc__
    tau = re.compile(r"^(hit_(step|values|grads|hvps)|success|cost_to_target)@")
    for c in list(runs.columns) + list(steps.columns):
        assert f"``{c}``" in doc or c.startswith(schema.HP_PREFIX) or tau.match(c), c


def test_steps_frame_counts_cost_in_gradient_equivalents(loaded):
    runs, steps = loaded
    assert len(steps) == 2 * SEEDS * (STEPS // LOG_EVERY + 1)
    w = cost.weights(PROBLEM)
    # the runner spends one value and one gradient per step, so the cost is the gradient count
    # plus w.value times the values beyond the gradients (none for sgd): here n_grads
    expect = steps[schema.N_GRADS] + w.value * np.maximum(steps[schema.N_VALUES] - steps[schema.N_GRADS], 0)
    assert np.allclose(steps[load_module.STEP_COST], expect)
    last = steps[steps[schema.STEP] == STEPS].sort_values([schema.HP_INDEX, schema.SEED])
    assert np.allclose(last[load_module.STEP_COST].to_numpy(), runs[lb.BUDGET_COST].to_numpy())


def test_missing_and_empty_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results directory"):
        bench.load(tmp_path / "nope")
    assert bench.load(tmp_path).empty


def test_readme_example_runs(store_root, monkeypatch, tmp_path, capsys):
    text = README.read_text()
    assert HEADING in text
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    assert len(code.strip().splitlines()) == 5
    (tmp_path / "results").symlink_to(store_root)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_load_example"})
    out = capsys.readouterr().out
    tab = lb.table(Store(store_root).load_all())
    printed = [float(x) for x in out.split() if re.fullmatch(r"[0-9.]+", x)]
    assert printed == [tab["success"].item()]  # the leaderboard's success rate
    assert (tmp_path / "costs.png").read_bytes()[:4] == b"\x89PNG"
    import matplotlib.pyplot as plt

    plt.close("all")
