"""The Parquet store (atomic, resumable, with provenance) and the CLI."""

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bench import cli, grid, suites
from bench.execute import run_cells
from bench.store import PROVENANCE_COLUMNS, CellSpec, Store, make_spec


def smoke_cells():
    return suites.get("smoke").cells()


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    store = Store(root)
    first = run_cells(smoke_cells(), store, progress=False)
    return store, first


def test_each_cell_is_one_file_named_by_its_hash(filled):
    store, first = filled
    assert first.ran == len(smoke_cells()) and first.reused == 0 and not first.failed
    files = list(store.files())
    assert len(files) == len(smoke_cells())
    for cell in smoke_cells():
        spec = cell.spec()
        assert store.path(spec).name == f"{cell.optimizer}__{spec.key}.parquet"
    assert not [p for p in store.cells.iterdir() if p.name.startswith(".tmp")]


def test_second_run_reuses_every_cell(filled):
    store, _ = filled
    again = run_cells(smoke_cells(), store, progress=False)
    assert again.reused == len(smoke_cells()) and again.ran == 0


def test_rows_carry_provenance(filled):
    store, _ = filled
    df = store.load_all()
    for col in PROVENANCE_COLUMNS + ["compile_s", "run_s_amortized"]:
        assert col in df.columns, col
        assert df[col].notna().all(), col
    assert set(df["backend"]) == {"cpu"}
    assert df["jax_version"].iloc[0].count(".") >= 1
    spec = CellSpec.from_json(df["cell_spec"].iloc[0])
    assert spec.key == df["cell_key"].iloc[0]


def test_load_all_is_the_concatenation_of_the_files_as_read(filled):
    # load_all reads the spec column dictionary-encoded and concatenates the cells' categorical text
    # columns itself: the same frame as reading each file plainly and ``pd.concat``
    import pyarrow.parquet as pq

    from bench.store import _read_table

    store, _ = filled
    files = list(store.files())
    for p in files:
        assert _read_table(p).equals(pq.read_table(p), check_metadata=True)
    plain = pd.concat([pq.read_table(p).to_pandas() for p in files], ignore_index=True)
    got = store.load_all()
    pd.testing.assert_frame_equal(got, plain, check_exact=True)
    assert [str(d) for d in got.dtypes] == [str(d) for d in plain.dtypes]


def test_checksum_of_text_columns_is_their_json_list():
    # frame_digest hashes a text column as json.dumps of its values (missing: null); it hashes runs of
    # equal values in pieces, which must give the same bytes for any arrangement of values
    import hashlib
    import json

    from bench.store import frame_digest

    columns = {"constant": ["a spec, \"quoted\" é"] * 9, "runs": ["x"] * 4 + ["y"] * 3 + [None] * 2,
               "alternating": ["p", "q"] * 4 + ["p"], "missing": [None] * 9,
               "mixed": ["a", None, "", "日本", "a", "", "b", None, "a"]}
    for name, values in columns.items():
        for dtype in ("str", "string"):
            df = pd.DataFrame({name: pd.Series(values, dtype=dtype)})
            h = hashlib.sha256(str(len(df)).encode())
            h.update(json.dumps([name, str(df[name].dtype)]).encode())
            h.update(json.dumps([None if pd.isna(v) else v for v in values]).encode())
            assert frame_digest(df) == h.hexdigest(), (name, dtype)
    empty = pd.DataFrame({"s": pd.Series([], dtype="str")})
    assert frame_digest(empty) == hashlib.sha256(b"0" + json.dumps(["s", "str"]).encode() + b"[]").hexdigest()


def test_hash_covers_everything_that_determines_the_numbers():
    base = dict(problem="strict_saddle(init_radius=1.0)", optimizer="sgd", points=[{"learning_rate": 0.1}],
                seeds=[0, 1], steps=100, log_every=10)
    key = make_spec(**base).key
    for change in (dict(optimizer="adam"), dict(points=[{"learning_rate": 0.2}]), dict(seeds=[0, 2]),
                   dict(steps=200), dict(log_every=20), dict(problem="strict_saddle(init_radius=2.0)")):
        assert make_spec(**{**base, **change}).key != key, change
    assert make_spec(**base, dtype="float64").key != key
    assert make_spec(**base).key == key  # stable


