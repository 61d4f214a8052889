"""Plug-ins for the shared tests: ``SADDLEBENCH_IMPORT=my_plugin pytest tests/optimizers/test_shared.py``.

The shared optimizer and problem tests are parametrized over the registries when they are
collected, so a plug-in (``bench.plugins``) must be registered before that: this file imports
the modules listed in the environment variable ``SADDLEBENCH_IMPORT`` (module names or ``.py``
paths, separated by ``os.pathsep``). Without it, it does nothing (docs/ADDING.md).
"""

import os
import tempfile

import pytest

# One persistent JAX compilation cache for the whole test session, shared by the xdist workers and by
# the `python -m bench` processes the tests start (they inherit the environment): the same program
# compiled in two places is compiled once. Cached executables are the same programs (same bits).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"saddlebench-test-jax-cache-{os.getuid()}"))

if os.environ.get("SADDLEBENCH_IMPORT"):
    from bench import plugins

    plugins.load([s for s in os.environ["SADDLEBENCH_IMPORT"].split(os.pathsep) if s])


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """``built_once(name, build)``: a directory that ``build(path)`` fills once per test session, also
    under pytest-xdist: the workers share the session's base temporary directory; the first to take the
    lock builds, the others wait for it and reuse the result (a module fixture alone would build once
    per worker)."""
    import fcntl
    import shutil

    def make(name, build):
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            path = tmp_path_factory.mktemp(name)
            build(path)
            return path
        base = tmp_path_factory.getbasetemp().parent  # this session's, shared by its workers
        path = base / name
        with open(base / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (base / f"{name}.built").exists():
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir()
                build(path)
                (base / f"{name}.built").write_text("")
        return path

    return make
