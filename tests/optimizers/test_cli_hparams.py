"""``--hparams`` per optimizer on the command line (``bench/cli.py``; the issue of the library use).

``{"saddle_free_newton": {"damping": 0.1}}`` sets one optimizer's hyperparameters and leaves the
others of the command on ``--grid``; the flat form still applies to every optimizer; bad input is
one line on stderr, exit status 2, before anything runs. Only the cells are built here (nothing is
compiled or run).
"""

import pytest

from bench import cli
from bench import grid as grids


def _cells(*extra):
    argv = ["run", "--problems", "strict_saddle", "--optimizers", "adam,saddle_free_newton", *extra]
    cells, _ = cli._cells_from_args(cli.parser().parse_args(argv))
    return {c.optimizer: c.grid for c in cells}


def test_per_optimizer_hparams_apply_to_their_optimizer_only():
    grid = _cells("--hparams", '{"saddle_free_newton": {"damping": [0.1, 0.5], "k": 4}}')
    assert [p["damping"] for p in grid["saddle_free_newton"].points] == [0.1, 0.5]
    assert grid["saddle_free_newton"].static == {"k": 4, "damping_search": 6}
    assert grid["adam"] == grids.rule("adam", "defaults")  # left out: follows --grid
    grid = _cells("--grid", "lr5", "--hparams", '{"adam": [{"learning_rate": 0.1}, {"learning_rate": 0.2}]}')
    assert [p["learning_rate"] for p in grid["adam"].points] == [0.1, 0.2]
    assert grid["saddle_free_newton"] == grids.rule("saddle_free_newton", "lr5")


def test_flat_hparams_still_apply_to_every_optimizer():
    grid = _cells("--hparams", '{"learning_rate": [0.01, 0.1]}')
    for name in ("adam", "saddle_free_newton"):
        assert [p["learning_rate"] for p in grid[name].points] == [0.01, 0.1]
    # "momentum" is an optimizer and a hyperparameter: a number is the hyperparameter
    argv = ["run", "--problems", "strict_saddle", "--optimizers", "momentum", "--hparams", '{"momentum": 0.5}']
    (cell,), _ = cli._cells_from_args(cli.parser().parse_args(argv))
    assert cell.grid.points[0]["momentum"] == 0.5


@pytest.mark.parametrize("hparams, message", [
    ('{"damping": 0.1}', "adam: unknown hyperparameter(s) ['damping']"),
    ('{"saddle_free_newton": {"damping": 0.1}, "learning_rate": 0.1}', "mixes per-optimizer entries"),
    ('{"sfn": {"damping": 0.1}}', "unknown optimizer(s) sfn; valid optimizers: "),
    ('{"newton": {"damping": 0.1}}', "gives hyperparameters for newton, which --optimizers does not run"),
    ('{"saddle_free_newton": {"dampin": 0.1}}', "saddle_free_newton: unknown hyperparameter(s) ['dampin']"),
    ('{"adam": {', "--hparams is not valid JSON"),
    ('3', "--hparams must be a JSON object"),
])
def test_bad_hparams_are_one_line_errors(hparams, message, capsys, tmp_path):
    argv = ["run", "--problems", "strict_saddle", "--optimizers", "adam,saddle_free_newton", "--hparams", hparams,
            "--results", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())
