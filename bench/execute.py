"""Run a list of cells against the store: reuse what is stored, hand the rest to an executor.

An executor takes tasks (a cell, its spec, where to store it) and reports each one's outcome
through a callback as soon as it ends, which is how progress is shown. It never raises for a
cell: errors, time-outs and crashed workers come back as outcomes. Two are built in:

* ``InProcess``: one cell after the other in this process (``workers=1``);
* ``LocalProcesses``: a pool of spawned worker processes, each with its own JAX runtime, a
  per-cell time limit (the worker is killed and replaced) and crash detection.

A third, ``bench.ray_executor.RayExecutor`` (many machines; the optional ``ray`` extra), is made by
``make_executor(kind="ray")`` and imported only then; sharding one cell's batch over the local
devices is the runner's business, not the executor's.

Every task computes its cell under the store's lock for that cell (``Store.claim``) and first
checks the store again, so sweeps that share a store (or resume one after a crash) never compute
or write a cell twice, and a cell is reused only if its file is intact and was computed by the
current code (``Store.check``). A cell's numbers depend only on its spec and that code, not on
which worker or process ran it.
"""

from __future__ import annotations

import abc
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from bench import schema
from bench.runner import run_cell
from bench.store import CellSpec, Store, warn
from bench.suites import Cell


@dataclasses.dataclass(frozen=True)
class Task:
    """One cell to compute and store."""

    index: int
    cell: Cell
    spec: CellSpec
    root: str  # the store's directory
    dtype: str = "float32"


class Timing(NamedTuple):
    compile_s: float
    run_s: float
    reused: bool = False  # another process stored the cell while this task waited for it


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How a task ended: ``timing`` on success, else ``error`` (one line) and its ``kind``."""

    task: Task
    timing: Timing | None = None
    error: str | None = None
    kind: str = "ok"  # ok | error (the cell raised) | timeout (killed) | crashed (its worker died)

    @property
    def ok(self) -> bool:
        return self.error is None


Work = Callable[[Task], Timing]


def compute_and_store(task: Task) -> Timing:
    """The default work of a task: run the cell and store its frame, holding the cell's lock.

    If another process stored the cell while this one waited for the lock, its file is reused.
    """
    store = Store(task.root)
    with store.claim(task.spec):
        if store.check(task.spec).ok:
            return Timing(0.0, 0.0, reused=True)
        c = task.cell
        df = run_cell(c.problem, c.optimizer, hparams=c.grid, seeds=c.seeds, steps=c.steps,
                      log_every=c.log_every, dtype=task.dtype, tune_seeds=c.tune_seeds,
                      curvature=c.curvature)
        store.save(task.spec, df)
    return Timing(float(df[schema.COMPILE_S].iloc[0]), float(df[schema.CELL_RUN_S].iloc[0]))


def _error_line(err: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(err), err)).strip()


class Executor(abc.ABC):
    """Runs tasks; calls ``on_done(TaskOutcome)`` once per task, in the calling thread, as each ends."""

    @abc.abstractmethod
    def run(self, tasks: Sequence[Task], on_done: Callable[[TaskOutcome], None]) -> None:
        """Run every task; a cell's failure is an outcome, never an exception."""


class InProcess(Executor):
    """One task after the other in this process. No time limit: a hung cell hangs the sweep."""

    def __init__(self, work: Work = compute_and_store):
        self.work = work

    def run(self, tasks, on_done):
        for task in tasks:
            try:
                on_done(TaskOutcome(task, timing=self.work(task)))
            except Exception as err:  # one broken cell must not kill the sweep
                on_done(TaskOutcome(task, error=_error_line(err), kind="error"))


class _Finished(NamedTuple):  # worker -> parent: its task ended (timing, or an error line)
    timing: Timing | None
    error: str | None


def _worker(work: Work, conn) -> None:
    """Worker process: say it is ready, then run the tasks the parent sends until it sends None.

    If the parent is gone (killed), the worker finishes the cell it holds (under the cell's lock,
    so the store stays consistent) and exits quietly.
    """
    from bench import plugins

    plugins.load_env()  # the parent's plug-ins (--import, entry points): their cells run here
    try:
        conn.send("ready")
        while True:
            task = conn.recv()
            if task is None:
                return
            try:
                finished = _Finished(work(task), None)
            except Exception as err:
                finished = _Finished(None, _error_line(err))
            conn.send(finished)
    except (EOFError, OSError):  # the parent died: nobody to report to
        return


