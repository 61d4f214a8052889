"""Test-only work for a spawned worker: succeeds only if the parent's plug-ins are registered there.

A module of its own so that spawned workers can import it (``tests/bench/test_extending.py``).
"""

from bench.execute import Timing


def registered(task) -> Timing:
    """Raise unless the task's optimizer and problem family are registered in this (worker) process."""
    import optimizers
    import problems

    family = problems.parse_name(task.cell.problem)[0]
    if task.cell.optimizer not in optimizers.names() or family not in problems.names():
        raise KeyError(f"{task.cell.optimizer} or {family} is not registered in the worker")
    return Timing(compile_s=0.0, run_s=0.0)
