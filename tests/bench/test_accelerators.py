"""Nothing CPU-only on the way of ``make bench SUITE=full`` on an accelerator (issue 13, item 7):
what depends on the backend, checked on the CPU by naming the backend.

* ``bench.program.compiler_options``: the CPU flags (optimization level 1; the classic emitters for
  second-order programs) on the CPU only; accelerators keep XLA's defaults.
* ``bench.execute.default_workers``: one process on an accelerator.
* ``bench.execute.plan_memory``: no 75% preallocation when several processes share a device, only
  where an accelerator is possible and the user set nothing.
* the Makefile: ``JAX_PLATFORMS`` of ``make bench`` can be overridden; ``make test`` stays on the CPU.
"""

import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import pytest

from bench import execute, program

ROOT = pathlib.Path(__file__).resolve().parents[2]
CPU_FIRST_ORDER = {"xla_backend_optimization_level": 1}
CPU_SECOND_ORDER = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
def test_compile_options_are_the_cpu_flags_on_the_cpu_only(monkeypatch, backend):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    got = {o: program.compiler_options(o) for o in ("adam", "sgd", "cubic_reg", "saddle_free_newton", None)}
    if backend == "cpu":  # unchanged from what every stored CPU cell was compiled with
        assert got == {"adam": CPU_FIRST_ORDER, "sgd": CPU_FIRST_ORDER, "cubic_reg": CPU_SECOND_ORDER,
                       "saddle_free_newton": CPU_SECOND_ORDER, None: CPU_SECOND_ORDER}
    else:
        assert all(v == {} for v in got.values()), got


def test_one_worker_process_on_an_accelerator(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert execute.default_workers() == 1
    assert isinstance(execute.make_executor(), execute.InProcess)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert execute.default_workers() == max(1, min(4, os.cpu_count() or 1))


def test_memory_plan_only_where_processes_share_an_accelerator(monkeypatch):
    for env in ({"JAX_PLATFORMS": "cuda"}, {"JAX_PLATFORMS": "cuda,cpu"}, {"JAX_PLATFORMS": "tpu"}):
        env = dict(env)
        assert execute.plan_memory(shared=True, environ=env) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    for shared, env in ((False, {"JAX_PLATFORMS": "cuda"}),  # one process: preallocation is fine
                        (True, {"JAX_PLATFORMS": "cpu"}),  # the CPU: nothing to plan, numbers untouched
                        (True, {"JAX_PLATFORMS": "cuda", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3"}),  # the user's
                        (True, {"JAX_PLATFORMS": "cuda", "XLA_PYTHON_CLIENT_PREALLOCATE": "true"})):
        before = dict(env)
        assert execute.plan_memory(shared=shared, environ=env) == {} and env == before
    # JAX_PLATFORMS unset: an accelerator is possible exactly where a plug-in for one is installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])
    monkeypatch.setitem(sys.modules, "jax_plugins", None)  # `import jax_plugins` fails: none installed
    env = {}
    assert not execute.accelerator_possible(env) and execute.plan_memory(shared=True, environ=env) == {}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "libtpu" else None)
    assert execute.accelerator_possible({})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: ["xla_cuda12"])
    assert execute.accelerator_possible({})


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_bench_platform_can_be_overridden_and_tests_stay_on_the_cpu():
    def dry(*args):
        env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "MAKEFLAGS", "MAKELEVEL")}
        out = subprocess.run(["make", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        return [line for line in out.stdout.splitlines() if " -m bench " in line or " -m pytest " in line]

    assert all(line.startswith("JAX_PLATFORMS=cpu ") for line in dry("bench") if " run " in line)
    gpu = [line for line in dry("bench", "SUITE=full", "JAX_PLATFORMS=cuda") if " run " in line]
    assert gpu and all(line.startswith("JAX_PLATFORMS=cuda ") and "--suite full" in line for line in gpu)
    tests = dry("test", "JAX_PLATFORMS=cuda")
    assert tests and all(line.startswith("JAX_PLATFORMS=cpu ") for line in tests)