def test_write_is_atomic(tmp_path, monkeypatch):
    store = Store(tmp_path)
    spec = make_spec("p", "sgd", [{"learning_rate": 0.1}], [0], 10, 5)
    df = pd.DataFrame({"loss": [1.0, 2.0]})

    def broken(table, where, **kwargs):
        where.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save(spec, df)
    assert not store.has(spec)
    assert os.listdir(store.cells) == []  # the partial temporary file was removed
    monkeypatch.undo()
    store.save(spec, df)
    assert store.has(spec) and store.load(spec)["loss"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--problems", "nope", "--optimizers", "adam"], "valid problems: "),
        (["run", "--problems", "strict_saddle", "--optimizers", "adamx"], "valid optimizers: "),
        (["run", "--suite", "bogus"], "valid suites: "),
        (["run", "--problems", "rosenbrock(dimm=3)", "--optimizers", "sgd"], "unknown parameter"),
        (["run", "--problems", "strict_saddle", "--optimizers", "sgd", "--steps", "10", "--log-every", "3"],
         "multiple of"),
        (["run", "--problems", "strict_saddle", "--optimizers", "sgd", "--hparams", '{"lr": 1}'],
         "unknown hyperparameter"),
        (["run"], "--suite"),
        (["report", "--suite", "bogus"], "valid suites: "),
    ],
)
def test_cli_errors_name_the_valid_choices(argv, message, capsys, tmp_path):
    code = cli.main(argv + ["--results", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_cli_list_shows_every_registered_name(capsys):
    import optimizers
    import problems

    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in problems.names() + optimizers.names() + suites.names():
        assert name in out


def test_cli_run_report_replay(tmp_path, capsys):
    argv = ["--results", str(tmp_path)]
    assert cli.main(["run", "--problems", "strict_saddle", "--optimizers", "sgd,adam", "--seeds", "4",
                     "--steps", "60", "--log-every", "20", "--no-progress"] + argv) == 0
    assert "2 cells run, 0 reused" in capsys.readouterr().err
    assert cli.main(["run", "--problems", "strict_saddle", "--optimizers", "sgd,adam", "--seeds", "4",
                     "--steps", "60", "--log-every", "20", "--no-progress"] + argv) == 0
    assert "0 cells run, 2 reused" in capsys.readouterr().err
    assert cli.main(["report"] + argv) == 0
    md = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## strict_saddle(init_radius=1.0)" in md and "| adam |" in md and "| sgd |" in md
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(csv["optimizer"]) == {"sgd", "adam"}
    assert (tmp_path / "plots").is_dir() and list((tmp_path / "plots").glob("*.png"))
    assert cli.main(["replay"] + argv) == 0
    assert capsys.readouterr().out.count("identical bits") == 2


def test_a_failing_cell_is_recorded_and_skipped_not_fatal(tmp_path):
    store = Store(tmp_path)
    point = grid.expand("sgd", {"learning_rate": 0.1})
    good = suites.Cell("strict_saddle(init_radius=1.0)", "sgd", point, [0, 1], 20, 10)
    bad = suites.Cell("strict_saddle(init_radius=1.0)", "sgd", point, [0, 1], 25, 10)
    out = run_cells([bad, good], store, progress=False, workers=1)
    assert out.ran == 1 and len(out.failed) == 1
    assert "multiple of log_every" in out.failed[0][1]
    assert bad.spec().key in store.failures()
    again = run_cells([bad, good], store, progress=False, workers=1)
    assert again.reused == 1 and again.skipped_failed == 1 and not again.failed
    from bench.reports import leaderboard

    md, _ = leaderboard.write(store.load_all(), tmp_path, store.failures())
    assert "## Cells without results" in md.read_text()
