"""Test-only work for the Ray executor, imported by the Ray workers (a module of its own, as for
``executor_work``: functions of a test module cannot be pickled by reference)."""

import os
import pathlib

from bench.execute import Timing, compute_and_store
from bench.store import Store


def die_once_then_compute(task) -> Timing:
    """The first attempt at a cell dies mid-cell, as a worker killed by the OOM killer or a lost node
    would: holding the cell's lock, with a half-written temporary file in the store. Later attempts
    (Ray's retries) compute and store it (``compute_and_store``). A marker file per cell in
    ``<root>/attempts`` records each attempt."""
    attempts = pathlib.Path(task.root) / "attempts"
    attempts.mkdir(exist_ok=True)
    first = not any(attempts.glob(f"{task.spec.key}-*"))
    (attempts / f"{task.spec.key}-{os.getpid()}").write_text("")
    if first:
        store = Store(task.root)
        with store.claim(task.spec):
            store.cells.mkdir(parents=True, exist_ok=True)
            (store.cells / f".tmp-{task.spec.key}-deadbeef.parquet").write_bytes(b"PAR1 half a file")
            os._exit(9)
    return compute_and_store(task)
