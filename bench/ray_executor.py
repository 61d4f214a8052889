"""The Ray executor: each cell one Ray task, on this machine or on a cluster of them.

``python -m bench run --executor ray [--address ADDR]`` (``pip install -e '.[ray]'``). It is one
more ``bench.execute.Executor``: ``run_cells`` still decides what to run (a cell already in the
store is never handed to it), and every task runs the same ``work`` as the local executors
(``compute_and_store``), so a cell's numbers and file are the same whichever executor computed it.

* **Resources.** A task asks for one GPU when the cluster reports GPUs (unless ``JAX_PLATFORMS``
  pins the CPU), else for one CPU. At most ``workers`` tasks are in flight (default: the cluster's
  GPUs, or CPUs), so the tasks start in ``run_cells``' order (expensive cells first) and a task's
  time limit counts from a moment when a worker is free to take it.
* **One store.** Every task reads and writes ``Task.root``. On several machines that directory must
  be one shared file system mounted at the same path on every node (NFS, Lustre, ...), with working
  ``flock`` (NFSv4, or v3 with lockd): the per-cell lock and the atomic rename that make the store
  safe (``bench.store``) need one file system. The project must be installed on every node.
* **Failure is data.** A cell that raises ends as an outcome of kind ``error`` with its one-line
  error (caught inside the task, so Ray never retries it: ``retry_exceptions=False``). A worker
  that dies mid-cell (killed, out of memory, its node lost) is re-run by Ray up to ``max_retries``
  times and loses nothing: the store writes a cell through a temporary file renamed into place, the
  dead worker's ``flock`` died with it, and the retry's ``Store.claim`` removes its temporary
  files and checks the store again before computing. Past the retries: kind ``crashed``.
* **Time limit.** A task without a result ``timeout`` seconds after its submission is cancelled
  with ``ray.cancel(force=True)`` (its worker process is killed; no retry) and reported as kind
  ``timeout``, as ``LocalProcesses`` does. The limit includes the worker's start-up and any retry
  after a lost worker.
* **Environment.** The workers get the parent's JAX and XLA settings through a ``runtime_env``
  (the job's for a local cluster started here, else the task's; ``FORWARDED_ENV``): ``JAX_PLATFORMS``
  (set to ``cpu`` when the parent runs on the CPU and the cluster has no GPU, so CPU runs stay CPU),
  the compilation cache directory,
  ``XLA_FLAGS``, the GPU memory settings and the plug-ins (``--import``, ``bench.plugins``; a
  plug-in given as a file path must exist at that path on every node).

``on_done`` is called in the calling thread as each task ends (a ``ray.wait`` loop). Nothing here
imports Ray until an executor is made, so the local path never loads it.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

from bench import plugins
from bench.execute import Executor, Task, TaskOutcome, Work, _error_line, _Finished, compute_and_store

INSTALL_HINT = "pip install -e '.[ray]'"

# The parent's settings that decide what a worker computes on and with which flags.
FORWARDED_ENV = ("JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS",
                 "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR",
                 plugins.ENV, plugins.NO_ENTRY_POINTS_ENV)


def import_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise RuntimeError(f"the Ray executor needs Ray ({err}): {INSTALL_HINT}") from None
    return ray


def worker_env(environ: Mapping[str, str], backend: str, cluster_gpus: float) -> dict[str, str]:
    """The environment variables a worker gets (``runtime_env={"env_vars": ...}``).

    The parent's ``FORWARDED_ENV``; if it does not set ``JAX_PLATFORMS``, a parent on the CPU
    (``backend``) with a cluster without GPUs pins the workers to ``cpu`` (a worker on a machine
    with an accelerator would otherwise pick it); with GPUs in the cluster each worker's JAX picks
    the GPU Ray gave it.
    """
    env = {k: environ[k] for k in FORWARDED_ENV if environ.get(k)}
    if "JAX_PLATFORMS" not in env and backend == "cpu" and not cluster_gpus:
        env["JAX_PLATFORMS"] = "cpu"
    return env


def wants_gpu(env: Mapping[str, str], cluster_gpus: float) -> bool:
    """Whether a task asks Ray for a GPU: the cluster has some and ``JAX_PLATFORMS`` does not put the CPU first."""
    first = env.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
    return cluster_gpus > 0 and first != "cpu"


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A ``host:port`` address must accept a TCP connection: Ray itself retries a dead address for
    minutes before it gives up. (``auto`` and ``ray://`` addresses are left to Ray.)"""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {address} ({err.strerror or err})") from None


def _run_task(work: Work, task: Task) -> _Finished:
    """In a Ray worker: the parent's plug-ins, then the task's work; an exception becomes its error line."""
    try:
        plugins.load_env()
        return _Finished(work(task), None)
    except Exception as err:  # failure is data; Ray's retries are for lost workers only
        return _Finished(None, _error_line(err))


