"""Plug-ins for the shared tests: ``SADDLEBENCH_IMPORT=my_plugin pytest tests/optimizers/test_shared.py``.

The shared optimizer and problem tests are parametrized over the registries when they are
collected, so a plug-in (``bench.plugins``) must be registered before that: this file imports
the modules listed in the environment variable ``SADDLEBENCH_IMPORT`` (module names or ``.py``
paths, separated by ``os.pathsep``). Without it, it does nothing (docs/ADDING.md).
"""

import os
import tempfile

# One persistent JAX compilation cache for the whole test session, shared by the xdist workers and by
# the `python -m bench` processes the tests start (they inherit the environment): the same program
# compiled in two places is compiled once. Cached executables are the same programs (same bits).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), f"saddlebench-test-jax-cache-{os.getuid()}"))

if os.environ.get("SADDLEBENCH_IMPORT"):
    from bench import plugins

    plugins.load([s for s in os.environ["SADDLEBENCH_IMPORT"].split(os.pathsep) if s])