class LocalProcesses(Executor):
    """A pool of spawned worker processes on this machine.

    The parent hands each worker one task at a time over its own pipe, so it always knows which
    task a worker holds, whatever happens to the worker. A cell past ``timeout`` seconds is
    killed with its worker and recorded (kind ``timeout``): a hung cell (an XLA while loop that
    never ends, a deadlocked runtime) costs its time limit and one worker restart, not the
    sweep. A worker that dies (out of memory, a crash) loses only its cell (kind ``crashed``).
    The time limit counts from the hand-over, after the worker has started up. ``work`` must be
    picklable (a module-level function).
    """

    def __init__(self, workers: int, timeout: float | None = None, work: Work = compute_and_store,
                 poll_s: float = 1.0):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.timeout, self.work, self.poll_s = workers, timeout, work, poll_s

    def run(self, tasks, on_done):
        ctx = multiprocessing.get_context("spawn")  # JAX runtimes do not survive fork
        pending = list(reversed(tasks))  # popped from the end: tasks start in the order given
        workers: dict[int, _Slot] = {}  # pid -> its process, pipe, and the task it holds

        def start_worker():
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(self.work, child), daemon=True)
            proc.start()
            child.close()
            workers[proc.pid] = _Slot(proc, parent)

        def retire(pid: int):
            slot = workers.pop(pid)
            slot.proc.kill()
            slot.proc.join(timeout=10)
            slot.conn.close()
            if pending and len(workers) < self.workers:
                start_worker()

        failed_starts = 0
        for _ in range(min(self.workers, len(tasks))):
            start_worker()
        while workers and (pending or any(w.task is not None for w in workers.values())):
            conns = {w.conn: pid for pid, w in workers.items()}
            sentinels = {w.proc.sentinel: pid for pid, w in workers.items()}
            ready = multiprocessing.connection.wait(list(conns) + list(sentinels), timeout=self.poll_s)
            for obj in ready:
                pid = conns.get(obj, sentinels.get(obj))
                slot = workers.get(pid)
                if slot is None:
                    continue
                try:
                    msg = slot.conn.recv() if obj is slot.conn else None
                except (EOFError, OSError):
                    msg = None
                if msg is None:  # the worker died
                    task = slot.task
                    slot.proc.join(timeout=5)
                    code = slot.proc.exitcode
                    if not slot.ready:
                        failed_starts += 1
                        if failed_starts >= MAX_FAILED_STARTS:  # it would only die again: give up
                            while pending:
                                on_done(TaskOutcome(pending.pop(), error=f"no worker could start (exit code "
                                                    f"{code}, {failed_starts} times)", kind="crashed"))
                    retire(pid)
                    if task is not None:
                        on_done(TaskOutcome(task, error=f"worker died with exit code {code}", kind="crashed"))
                    continue
                slot.ready = True
                if isinstance(msg, _Finished) and slot.task is not None:
                    task, slot.task = slot.task, None
                    on_done(TaskOutcome(task, timing=msg.timing) if msg.error is None
                            else TaskOutcome(task, error=msg.error, kind="error"))
                if slot.task is None and pending:  # ready, or done with its task: hand it the next
                    slot.task, slot.started = pending.pop(), time.perf_counter()
                    slot.conn.send(slot.task)
            now = time.perf_counter()
            for pid, slot in list(workers.items()):
                if slot.task is not None and self.timeout is not None and now - slot.started > self.timeout:
                    task = slot.task
                    retire(pid)
                    on_done(TaskOutcome(task, error=f"no result after {self.timeout:.0f} s; worker killed",
                                        kind="timeout"))
        for slot in workers.values():
            try:
                slot.conn.send(None)
            except OSError:
                pass
        for slot in workers.values():
            slot.proc.join(timeout=10)
            if slot.proc.is_alive():
                slot.proc.kill()
            slot.conn.close()


@dataclasses.dataclass
class _Slot:
    proc: multiprocessing.Process
    conn: Any
    task: Task | None = None
    started: float = 0.0
    ready: bool = False  # it has said it is ready: it started up


# Workers that die before saying they are ready (an import error, a bad ``work`` function) are
# replaced this many times in a sweep, then the remaining tasks are reported as crashed.
MAX_FAILED_STARTS = 3


def default_workers() -> int:
    """Processes for a sweep: one per core (at most 4) on the CPU; one on an accelerator."""
    import jax

    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


EXECUTORS = ("local", "ray")  # make_executor's kinds (``--executor``)


def make_executor(workers: int | None = None, timeout: float | None = None, kind: str = "local",
                  address: str | None = None) -> Executor:
    """The local executor for ``workers`` processes (default ``default_workers()``), or with
    ``kind="ray"`` the Ray executor (``address``: its cluster; ``workers``: tasks in flight)."""
    if kind == "ray":
        from bench.ray_executor import RayExecutor  # imports Ray: only here

        return RayExecutor(address=address, timeout=timeout, workers=workers)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}; valid executors: {', '.join(EXECUTORS)}")
    if address is not None:
        raise ValueError("an address is for the Ray executor (kind='ray')")
    workers = default_workers() if workers is None else workers
    return InProcess() if workers <= 1 else LocalProcesses(workers, timeout)


# Variables that decide how JAX's GPU client takes memory; a user who set one keeps it.
MEMORY_ENV = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")