class RayExecutor(Executor):
    """Each task a Ray remote task; see the module doc.

    Args:
      address: the cluster to connect to (``ray.init(address=...)``: ``host:6379`` of its head node, or
        ``auto`` for the one ``ray start`` started on this machine or ``RAY_ADDRESS`` names); None: a
        new local cluster with ``workers`` CPUs (default: all of them), shut down when ``run`` ends.
        If Ray is already initialized in this process, that connection is used and left open.
      timeout: seconds from a task's submission to its cancellation (None: no limit).
      work: what a task does (default ``compute_and_store``); it must be importable on the workers.
      max_retries: re-runs of a task whose worker died.
      workers: tasks in flight at once (default: the cluster's GPUs, or CPUs, when ``run`` starts).
      poll_s: the longest ``ray.wait`` between two checks of the time limits.
    """

    def __init__(self, address: str | None = None, timeout: float | None = None, work: Work = compute_and_store,
                 max_retries: int = 3, workers: int | None = None, poll_s: float = 1.0):
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        import_ray()  # no Ray: the install hint now, before any task
        self.address, self.timeout, self.work = address, timeout, work
        self.max_retries, self.workers, self.poll_s = max_retries, workers, poll_s
        self._started = False  # this executor initialized Ray (and shuts it down after ``run``)

    def connect(self) -> None:
        """Initialize Ray (see ``address``) unless it is; the CLI calls it early, so that an address
        nobody answers at is an error before any cell is built."""
        import jax

        ray = import_ray()
        if self.address:
            _check_reachable(self.address)
        if ray.is_initialized():
            return
        backend = jax.default_backend()
        with warnings.catch_warnings():
            # JAX warns at any fork once its runtime runs; Ray's forks (its processes) exec at once
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            if self.address:
                ray.init(address=self.address)
            else:  # this machine: a worker's JAX sees the accelerators this process sees
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False,
                         runtime_env={"env_vars": worker_env(os.environ, backend, 0)})
        self._started = True

    def run(self, tasks: Sequence[Task], on_done: Callable[[TaskOutcome], None]) -> None:
        import jax

        ray = import_ray()
        self.connect()
        try:
            self._run(ray, tasks, on_done, jax.default_backend())
        finally:
            if self._started:
                self._started = False
                ray.shutdown()

    def _run(self, ray, tasks, on_done, backend: str) -> None:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        env = worker_env(os.environ, backend, gpus)
        # Only what the job's runtime_env lacks goes on the task: a task with a runtime_env of its own
        # gets workers of its own, started for it, instead of the job's (already started, warm) ones.
        job_env = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
        extra = {k: v for k, v in env.items() if job_env.get(k) != v}
        gpu = wants_gpu({**job_env, **extra}, gpus)  # what the workers' JAX will see
        slots = self.workers or max(1, int(gpus if gpu else resources.get("CPU", 1)))
        remote = ray.remote(_run_task).options(
            num_cpus=1, num_gpus=1 if gpu else 0, max_retries=self.max_retries, retry_exceptions=False,
            runtime_env={"env_vars": extra} if extra else None)
        pending = list(reversed(tasks))  # popped from the end: tasks start in the order given
        in_flight: dict = {}  # ObjectRef -> (its task, when it was submitted)
        while pending or in_flight:
            while pending and len(in_flight) < slots:
                task = pending.pop()
                in_flight[remote.remote(self.work, task)] = (task, time.perf_counter())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.poll_s)
            for ref in ready:
                task, _ = in_flight.pop(ref)
                on_done(self._outcome(ray, ref, task))
            if self.timeout is None:
                continue
            now = time.perf_counter()
            for ref, (task, submitted) in list(in_flight.items()):
                if now - submitted > self.timeout:
                    del in_flight[ref]
                    ray.cancel(ref, force=True)  # kills the worker process; a cancelled task is not retried
                    on_done(TaskOutcome(task, error=f"no result after {self.timeout:.0f} s; worker killed",
                                        kind="timeout"))

    def _outcome(self, ray, ref, task: Task) -> TaskOutcome:
        try:
            finished = ray.get(ref)
        except ray.exceptions.RayTaskError as err:  # raised outside the work (e.g. it cannot be unpickled)
            cause = err.cause if isinstance(err.cause, BaseException) else err
            return TaskOutcome(task, error=_error_line(cause).splitlines()[-1], kind="error")
        except ray.exceptions.RayError as err:  # the worker (or its node) died, past the retries
            first = (str(err).strip().splitlines() or [""])[0]
            return TaskOutcome(task, error=f"worker died ({type(err).__name__}, {self.max_retries} retries): {first}",
                               kind="crashed")
        if finished.error is not None:
            return TaskOutcome(task, error=finished.error, kind="error")
        return TaskOutcome(task, timing=finished.timing)
