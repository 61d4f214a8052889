"""Reliability of the store (issue 14): crash-safe resume, concurrent writers, corrupt files, stale
results after a code change, and bitwise determinism across worker counts and processes.

The slow tests drive ``python -m bench run`` as a user would, in subprocesses, on a tiny grid
(two problems x two optimizers, 2 seeds, 40 steps); each start costs a few seconds of imports.
"""

import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import problems
from bench import grid, suites
from bench.execute import run_cells
from bench.store import META_KEY, CellSpec, Store, code_fingerprint, make_spec

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--problems", "strict_saddle,rosenbrock(dim=2)", "--optimizers", "sgd,adam", "--seeds", "2",
        "--steps", "40", "--log-every", "10"]
SUMMARY = re.compile(r"(\d+) cells run, (\d+) reused")


def tiny_cells(problem_names=("strict_saddle", "rosenbrock(dim=2)"), optimizers=("sgd", "adam")):
    """The cells of ``TINY``, built as the CLI builds them."""
    return [suites.Cell(problems.canonical_name(p), o, grid.rule(o, "defaults"), [0, 1], 40, 10)
            for p in problem_names for o in optimizers]


def bench_run(root, *args, cwd=REPO, **popen):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-m", "bench", "run", *args, "--no-progress", "--results", str(root)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc, timeout=240):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    ran, reused = map(int, SUMMARY.search(err).groups())
    return ran, reused, err


def result_columns(df):
    """All but timing (seconds ``*_s``, ``*_s_*``; ``compile_cached``), the date and the code's
    identity (git commit, code fingerprint: other sessions may edit the checkout while a test
    runs): what must repeat bit for bit."""
    return [c for c in df.columns if not (c.endswith("_s") or "_s_" in c)
            and c not in ("compile_cached", "utc_time", "git_commit", "code_fingerprint")]


def assert_same_bits(a: pd.DataFrame, b: pd.DataFrame, where=""):
    cols = result_columns(a)
    assert cols == result_columns(b), where
    assert len(a) == len(b), where
    for c in cols:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            assert x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8)), f"{where}: {c}"
        else:
            assert a[c].equals(b[c]), f"{where}: {c}"


def cell_frames(store: Store) -> dict[str, pd.DataFrame]:
    """Every file of the store, each read with its checks (a corrupt one fails the test)."""
    return {p.name: Store.read(p)[0] for p in store.files()}