def accelerator_possible(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether JAX may pick an accelerator here, decided without starting a backend: the platforms
    ``JAX_PLATFORMS`` lists (any but ``cpu``), or if unset whether a PJRT plug-in (``jax_plugins``:
    CUDA, ROCm) or ``libtpu`` is installed."""
    import importlib.metadata
    import importlib.util
    import pkgutil

    listed = [p.strip().lower() for p in environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
    if listed:
        return any(p != "cpu" for p in listed)
    if importlib.util.find_spec("libtpu") is not None or importlib.metadata.entry_points(group="jax_plugins"):
        return True
    try:
        import jax_plugins
    except ImportError:
        return False
    return any(True for _ in pkgutil.iter_modules(jax_plugins.__path__))


def plan_memory(shared: bool, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Memory of an accelerator shared by several processes; call before JAX starts its backend.

    JAX's GPU client takes 75% of the device's memory when it starts (``XLA_PYTHON_CLIENT_PREALLOCATE``),
    so a second process on the same device (a worker beside the parent that built the cells, two
    local workers, a Ray task on the head node's GPU) runs out of memory. When ``shared`` and an
    accelerator is possible (``accelerator_possible``) and the user set none of ``MEMORY_ENV``,
    this sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (memory is taken as needed; the workers
    inherit it) and returns what it set. On the CPU it sets nothing: the variables only act on
    accelerators, and the numbers never depend on them.
    """
    if not shared or any(k in environ for k in MEMORY_ENV) or not accelerator_possible(environ):
        return {}
    environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


@dataclasses.dataclass
class Outcome:
    """What a sweep did."""

    specs: list[CellSpec]
    reused: int = 0
    skipped_failed: int = 0
    stale: int = 0  # stored cells recomputed because other code computed them
    corrupt: int = 0  # stored files that failed their checks and were recomputed
    ran: int = 0
    failed: list[tuple[CellSpec, str]] = dataclasses.field(default_factory=list)
    compile_s: float = 0.0
    run_s: float = 0.0
    wall_s: float = 0.0


def _cost(cell: Cell) -> float:
    """A rough relative cost, for scheduling only: HVP methods and big problems first."""
    import optimizers

    sp = optimizers.spec(cell.optimizer)
    factor = 20.0 if sp.needs_hvp else (5.0 if sp.needs_value_fn else 1.0)
    return factor * cell.steps * len(cell.grid) * len(cell.seeds)


def run_cells(cells: Sequence[Cell], store: Store, progress: bool = True, dtype: str = "float32",
              workers: int | None = None, timeout: float | None = None, retry_failed: bool = False,
              executor: Executor | None = None) -> Outcome:
    """Run every cell not already in ``store``; a cell that fails is recorded, not fatal.

    Compilation dominates small cells, so on a CPU the cells are spread over ``workers``
    processes (``make_executor``); results are identical to a single-process run because each
    cell's numbers depend only on its spec. A cell that failed before is skipped unless
    ``retry_failed``. The most expensive cells (second-order methods, big problems) start first
    so none is left alone at the end; cells another process is computing now go last (their task
    then waits for that process and reuses its file). A stored file is reused only if it is intact
    and was computed by the current code (``Store.check``): a corrupt file is reported by name and
    recomputed, a stale one recomputed. ``executor`` replaces the local one.
    """
    t0 = time.perf_counter()
    specs = [c.spec(dtype) for c in cells]
    out = Outcome(specs=specs)
    todo = []
    store.clean_tmp()
    failed_before = store.failures()
    stale_reasons: dict[str, int] = {}
    for cell, spec in zip(cells, specs):
        check = store.check(spec)
        if check.ok:
            out.reused += 1
            continue
        skip = spec.key in failed_before and not retry_failed
        if check.state == "corrupt":
            out.corrupt += 1
            warn(f"{check.path} is corrupt ({check.reason}); " + ("not used" if skip else "recomputing it"))
        elif check.state == "stale" and not skip:
            out.stale += 1
            stale_reasons[check.reason] = stale_reasons.get(check.reason, 0) + 1
        if skip:
            out.skipped_failed += 1
        else:
            todo.append((cell, spec))
    for reason, n in stale_reasons.items():
        warn(f"{n} stored cell{'s' if n > 1 else ''} recomputed: {reason}")
    todo.sort(key=lambda cs: (store.claimed(cs[1]), -_cost(cs[0])))
    tasks = [Task(i, cell, spec, str(store.root), dtype) for i, (cell, spec) in enumerate(todo)]
    executor = make_executor(workers, timeout) if executor is None else executor
    bar = tqdm(total=len(tasks), desc="cells", unit="cell", disable=not progress or not tasks, file=sys.stderr)

    def on_done(result: TaskOutcome):
        cell, spec = result.task.cell, result.task.spec
        if not result.ok:
            out.failed.append((spec, result.error))
            store.record_failure(spec, result.error)
            tqdm.write(f"FAILED {cell.optimizer} on {cell.problem}: {result.error}", file=sys.stderr)
        else:
            store.forget_failure(spec)
            if result.timing.reused:
                out.reused += 1
            else:
                out.ran += 1
            out.compile_s += result.timing.compile_s
            out.run_s += result.timing.run_s
        bar.set_postfix_str(f"{cell.optimizer} on {cell.problem}"[:60])
        bar.update(1)

    if tasks:
        executor.run(tasks, on_done)
    bar.close()
    out.wall_s = time.perf_counter() - t0
    return out
