"""Plug-ins: your own optimizers and problems, registered from outside the project.

A plug-in is a Python module that, when imported, registers into the two registries
(``optimizers.register``, ``problems.register``); nothing in this project is edited. Two ways to
load one:

* on the command line: ``python -m bench run --import my_module ...`` (repeatable; a module
  name importable from the current directory or ``sys.path``, or a path to a ``.py`` file);
  a suite file can list them too (``imports = [...]``, ``bench.suite_file``);
* installed: a package that declares an entry point in the group ``saddlebench.plugins``
  (``[project.entry-points."saddlebench.plugins"] my_plugin = "my_package.bench_plugin"``) is
  loaded by every ``python -m bench`` command. An entry point may name a module (importing it
  registers) or a callable (called with no arguments after import). ``SADDLEBENCH_NO_PLUGINS=1``
  skips entry points.

Worker processes (``bench.execute.LocalProcesses``, spawned) load the same plug-ins: ``load``
records them in the environment variable ``SADDLEBENCH_IMPORT``, which the workers inherit and
read (``load_env``) before their first cell. The test suite reads it too (``tests/conftest.py``),
so ``SADDLEBENCH_IMPORT=my_plugin pytest tests/optimizers/test_shared.py -k my_opt`` runs the
shared checks on a plug-in (``docs/ADDING.md``).

Every failure (a module that is not found, raises on import, or registers a name that is taken)
is a ``PluginError`` whose message is one line naming the module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pathlib
import sys
from collections.abc import Iterable
from types import ModuleType

GROUP = "saddlebench.plugins"
ENV = "SADDLEBENCH_IMPORT"
NO_ENTRY_POINTS_ENV = "SADDLEBENCH_NO_PLUGINS"

_LOADED: dict[str, ModuleType] = {}  # the spec as given (absolute for paths) -> its module
_ENTRY_POINTS_LOADED = False


class PluginError(Exception):
    """A plug-in that cannot be loaded; the message is one line."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _normalize(spec: str) -> str:
    return str(pathlib.Path(spec).resolve()) if _is_path(spec) else spec


def _import_path(path: pathlib.Path) -> ModuleType:
    """Import a ``.py`` file as the module named by its stem (its directory goes on ``sys.path``,
    as ``python path/to/file.py`` would put it, so its own imports and worker processes find it)."""
    if not path.is_file():
        raise PluginError(f"cannot import plug-in {str(path)!r}: no such file")
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        if pathlib.Path(getattr(existing, "__file__", "") or "").resolve() == path:
            return existing
        raise PluginError(f"cannot import plug-in {str(path)!r}: a module named {name!r} is already imported "
                          f"from {getattr(existing, '__file__', None)!r}; rename the file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load(specs: Iterable[str]) -> list[ModuleType]:
    """Import each plug-in module (a module name or a ``.py`` path) once; record it for workers.

    Raises ``PluginError`` (one line) for a module that cannot be imported or that fails while
    registering (a name already registered, a factory without defaults, ...).
    """
    modules = []
    for raw in specs:
        spec = str(raw).strip()
        if not spec:
            raise PluginError("--import needs a module name or a path to a .py file, got an empty string")
        key = _normalize(spec)
        if key in _LOADED:
            modules.append(_LOADED[key])
            continue
        cwd = os.getcwd()
        if not _is_path(spec) and cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)  # as `python -m` does: modules in the current directory are found
        try:
            module = _import_path(pathlib.Path(key)) if _is_path(spec) else importlib.import_module(spec)
        except PluginError:
            raise
        except ModuleNotFoundError as err:
            if err.name == spec or (err.name and spec.startswith(err.name + ".")):
                raise PluginError(f"cannot import plug-in {spec!r}: no module named {err.name!r} (give a module "
                                  f"importable from the current directory, or a path to a .py file)") from None
            raise PluginError(f"cannot import plug-in {spec!r}: {_one_line(err)}") from None
        except Exception as err:  # the user's module raised while importing or registering
            raise PluginError(f"cannot import plug-in {spec!r}: {_one_line(err)}") from None
        _LOADED[key] = module
        modules.append(module)
    _record()
    return modules


def _record() -> None:
    os.environ[ENV] = os.pathsep.join(_LOADED)


def load_entry_points() -> list[str]:
    """Load every entry point of the group ``saddlebench.plugins`` (once per process); their names.

    Skipped when the environment variable ``SADDLEBENCH_NO_PLUGINS`` is set (to anything but ``""``
    or ``0``).
    """
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED or os.environ.get(NO_ENTRY_POINTS_ENV, "") not in ("", "0"):
        return []
    _ENTRY_POINTS_LOADED = True
    names = []
    for ep in importlib.metadata.entry_points(group=GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, ModuleType):
                obj()
        except Exception as err:
            raise PluginError(f"plug-in entry point {ep.name!r} ({ep.value}, group {GROUP}) failed to load: "
                              f"{_one_line(err)}; set {NO_ENTRY_POINTS_ENV}=1 to skip entry points") from None
        names.append(ep.name)
    return names


def load_env() -> list[ModuleType]:
    """In a worker process: load the entry points and the plug-ins the parent recorded in ``SADDLEBENCH_IMPORT``."""
    load_entry_points()
    specs = [s for s in os.environ.get(ENV, "").split(os.pathsep) if s]
    return load(specs) if specs else []


def loaded() -> list[str]:
    """The plug-ins loaded in this process (module names, or absolute paths of files)."""
    return list(_LOADED)