def assert_stores_equal(got: Store, want: Store):
    got_frames, want_frames = cell_frames(got), cell_frames(want)
    assert sorted(got_frames) == sorted(want_frames)
    for name in want_frames:
        assert_same_bits(got_frames[name], want_frames[name], name)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The tiny grid run once, uninterrupted, in this process, one cell after the other."""
    store = Store(tmp_path_factory.mktemp("baseline"))
    out = run_cells(tiny_cells(), store, progress=False, workers=1)
    assert out.ran == 4 and not out.failed
    return store


# --- (1) crash-safe resume, (7) determinism across worker counts ------------------------------------


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_store(tmp_path, baseline):
    """Kill `bench run` with SIGKILL (the whole process group, or only the parent so that its
    workers finish their cell as orphans) at seeded random moments, at least 5 times, re-running
    after each; in between, every file in the store must pass its checks."""
    rng = random.Random(14)
    store = Store(tmp_path / "results")
    kills = 0
    for attempt in range(12):
        workers = "2" if attempt % 2 == 0 else "1"
        proc = bench_run(store.root, *TINY, "--workers", workers, start_new_session=True)
        time.sleep(rng.uniform(1.5, 9.0))  # imports, worker start-up, compiles, runs and writes
        if proc.poll() is None:
            if attempt == 2:
                os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers finish their cell as orphans
            else:
                os.killpg(proc.pid, signal.SIGKILL)  # the machine's view of a crash: every process of the run
            kills += 1
        proc.communicate()  # (returns once the orphans, which hold its pipes, are gone too)
        for path in store.files():
            Store.read(path)  # never a partial or corrupt file under a cell's name
        if kills == 5:
            break
    assert kills == 5, f"only {kills} kills landed"
    last = run_cells(tiny_cells(), store, progress=False, workers=1)  # the last resume, uninterrupted
    assert last.ran + last.reused == 4 and last.corrupt == 0 and not last.failed
    assert_stores_equal(store, baseline)  # computed in this process; here mostly by 1 and 2 worker processes
    again = run_cells(tiny_cells(), store, progress=False, workers=1)
    assert (again.ran, again.reused) == (0, 4)
    # the temporary file of a killed writer is removed when its cell is next claimed
    assert not [p for p in store.cells.iterdir() if p.name.startswith(".tmp")]


# --- (2) concurrent writers ---------------------------------------------------------------------


def test_two_runs_on_overlapping_grids_store_each_cell_once(tmp_path, baseline):
    store = Store(tmp_path / "results")
    a = bench_run(store.root, *TINY, "--workers", "1")
    b = bench_run(store.root, "--problems", "strict_saddle", "--optimizers", "adam,sgd",  # 2 of a's 4 cells
                  "--seeds", "2", "--steps", "40", "--log-every", "10", "--workers", "1")
    (ran_a, reused_a, _), (ran_b, reused_b, _) = finish(a), finish(b)
    assert ran_a + ran_b == 4, "a cell was computed twice (or never)"
    assert reused_a + reused_b == 2
    assert len(list(store.files())) == 4
    assert_stores_equal(store, baseline)


def test_concurrent_failure_records_are_all_kept(tmp_path):
    store = Store(tmp_path)
    specs = [make_spec("p", "sgd", [{"learning_rate": 0.1}], [i], 10, 5) for i in range(60)]

    def record(chunk):
        for spec in chunk:
            store.record_failure(spec, f"error {spec.seeds[0]}")

    threads = [threading.Thread(target=record, args=(specs[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = store.failures()
    assert set(failures) == {s.key for s in specs}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


# --- (3) corrupt store --------------------------------------------------------------------------


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _change_a_number(path):
    """A well-formed Parquet file, metadata intact, with one loss value changed."""
    table = pq.read_table(path)
    df = table.to_pandas()
    df.loc[0, "loss"] += 1.0
    import pyarrow as pa

    changed = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata)
    pq.write_table(changed, path)


def _drop_metadata(path):
    """As written before the store recorded checksums."""
    pd.read_parquet(path).to_parquet(path, index=False)


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "unreadable Parquet"),
    (_garble, ""),
    (_change_a_number, "checksum mismatch"),
])
def test_a_damaged_file_is_named_skipped_and_recomputed(damage, reason, baseline, tmp_path, capfd):
    store = Store(tmp_path)
    shutil.copytree(baseline.root, tmp_path, dirs_exist_ok=True)
    cells = tiny_cells()
    victim = store.path(cells[0].spec())
    damage(victim)
    check = store.check(cells[0].spec())
    assert check.state == "corrupt" and reason in check.reason
    df = store.load_all()
    assert set(df["cell_key"]) == {c.spec().key for c in cells[1:]}  # the damaged cell is not used
    assert f"{victim}: {reason}" in capfd.readouterr().err
    out = run_cells(cells, store, progress=False, workers=1)
    assert (out.ran, out.reused, out.corrupt) == (1, 3, 1)
    assert f"{victim} is corrupt ({reason}" in capfd.readouterr().err
    assert_stores_equal(store, baseline)


def test_a_file_under_another_cells_name_is_detected(baseline, tmp_path, capfd):
    store = Store(tmp_path)
    shutil.copytree(baseline.root, tmp_path, dirs_exist_ok=True)
    sgd, adam = tiny_cells(optimizers=("sgd", "adam"))[:2]
    shutil.copy(store.path(adam.spec()), store.path(sgd.spec()))
    check = store.check(sgd.spec())
    assert check.state == "corrupt" and f"holds cell {adam.spec().key}, not the {sgd.spec().key}" in check.reason
    out = run_cells(tiny_cells(), store, progress=False, workers=1)
    assert (out.ran, out.corrupt) == (1, 1)
    assert str(store.path(sgd.spec())) in capfd.readouterr().err
    assert_stores_equal(store, baseline)


def test_a_file_without_checksum_is_stale_and_recomputed(baseline, tmp_path):
    store = Store(tmp_path)
    shutil.copytree(baseline.root, tmp_path, dirs_exist_ok=True)
    spec = tiny_cells()[0].spec()
    _drop_metadata(store.path(spec))
    check = store.check(spec)
    assert check.state == "stale" and "no checksum metadata" in check.reason
    out = run_cells(tiny_cells(), store, progress=False, workers=1)
    assert (out.ran, out.stale, out.corrupt) == (1, 1, 0)
    assert_stores_equal(store, baseline)


def test_corrupt_failures_file_is_reported_not_fatal(tmp_path, capfd):
    store = Store(tmp_path)
    store.failures_path.write_text('{"abc": {"error": ')
    assert store.failures() == {}
    assert f"{store.failures_path} is corrupt" in capfd.readouterr().err


# --- (6) no stale results -----------------------------------------------------------------------


def test_changing_a_problems_code_recomputes_its_cells_only(tmp_path):
    proj = tmp_path / "proj"
    for pkg in ("problems", "optimizers", "bench"):
        shutil.copytree(REPO / pkg, proj / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path / "results"
    args = ["--problems", "strict_saddle,rosenbrock(dim=2)", "--optimizers", "sgd", "--seeds", "2",
            "--steps", "20", "--log-every", "10", "--workers", "1"]
    assert finish(bench_run(root, *args, cwd=proj))[:2] == (2, 0)
    store = Store(root)
    before = {p.name: pq.read_table(p).schema.metadata[META_KEY] for p in store.files()}
    source = proj / "problems" / "strict_saddle.py"
    text = source.read_text()
    assert "return x**2 + 0.25 * y**4" in text
    source.write_text(text.replace("return x**2 + 0.25 * y**4", "return 1.5 * x**2 + 0.25 * y**4"))
    ran, reused, err = finish(bench_run(root, *args, cwd=proj))
    assert (ran, reused) == (1, 1)
    assert "problems/strict_saddle.py changed" in err
    after = {p.name: pq.read_table(p).schema.metadata[META_KEY] for p in store.files()}
    assert sorted(after) == sorted(before)
    for name in before:
        meta_before, meta_after = json.loads(before[name]), json.loads(after[name])
        df = Store.read(store.cells / name)[0]
        if "strict_saddle" in df["problem"].iloc[0]:  # recomputed by the new code: new numbers
            assert meta_after["fingerprint"] != meta_before["fingerprint"]
            assert meta_after["code"]["problems/strict_saddle.py"] != meta_before["code"]["problems/strict_saddle.py"]
            assert df["code_fingerprint"].iloc[0] == meta_after["fingerprint"]
        else:  # untouched: the same file
            assert before[name] == after[name]


def test_fingerprint_covers_the_modules_that_compute_the_numbers():
    comps = code_fingerprint("strict_saddle(init_radius=1.0)", "sgd").components
    for path in ("problems/strict_saddle.py", "problems/base.py", "optimizers/base.py", "optimizers/linalg.py",
                 "bench/program.py", "bench/runner.py", "bench/landscape.py", "bench/schema.py"):
        assert path in comps, path
    for lib in ("jax", "jaxlib", "optax", "flax", "numpy"):
        assert f"version:{lib}" in comps, lib
    assert "problems/rosenbrock.py" not in comps and "bench/store.py" not in comps
    spin = code_fingerprint("spin_glass(p=3,n=30)", "sgd").components
    assert "problems/best_known.json" in spin  # the data file its targets come from
    assert code_fingerprint("rosenbrock(dim=2)", "sgd").digest != code_fingerprint("strict_saddle", "sgd").digest


def test_cell_key_does_not_depend_on_the_code():
    spec = tiny_cells()[0].spec()
    assert CellSpec.from_json(spec.to_json()).key == spec.key
    assert "fingerprint" not in spec.to_json()


# --- (7) determinism ----------------------------------------------------------------------------


def test_same_cells_twice_in_one_process_give_the_same_bits(baseline, tmp_path):
    """The second run hits the in-process compile cache; the numbers must not notice."""
    store = Store(tmp_path)
    assert run_cells(tiny_cells(), store, progress=False, workers=1).ran == 4
    assert_stores_equal(store, baseline)
