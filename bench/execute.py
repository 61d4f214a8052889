"""Run a list of cells against the store: reuse what is stored, run the rest, with progress."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
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
    ran: int = 0
    failed: list[tuple[CellSpec, str]] = dataclasses.field(default_factory=list)
    compile_s: float = 0.0
    run_s: float = 0.0
    wall_s: float = 0.0

    @property
    def keys(self) -> set[str]:
        return {s.key for s in self.specs}


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


def run_cells(cells: Sequence[Cell], store: Store, progress: bool = True, dtype: str = "float32",
              workers: int | None = None) -> Outcome:
    """Run every cell not already in ``store``; a cell that raises is recorded, not fatal.

    Compilation dominates small cells and runs on one core, so on a CPU the cells are spread
    over ``workers`` processes (each with its own JAX runtime); results are identical to a
    single-process run because each cell's numbers depend only on its spec.
    """
    t0 = time.perf_counter()
    specs = [spec_of(c, dtype) for c in cells]
    out = Outcome(specs=specs)
    todo = []
    for cell, spec in zip(cells, specs):
        if store.has(spec):
            out.reused += 1
        else:
            todo.append((cell, spec))
    workers = default_workers() if workers is None else workers
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress or not todo, file=sys.stderr)

    def done(cell, spec, result=None, err=None):
        if err is not None:  # one broken cell must not kill the sweep
            msg = "".join(traceback.format_exception_only(type(err), err)).strip()
            out.failed.append((spec, msg))
            tqdm.write(f"FAILED {cell.optimizer} on {cell.problem}: {msg}", file=sys.stderr)
        else:
            out.ran += 1
            out.compile_s += result[0]
            out.run_s += result[1]
        bar.set_postfix_str(f"{cell.optimizer} on {cell.problem}"[:60])
        bar.update(1)

    if workers <= 1 or len(todo) <= 1:
        for cell, spec in todo:
            try:
                done(cell, spec, _run_one(cell, spec, str(store.root), dtype))
            except Exception as err:
                done(cell, spec, err=err)
    else:
        ctx = multiprocessing.get_context("spawn")  # JAX runtimes do not survive fork
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_run_one, cell, spec, str(store.root), dtype): (cell, spec)
                       for cell, spec in todo}
            for fut in concurrent.futures.as_completed(futures):
                cell, spec = futures[fut]
                try:
                    done(cell, spec, fut.result())
                except Exception as err:
                    done(cell, spec, err=err)
    bar.close()
    out.wall_s = time.perf_counter() - t0
    return out


def load(store: Store, outcome: Outcome | None = None) -> pd.DataFrame:
    return store.load_all(outcome.keys if outcome is not None else None)
