"""Run a list of cells against the store: reuse what is stored, run the rest, with progress."""

from __future__ import annotations

import dataclasses
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


def run_cells(cells: Sequence[Cell], store: Store, progress: bool = True, dtype: str = "float32") -> Outcome:
    """Run every cell not already in ``store``; a cell that raises is recorded, not fatal."""
    t0 = time.perf_counter()
    specs = [spec_of(c, dtype) for c in cells]
    out = Outcome(specs=specs)
    todo = []
    for cell, spec in zip(cells, specs):
        if store.has(spec):
            out.reused += 1
        else:
            todo.append((cell, spec))
    bar = tqdm(todo, desc="cells", unit="cell", disable=not progress or not todo, file=sys.stderr)
    for cell, spec in bar:
        bar.set_postfix_str(f"{cell.optimizer} on {cell.problem}"[:60])
        try:
            df = run_cell(cell.problem, cell.optimizer, hparams=cell.hparams, seeds=cell.seeds,
                          steps=cell.steps, log_every=cell.log_every, dtype=dtype)
        except Exception as err:  # one broken cell must not kill the sweep
            msg = "".join(traceback.format_exception_only(type(err), err)).strip()
            out.failed.append((spec, msg))
            tqdm.write(f"FAILED {cell.optimizer} on {cell.problem}: {msg}", file=sys.stderr)
            continue
        store.save(spec, df)
        out.ran += 1
        out.compile_s += float(df["compile_s"].iloc[0])
        out.run_s += float(df["cell_run_s"].iloc[0])
    out.wall_s = time.perf_counter() - t0
    return out


def load(store: Store, outcome: Outcome | None = None) -> pd.DataFrame:
    return store.load_all(outcome.keys if outcome is not None else None)
