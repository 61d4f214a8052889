"""The Ray executor (issue 13, item 2): against a real local Ray cluster of 2 CPUs started here, the
same store as the local executor, a worker killed mid-cell retried with nothing lost, and every other
way a cell can end; plus its command-line checks, and that the local path never imports Ray.

Everything that needs the cluster is one test, so pytest-xdist (``--dist worksteal`` spreads a
module's tests over workers) can never start two clusters on the machine at once.
"""

import os
import pathlib
import subprocess
import sys
import threading
import time

import jax
import pytest
import ray

from bench import cli, execute, grid, suites, validate
from bench.execute import Executor, run_cells
from bench.ray_executor import RayExecutor, wants_gpu, worker_env
from bench.store import Store

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))  # executor_work and ray_work, here and (PYTHONPATH below) in the Ray workers
import executor_work  # noqa: E402
import ray_work  # noqa: E402
from test_reliability import assert_same_bits, assert_stores_equal, cell_frames, tiny_cells  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs; the executors use it (Ray is initialized) and leave it open. Its
    job environment already holds what the executors pass (``worker_env``), so their tasks share the
    job's workers, which stay warm (JAX imported, programs loaded) from one executor to the next.

    The workers load the cells' programs from the test session's persistent compilation cache
    (``tests/conftest.py``), where the local run put them (even these small ones: minimum compile
    time 0): an executable loaded from the cache is the same program, so the same bits."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a test cluster
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **worker_env(os.environ, "cpu", 0)}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 2**20, runtime_env={"env_vars": env})
    old = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield ray.cluster_resources()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old)
    ray.shutdown()


def behaviour_tasks(*behaviours):
    """Tasks whose problem name says what ``executor_work.behave`` does with them."""
    g = grid.expand("sgd", {"learning_rate": 0.1})
    cs = [suites.Cell(b, "sgd", g, [i], 10, 10) for i, b in enumerate(behaviours)]
    return [execute.Task(i, c, c.spec(), "unused") for i, c in enumerate(cs)]


class Refuses(Executor):
    def run(self, tasks, on_done):
        raise AssertionError(f"{len(tasks)} stored cells were scheduled again")


# Ray starts its processes with subprocess (fork then exec at once, no JAX thread runs in the child):
# Python's warning about forking a multithreaded process does not apply.
@pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
def test_ray_executor_on_a_local_cluster(cluster, tmp_path):
    """The phases share the cluster's two workers: the ones that kill a worker come last."""
    assert cluster["CPU"] == 2 and "GPU" not in cluster
    cells = tiny_cells(problem_names=("strict_saddle",))  # sgd and adam, 2 seeds, 40 steps
    local = Store(tmp_path / "local")
    assert run_cells(cells, local, progress=False, workers=1).ran == 2

    # The same store, bit for bit, as the local executor's. Stored cells never reach an executor again,
    # and a task for one anyway (another sweep stored it meanwhile) reuses the file, computing nothing.
    store = Store(tmp_path / "ray")
    out = run_cells(cells, store, progress=False, executor=RayExecutor(poll_s=0.1))
    assert out.ran == 2 and not out.failed, out.failed
    assert_stores_equal(store, local)
    again = run_cells(cells, local, progress=False, executor=Refuses())
    assert again.reused == 2 and again.ran == 0
    seen = []
    RayExecutor(poll_s=0.1).run([execute.Task(i, c, c.spec(), str(store.root)) for i, c in enumerate(cells)],
                                seen.append)
    assert [(o.kind, o.timing.reused) for o in seen] == [("ok", True)] * 2
    assert_stores_equal(store, local)

    # Failure is data: each task reported once, in this thread, with its kind and one-line error.
    seen, threads = [], set()

    def on_done(outcome):
        seen.append(outcome)
        threads.add(threading.get_ident())

    RayExecutor(work=executor_work.behave, poll_s=0.1).run(behaviour_tasks("ok", "raise", "ok"), on_done)
    by_index = {o.task.index: o for o in seen}
    assert sorted(by_index) == [0, 1, 2] and len(seen) == 3 and threads == {threading.get_ident()}
    assert [by_index[i].kind for i in range(3)] == ["ok", "error", "ok"]
    assert [by_index[i].timing.run_s for i in (0, 2)] == [0.0, 2.0]  # the work's own return values
    assert by_index[1].error == "ValueError: this cell is broken"  # raised once: exceptions are not retried

    # A worker killed mid-cell (holding the cell's lock, half a temporary file written) loses nothing:
    # Ray runs the task again (on the other worker) and the store ends complete, with the same bits.
    killed = Store(tmp_path / "killed")
    die_once = RayExecutor(work=ray_work.die_once_then_compute, max_retries=2, poll_s=0.1)
    out = run_cells(cells[:1], killed, progress=False, executor=die_once)
    assert out.ran == 1 and not out.failed, out.failed
    attempts = [p.name.split("-")[0] for p in (killed.root / "attempts").iterdir()]
    assert attempts == 2 * [cells[0].spec().key]  # one killed attempt, one retry
    assert not list(killed.cells.glob(".tmp-*"))
    (name,) = cell_frames(killed)
    assert_same_bits(cell_frames(killed)[name], cell_frames(local)[name], name)

    # Without retries left, a dead worker is a crashed cell, in one line.
    seen.clear()
    task = execute.Task(0, cells[1], cells[1].spec(), str(killed.root))
    RayExecutor(work=ray_work.die_once_then_compute, max_retries=0, poll_s=0.1).run([task], on_done)
    (crashed,) = seen
    assert crashed.kind == "crashed" and "\n" not in crashed.error
    assert crashed.error.startswith("worker died (WorkerCrashedError, 0 retries): "), crashed.error

    # A hung cell: cancelled (its worker killed) after its time limit, kind timeout.
    seen.clear()
    t0 = time.perf_counter()
    RayExecutor(work=executor_work.behave, timeout=2.0, poll_s=0.1).run(behaviour_tasks("sleep"), on_done)
    (slept,) = seen
    assert slept.kind == "timeout" and slept.error == "no result after 2 s; worker killed"
    assert 2.0 < time.perf_counter() - t0 < 30.0  # not the 600 s the cell would sleep


