"""Executors: outcomes of cells that succeed, raise, hang past their limit or kill their worker."""

import pathlib
import sys

import pytest

from bench import execute, grid, suites
from bench.store import Store

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # spawned workers import executor_work from here
import executor_work  # noqa: E402


def cells(*behaviours):
    g = grid.expand("sgd", {"learning_rate": 0.1})
    return [suites.Cell(b, "sgd", g, [i], 10, 10) for i, b in enumerate(behaviours)]


def tasks(*behaviours):
    return [execute.Task(i, c, c.spec(), "unused") for i, c in enumerate(cells(*behaviours))]


def test_local_processes_report_every_way_a_cell_can_end():
    ts = tasks("ok", "raise", "sleep", "crash", "ok")
    seen = []
    ex = execute.LocalProcesses(workers=2, timeout=8.0, work=executor_work.behave, poll_s=0.1)
    ex.run(ts, seen.append)
    by_problem = {}
    for outcome in seen:
        by_problem.setdefault(outcome.task.cell.problem, []).append(outcome)
    assert sorted(o.task.index for o in seen) == [0, 1, 2, 3, 4]  # each task reported exactly once
    assert [o.kind for o in by_problem["ok"]] == ["ok", "ok"]
    assert {o.timing.run_s for o in by_problem["ok"]} == {0.0, 4.0}  # the worker's own return value
    (raised,) = by_problem["raise"]
    assert raised.kind == "error" and "ValueError: this cell is broken" in raised.error
    (slept,) = by_problem["sleep"]
    assert slept.kind == "timeout" and "no result after 8 s" in slept.error
    (crashed,) = by_problem["crash"]
    assert crashed.kind == "crashed" and "exit code 7" in crashed.error
    assert all(o.ok == (o.kind == "ok") for o in seen)


def test_in_process_executor_turns_exceptions_into_outcomes():
    seen = []
    execute.InProcess(work=executor_work.behave).run(tasks("raise", "ok"), seen.append)
    assert [o.kind for o in seen] == ["error", "ok"]


def test_run_cells_records_failures_from_any_executor(tmp_path):
    store = Store(tmp_path)
    cs = cells("crash", "sleep")
    ex = execute.LocalProcesses(workers=2, timeout=5.0, work=executor_work.behave, poll_s=0.1)
    out = execute.run_cells(cs, store, progress=False, executor=ex)
    assert out.ran == 0 and len(out.failed) == 2
    failures = store.failures()
    assert {c.spec().key for c in cs} == set(failures)
    errors = sorted(f["error"] for f in failures.values())
    assert "exit code 7" in errors[1] and "no result after 5 s" in errors[0]
    again = execute.run_cells(cs, store, progress=False, executor=ex)  # failed cells are skipped
    assert again.skipped_failed == 2 and not again.failed


def test_executor_needs_a_worker():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        execute.LocalProcesses(workers=0)


def test_workers_that_cannot_start_fail_the_tasks_instead_of_hanging():
    seen = []
    ex = execute.LocalProcesses(workers=2, timeout=60.0, work=executor_work.DiesOnArrival(), poll_s=0.1)
    ex.run(tasks("ok", "ok", "ok"), seen.append)
    assert sorted(o.task.index for o in seen) == [0, 1, 2]
    assert all(o.kind == "crashed" and "no worker could start (exit code 5" in o.error for o in seen)
