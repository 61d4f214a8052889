"""Run a list of cells against the store: reuse what is stored, run the rest, with progress."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import sys
import time
import traceback
from collections.abc import Sequence

import pandas as pd
from tqdm.auto import tqdm

from bench.runner import run_cell
from bench.store import CellSpec, Store, make_spec
from bench.suites import Cell


@dataclasses.dataclass
class Outcome:
    specs: list[CellSpec]
    reused: int = 0
    skipped_failed: int = 0
    ran: int = 0
    failed: list[tuple[CellSpec, str]] = dataclasses.field(default_factory=list)
    compile_s: float = 0.0
    run_s: float = 0.0
    wall_s: float = 0.0

    @property
    def keys(self) -> set[str]:
        return {s.key for s in self.specs}


def _cost(cell: Cell) -> float:
    """A rough relative cost, for scheduling only: HVP methods and big problems first."""
    import optimizers

    sp = optimizers.spec(cell.optimizer)
    factor = 20.0 if sp.needs_hvp else (5.0 if sp.needs_value_fn else 1.0)
    return factor * cell.steps * len(cell.hparams) * len(cell.seeds)


def spec_of(cell: Cell, dtype: str = "float32") -> CellSpec:
    return make_spec(cell.problem, cell.optimizer, cell.hparams, cell.seeds, cell.steps, cell.log_every, dtype)


def default_workers() -> int:
    """Processes for a sweep: one per core (at most 4) on the CPU; one on an accelerator."""
    import jax

    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _run_one(cell: Cell, spec: CellSpec, root: str, dtype: str) -> tuple[float, float]:
    """Worker: run one cell and store it; returns (compile seconds, run seconds)."""
    df = run_cell(cell.problem, cell.optimizer, hparams=cell.hparams, seeds=cell.seeds,
                  steps=cell.steps, log_every=cell.log_every, dtype=dtype)
    Store(root).save(spec, df)
    return float(df["compile_s"].iloc[0]), float(df["cell_run_s"].iloc[0])


def _worker(tasks, results):
    """Worker process: run cells from ``tasks`` until it reads None."""
    while True:
        item = tasks.get()
        if item is None:
            return
        idx, cell, spec, root, dtype = item
        results.put(("start", idx, os.getpid()))
        try:
            results.put(("done", idx, _run_one(cell, spec, root, dtype), None))
        except Exception as err:
            results.put(("done", idx, None, "".join(traceback.format_exception_only(type(err), err)).strip()))


class CellTimeout(Exception):
    """A cell ran past the sweep's per-cell time limit; its worker was killed."""


def _run_pool(todo, root: str, dtype: str, workers: int, timeout: float | None, done) -> None:
    """Spread cells over worker processes; a cell past ``timeout`` seconds is killed and recorded.

    A hung cell (an XLA while loop that never ends, a deadlocked runtime) costs its time limit
    and one worker restart, not the sweep.
    """
    ctx = multiprocessing.get_context("spawn")  # JAX runtimes do not survive fork
    tasks, results = ctx.Queue(), ctx.Queue()
    for i, (cell, spec) in enumerate(todo):
        tasks.put((i, cell, spec, root, dtype))
    procs = {}

    def start_worker():
        p = ctx.Process(target=_worker, args=(tasks, results), daemon=True)
        p.start()
        procs[p.pid] = p

    for _ in range(min(workers, len(todo))):
        start_worker()
    running: dict[int, tuple[int, float]] = {}  # pid -> (task index, start time)
    remaining = set(range(len(todo)))
    while remaining:
        try:
            msg = results.get(timeout=1.0)
        except queue.Empty:
            msg = None
        if msg is not None and msg[0] == "start":
            running[msg[2]] = (msg[1], time.perf_counter())
        elif msg is not None:
            _, idx, result, err = msg
            for pid, (i, _) in list(running.items()):
                if i == idx:
                    del running[pid]
            if idx in remaining:
                remaining.discard(idx)
                cell, spec = todo[idx]
                done(cell, spec, result, None if err is None else RuntimeError(err))
        now = time.perf_counter()
        for pid, (idx, t0) in list(running.items()):
            if timeout is not None and now - t0 > timeout:
                procs.pop(pid).kill()
                del running[pid]
                remaining.discard(idx)
                cell, spec = todo[idx]
                done(cell, spec, err=CellTimeout(f"no result after {timeout:.0f} s; worker killed"))
                if remaining:
                    start_worker()
        for pid, p in list(procs.items()):  # a worker that died (out of memory, a crash)
            if not p.is_alive() and p.exitcode not in (0, None) and pid in running:
                idx, _ = running.pop(pid)
                procs.pop(pid)
                remaining.discard(idx)
                cell, spec = todo[idx]
                done(cell, spec, err=RuntimeError(f"worker died with exit code {p.exitcode}"))
                if remaining:
                    start_worker()
    for _ in procs:
        tasks.put(None)
    for p in procs.values():
        p.join(timeout=10)
        if p.is_alive():
            p.kill()


def run_cells(cells: Sequence[Cell], store: Store, progress: bool = True, dtype: str = "float32",
              workers: int | None = None, timeout: float | None = None, retry_failed: bool = False) -> Outcome:
    """Run every cell not already in ``store``; a cell that raises is recorded, not fatal.

    Compilation dominates small cells and runs on one core, so on a CPU the cells are spread
    over ``workers`` processes (each with its own JAX runtime); results are identical to a
    single-process run because each cell's numbers depend only on its spec. With workers, a
    cell that runs past ``timeout`` seconds is killed and recorded as failed. The most
    expensive cells (second-order methods, big problems) start first so none is left alone at
    the end.
    """
    t0 = time.perf_counter()
    specs = [spec_of(c, dtype) for c in cells]
    out = Outcome(specs=specs)
    todo = []
    failed_before = store.failures()
    for cell, spec in zip(cells, specs):
        if store.has(spec):
            out.reused += 1
        elif spec.key in failed_before and not retry_failed:
            out.skipped_failed += 1
        else:
            todo.append((cell, spec))
    todo.sort(key=lambda cs: -_cost(cs[0]))
    workers = default_workers() if workers is None else workers
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress or not todo, file=sys.stderr)

    def done(cell, spec, result=None, err=None):
        if err is not None:  # one broken cell must not kill the sweep
            msg = "".join(traceback.format_exception_only(type(err), err)).strip()
            out.failed.append((spec, msg))
            store.record_failure(spec, msg)
            tqdm.write(f"FAILED {cell.optimizer} on {cell.problem}: {msg}", file=sys.stderr)
        else:
            store.forget_failure(spec)
            out.ran += 1
            out.compile_s += result[0]
            out.run_s += result[1]
        bar.set_postfix_str(f"{cell.optimizer} on {cell.problem}"[:60])
        bar.update(1)

    if workers <= 1:
        for cell, spec in todo:
            try:
                done(cell, spec, _run_one(cell, spec, str(store.root), dtype))
            except Exception as err:
                done(cell, spec, err=err)
    else:
        _run_pool(todo, str(store.root), dtype, workers, timeout, done)
    bar.close()
    out.wall_s = time.perf_counter() - t0
    return out


def load(store: Store, outcome: Outcome | None = None) -> pd.DataFrame:
    return store.load_all(outcome.keys if outcome is not None else None)