def test_workers_get_the_parents_platform_and_ask_for_gpus_only_where_there_are_some():
    assert worker_env({}, "cpu", 0) == {"JAX_PLATFORMS": "cpu"}  # CPU runs stay on the CPU
    assert worker_env({}, "cpu", 4) == {}  # a CPU-only head node: each worker's JAX takes its GPU
    assert worker_env({}, "gpu", 4) == {}
    env = {"JAX_PLATFORMS": "cuda", "XLA_FLAGS": "--xla_gpu_autotune_level=0", "SADDLEBENCH_IMPORT": "my_plugin",
           "HOME": "/root", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert worker_env(env, "gpu", 1) == {k: v for k, v in env.items() if k != "HOME"}
    assert wants_gpu({}, 2) and wants_gpu({"JAX_PLATFORMS": "cuda,cpu"}, 1)
    assert not wants_gpu({"JAX_PLATFORMS": "cpu"}, 8) and not wants_gpu({}, 0)


def test_executor_flags_are_checked_before_anything_runs(monkeypatch, capsys, tmp_path):
    assert validate.executor_errors("local") == [] and validate.executor_errors("ray", "10.0.0.1:6379") == []
    assert validate.executor_errors("dask") == ["unknown executor 'dask'; valid executors: local, ray"]
    tiny = ["--problems", "strict_saddle", "--optimizers", "sgd", "--results", str(tmp_path / "r"), "--no-progress"]
    cases = [(["--address", "10.0.0.1:6379"], "error: --address '10.0.0.1:6379' is a Ray cluster's address: "
                                               "it needs --executor ray"),
             (["--executor", "ray", "--address", " "], "error: --address is empty; give the head node's host:port, "
                                                        "or auto"),
             (["--executor", "rya"], "error: unknown executor 'rya' (did you mean 'ray'?); valid executors: "
                                     "local, ray"),
             (["--executor", "ray", "--address", "127.0.0.1:1"],  # port 1: nothing listens (Ray would retry)
              "error: cannot connect to the Ray cluster at --address '127.0.0.1:1': ConnectionError: nothing "
              "answers at 127.0.0.1:1 (Connection refused)")]
    for flags, line in cases:
        assert cli.main(["run", *tiny, *flags]) == 2
        assert capsys.readouterr().err.strip() == line
    monkeypatch.setattr(validate, "ray_installed", lambda: False)
    for command in (["run", *tiny], ["compare", "sgd", "adam", "--problems", "strict_saddle"]):
        assert cli.main([*command, "--executor", "ray"]) == 2
        assert capsys.readouterr().err.strip() == ("error: --executor ray needs Ray, which is not installed: "
                                                   "pip install -e '.[ray]'")
    assert not (tmp_path / "r").exists()  # nothing ran or was written


def test_the_local_path_never_imports_ray():
    code = ("import sys, bench.cli, bench.execute, bench.ray_executor\n"
            "bench.execute.make_executor(2, 10.0)\n"
            "bench.cli.parser().parse_args(['run', '--suite', 'smoke'])\n"
            "assert bench.cli.validate.executor_errors('local') == []\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
