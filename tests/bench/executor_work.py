"""Test-only work for executors: what a task does depends on its cell's problem name.

Imported by spawned worker processes, so it lives in a module of its own (a test module's
functions cannot be pickled by reference under pytest's importlib import mode).
"""

import os
import time

from bench.execute import Timing


def behave(task) -> Timing:
    what = task.cell.problem
    if what == "sleep":  # a hung cell: only the time limit ends it
        time.sleep(600)
    if what == "crash":  # a worker that dies mid-cell (a segfault, the OOM killer)
        os._exit(7)
    if what == "raise":
        raise ValueError("this cell is broken")
    return Timing(compile_s=1.0, run_s=float(task.index))


class DiesOnArrival:
    """A work function whose worker dies while starting up (as on an import error)."""

    def __init__(self):
        self.armed = True

    def __setstate__(self, state):  # runs in the worker, while it unpickles its arguments
        os._exit(5)

    def __call__(self, task) -> Timing:
        raise AssertionError("never called")
