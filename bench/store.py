"""The results store: one Parquet file per cell, named by a content hash, written crash-safely.

The hash (``CellSpec.key``) covers everything in a cell's spec that determines its numbers:
problem name (with all its parameters), optimizer, hyperparameter points, seeds, steps,
log_every, dtype and the store's schema version. Running the same cell again finds the file and
reuses it. Every row carries its provenance (library versions, backend, device, x64 flag, git
commit, code fingerprint, UTC time, compile and run seconds), so a table can always be traced
back to what produced it.

Guarantees (tested in ``tests/bench/test_reliability.py``):

* Crash safety. A cell file is written to a temporary file in the same directory, flushed and
  fsync'ed, renamed over its final name (``os.replace``, atomic) and the directory fsync'ed:
  a process killed at any moment leaves either the whole file or none. ``failures.json`` is
  written the same way. Temporary files (``.tmp-*``) are never read and are removed by the next
  writer of the same cell, or by any run once they are an hour old.
* One writer per cell. ``compute_and_store`` holds an exclusive ``flock`` on
  ``<root>/.locks/<key>.lock`` while it checks, computes and writes a cell, so two sweeps on one
  store never compute the same cell twice: the second waits and then reuses the first's file.
  The kernel drops the lock when its holder dies, so a killed run leaves no stale lock.
  Updates of ``failures.json`` (read, change, write) hold ``<root>/.locks/failures.lock``.
* Integrity. Each file carries, in its Parquet key-value metadata (``saddlebench``), its cell key
  and spec, its code fingerprint and a SHA-256 checksum of its frame (``frame_digest``). A file
  that does not parse, is truncated, lacks that metadata, names another cell than its file name
  or fails its checksum is never used: ``check`` says why, ``run`` prints a warning naming the
  file and recomputes the cell, ``load_all`` skips it with a warning.
* No stale results. A cell is reused only if its file's code fingerprint equals the current one
  (``code_fingerprint``): hashes of the source of the problem's module, the optimizer's module
  and the bench modules that compute the numbers (with the in-package modules and data files they
  import or name, e.g. ``optimizers/linalg.py``, ``problems/base.py``, ``problems/best_known.json``),
  and the versions of jax, jaxlib, optax, flax, numpy and any other library those modules import.
  A change to any of them recomputes (and overwrites) the cells it touches and only those; the
  cell key, and so the file name, stays the same. Files written before fingerprints and checksums
  were stored cannot be verified and are treated as stale: recomputed by ``run``, skipped by
  ``load_all``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Bump when the meaning of stored numbers changes (columns, statuses, counting conventions).
# 2: run_s renamed run_s_amortized. 3: the spin glass's loss is the tangent pullback (its
# gradients change by float32 round-off, its Hessian is the Riemannian one). 4: end-point probe
# (status stalled_at_degenerate_saddle, column final_probe_drop); exact oracle counts, with the
# runner reusing the value and gradient an optimizer already computed (L-BFGS, ARC). 5: targets
# relative to a best-known value where a reference campaign recorded one (problems/best_known.json).
# 6: relative targets tau in schema.TAUS (hit_step@1e-1 ... columns, f_ref), the tuning/held-out
# split in the spec (tune_seeds) and in every row (tuning); the escape columns (hit_step@escape ...);
# the curvature flag (lambda_min, lambda_max, hessian_index at every logged step).
# 7: registered defaults from evidence (docs/DEFAULTS.md: the defaults track and every grid point 0 of
# the classics, noise methods and L-BFGS move); saddle-free Newton's damping line search (6 values a
# step); the device provenance column; sample_loss for the sub-sampled methods. (Newton-CG's solve on
# b / 2^e changes no bits where the old one neither overflowed nor underflowed.)
# 8: the spin glass's local field is one matmul by s (x) s from n^(p-1) >= 16384 on (the full suite's
# p = 3, n = 300 and p = 4, n = 60 cells: float32 round-off; smaller ones keep their bits).
# 9: the optimizers' branches are chosen per batch (``optimizers.batch_cond``: negative-curvature
# descent, stochastic cubic regularization, Sophia, SGD + Neon2, Natasha2): a branch no run takes is
# not computed, and XLA compiles the branches apart, so runs that take one may round differently
# (float32 round-off from the first step that takes it; chaotic problems amplify it).
# 10: the p = 3 spin glass's local field at n >= 128 is the blocked order under vmap of 64 or more
# points on the CPU (``problems.spin_glass.local_field``: the full suite's n = 300 cells, float32
# round-off; smaller sizes, p = 4 and other backends keep their bits).
SCHEMA_VERSION = 10

PROVENANCE_COLUMNS = [
    "jax_version", "jaxlib_version", "optax_version", "flax_version", "backend", "device_kind",
    "device_count", "device", "x64", "git_commit", "code_fingerprint", "utc_time", "cell_key", "cell_spec",
]
# Parquet key-value metadata of a cell file: its key, spec, code fingerprint and frame checksum.
META_KEY = b"saddlebench"
META_FORMAT = 1
# Temporary files older than this are leftovers of a killed writer (a live one renames in seconds).
TMP_MAX_AGE_S = 3600.0


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's numbers."""

    problem: str  # canonical problem name
    optimizer: str
    hparams: tuple[tuple[tuple[str, Any], ...], ...]  # full hyperparameter points, sorted
    seeds: tuple[int, ...]
    steps: int
    log_every: int
    dtype: str = "float32"
    tune_seeds: int | None = None  # the first seeds that are tuning seeds (None: half of them)
    curvature: bool = False  # Hessian extremes and index at every logged step

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["hparams"] = [dict(p) for p in self.hparams]
        d["schema"] = SCHEMA_VERSION
        return json.dumps(d, sort_keys=True, default=float)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> CellSpec:
        d = json.loads(text)
        d.pop("schema", None)
        d["hparams"] = tuple(tuple(sorted(p.items())) for p in d["hparams"])
        d["seeds"] = tuple(d["seeds"])
        return cls(**d)

    def hparam_points(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self.hparams]


def make_spec(problem: str, optimizer: str, points: list[dict[str, Any]], seeds: list[int], steps: int,
              log_every: int, dtype: str = "float32", tune_seeds: int | None = None,
              curvature: bool = False) -> CellSpec:
    return CellSpec(
        problem=problem,
        optimizer=optimizer,
        hparams=tuple(tuple(sorted(p.items())) for p in points),
        seeds=tuple(int(s) for s in seeds),
        steps=int(steps),
        log_every=int(log_every),
        dtype=dtype,
        tune_seeds=None if tune_seeds is None else int(tune_seeds),
        curvature=bool(curvature),
    )


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=pathlib.Path(__file__).resolve().parent,
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
        if commit:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5,
                                   cwd=pathlib.Path(__file__).resolve().parent).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return ""


@functools.cache
def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``), or ""."""
    import platform

    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(backend: str, device_kind: str, device_count: int) -> str:
    """What a row's times were measured on, for comparing seconds within a device only:
    ``gpu:NVIDIA H200``, ``cpu:AMD EPYC 7B13 x16`` (a CPU is named by its model and the cores this
    process may use, since JAX calls every CPU "cpu"); `` x<count>`` for several accelerators."""
    if backend == "cpu":
        model = _cpu_model() or device_kind
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return f"cpu:{model} x{cores}"
    return f"{backend}:{device_kind}" + (f" x{device_count}" if device_count > 1 else "")


def provenance() -> dict[str, Any]:
    """Versions, backend and device of this process, git commit, and the time now (UTC)."""
    import flax
    import jax
    import jaxlib
    import optax

    devices = jax.devices()
    return {
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "optax_version": optax.__version__,
        "flax_version": flax.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "device": device_label(jax.default_backend(), devices[0].device_kind, len(devices)),
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": _git_commit(),
        "utc_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }




# --- code fingerprint: what, besides the spec, determines a cell's numbers -------------------------

_PACKAGES = ("problems", "optimizers", "bench")
# Where the bench's numbers are computed (their in-package imports are followed): not the store,
# the executors, the reports or the CLI, whose changes leave stored numbers valid.
_BENCH_MODULES = ("bench.runner", "bench.program", "bench.landscape", "bench.schema", "bench.grid")
_ALWAYS_VERSIONED = ("jax", "jaxlib", "optax", "flax", "numpy")


@functools.cache
def _package_dir(package: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} not found")
    return pathlib.Path(list(spec.submodule_search_locations)[0]).resolve()


def _module_file(module: str) -> pathlib.Path | None:
    """The source file of an in-package module (``problems.base`` -> problems/base.py); None for
    packages' ``__init__`` (the registries, which import every module) and for attributes."""
    parts = module.split(".")
    if parts[0] not in _PACKAGES or len(parts) < 2:
        return None
    path = _package_dir(parts[0]).joinpath(*parts[1:-1], parts[-1] + ".py")
    return path if path.is_file() else None


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """Every module name ``path`` imports, and ``pkg.name`` for each ``from pkg import name``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                pkg = module.split(".")[: -node.level]
                base = ".".join(pkg + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


@functools.cache
def _closure(start: str) -> tuple[tuple[pathlib.Path, ...], tuple[str, ...]]:
    """In-package source files reachable from module ``start`` by imports, and the third-party
    top-level packages they import."""
    files: dict[str, pathlib.Path] = {}
    third: set[str] = set()
    stack = [start]
    while stack:
        mod = stack.pop()
        path = _module_file(mod)
        if path is None or mod in files:
            continue
        files[mod] = path
        for name in _imports(path, mod):
            top = name.split(".")[0]
            if top in _PACKAGES:
                stack.append(name)
            elif top and top != "__future__" and top not in sys.stdlib_module_names:
                third.add(top)
    return tuple(files[m] for m in sorted(files)), tuple(sorted(third))


@functools.cache
def _file_digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _relative(path: pathlib.Path) -> str:
    for pkg in _PACKAGES:
        root = _package_dir(pkg)
        if path.is_relative_to(root):
            return f"{pkg}/{path.relative_to(root).as_posix()}"
    return path.as_posix()


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _version(top: str) -> str | None:
    dists = _distributions().get(top, [top])
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def _data_files(path: pathlib.Path) -> tuple[pathlib.Path, ...]:
    """The package data files beside ``path`` (not Python) whose names its source contains."""
    source = path.read_text(errors="replace")
    return tuple(data for data in sorted(path.parent.iterdir())
                 if data.suffix not in (".py", ".pyc") and data.is_file() and data.name in source)


def _components(starts: tuple[str, ...]) -> dict[str, str]:
    """Source digests of the modules reachable from ``starts`` (and of the package data files
    their sources name, such as ``best_known.json``), and versions of the libraries they import."""
    out: dict[str, str] = {}
    libs = set(_ALWAYS_VERSIONED)
    for start in starts:
        files, third = _closure(start)
        libs.update(third)
        for path in files:
            out[_relative(path)] = _file_digest(path)
            for data in _data_files(path):
                out[_relative(data)] = _file_digest(data)
    for lib in sorted(libs):
        version = _version(lib)
        if version is not None:
            out[f"version:{lib}"] = version
    return out


@functools.cache
def _problem_module(problem: str) -> str | None:
    import problems

    try:
        return problems.family(problems.parse_name(problem)[0]).factory.__module__
    except (KeyError, ValueError):
        return None


@functools.cache
def _optimizer_module(optimizer: str) -> str | None:
    from optimizers import base

    entry = base._REGISTRY.get(optimizer)  # the factory, whose module holds the method
    return None if entry is None else entry[1].__module__


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """``components``: file -> source digest and ``version:<lib>`` -> version; ``digest`` hashes them."""

    components: dict[str, str]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.components, sort_keys=True).encode()).hexdigest()[:16]

    def changes(self, old: dict[str, str]) -> str:
        """What differs from ``old`` components, in words (for the stale-cell message)."""
        diffs = []
        for k in sorted(set(old) | set(self.components)):
            a, b = old.get(k), self.components.get(k)
            if a == b:
                continue
            if k.startswith("version:"):
                diffs.append(f"{k[8:]} {a or 'absent'} -> {b or 'absent'}")
            else:
                diffs.append(f"{k} {'changed' if a and b else ('added' if b else 'removed')}")
        return ", ".join(diffs) or "fingerprint differs"


@functools.cache
def _fingerprint(problem_module: str | None, optimizer_module: str | None) -> Fingerprint:
    starts = tuple(m for m in (problem_module, optimizer_module, "optimizers.base") if m) + _BENCH_MODULES
    comps = _components(starts)
    for module in (problem_module, optimizer_module):  # a plug-in (bench.plugins): its source, and what
        if module and module.split(".")[0] not in _PACKAGES:  # it imports from problems/optimizers/bench
            path = getattr(sys.modules.get(module), "__file__", None)
            comps[f"plugin:{module}"] = _file_digest(pathlib.Path(path).resolve()) if path else "no source"
            if path and path.endswith(".py"):
                inner = _imports(pathlib.Path(path), module)
                comps.update(_components(tuple(sorted(n for n in inner if n.split(".")[0] in _PACKAGES))))
    if problem_module is None:
        comps["problem"] = "unregistered"
    if optimizer_module is None:
        comps["optimizer"] = "unregistered"
    return Fingerprint(comps)


def code_fingerprint(problem: str, optimizer: str) -> Fingerprint:
    """The fingerprint of the code and libraries that compute a cell of ``problem`` x ``optimizer``.

    Sources are read once per process: a long sweep fingerprints the code it imported at the start.
    """
    return _fingerprint(_problem_module(problem), _optimizer_module(optimizer))


# --- checksums and crash-safe writes -----------------------------------------------------------------


def frame_digest(df: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names, dtypes and values (numeric columns bit for bit)."""
    h = hashlib.sha256()
    h.update(str(len(df)).encode())
    for name, col in df.items():
        h.update(json.dumps([str(name), str(col.dtype)]).encode())
        if isinstance(col.dtype, pd.CategoricalDtype):
            h.update(json.dumps([repr(c) for c in col.cat.categories]).encode())
            arr = col.cat.codes.to_numpy()
        elif isinstance(col.dtype, pd.StringDtype):
            _hash_strings(h, col.array)
            continue
        else:
            arr = col.to_numpy()
        if arr.dtype.kind in "biufcmM":
            h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # its bytes, not copied
        else:  # strings and other objects, missing values as null
            h.update(_json_list(arr))
    return h.hexdigest()


def _hash_strings(h, values) -> None:
    """Feed ``h`` the bytes ``_json_list`` gives for a text column's values (``json.dumps`` of the list,
    missing values null) without building them row by row: each distinct string is encoded once and
    each run of equal values is hashed as a repeated piece. A cell's text columns repeat one value on
    every row (its spec, versions), and a spec is kilobytes: the list of a cell was megabytes, joined
    and then hashed."""
    n = len(values)
    if n == 0:
        h.update(b"[]")
        return
    if not values.isna().any() and bool((values == values[0]).all()):  # one value on every row
        runs = [(json.dumps(values[0]).encode(), n)]
    else:
        codes, uniques = pd.factorize(values)  # missing values: code -1
        encoded = [json.dumps(u).encode() for u in uniques] + [b"null"]  # [-1]: null
        starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
        if len(starts) > n // 4:  # few repeats: join the values as they are
            h.update(b"[" + b", ".join(np.array(encoded, dtype=object)[codes].tolist()) + b"]")
            return
        runs = [(encoded[c], k) for c, k in zip(codes[starts].tolist(), np.diff(np.append(starts, n)).tolist())]
    h.update(b"[")
    for i, (item, count) in enumerate(runs):
        last = i == len(runs) - 1
        _hash_repeated(h, item + b", ", count - 1 if last else count)
        if last:
            h.update(item + b"]")


def _hash_repeated(h, piece: bytes, count: int) -> None:
    """``h.update(piece * count)`` in blocks of about a megabyte."""
    per = max(1, (1 << 20) // len(piece))
    if count >= per:
        block = piece * per
        for _ in range(count // per):
            h.update(block)
        count %= per
    if count:
        h.update(piece * count)


def _json_list(arr) -> bytes:
    """``json.dumps`` of the values as a list (missing values null, others by ``repr``), the same bytes,
    built from each distinct string's encoding when the values are all strings."""
    values = pd.Series(arr, dtype=object)
    if len(values) and pd.api.types.infer_dtype(values, skipna=True) == "string":
        codes, uniques = pd.factorize(values)  # missing values: code -1
        encoded = np.array([json.dumps(u) for u in uniques] + ["null"], dtype=object)
        return ("[" + ", ".join(encoded[codes].tolist()) + "]").encode()
    return json.dumps(values.where(values.notna(), None).tolist(), default=repr).encode()


def _fsync_dir(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: pathlib.Path, write, tag: str) -> None:
    """``write(file)`` into ``.tmp-<tag>-*`` beside ``path``, fsync, rename over ``path``, fsync the
    directory: after a crash at any moment ``path`` is the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{tag}-{uuid.uuid4().hex[:8]}{path.suffix}"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def warn(message: str) -> None:
    """One warning line on stderr (corrupt or stale files, a lock that cannot be taken)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# Text columns read dictionary-encoded and then decoded in one piece: a cell's spec (kilobytes) is on
# every row, and Parquet's value-by-value decoding of it took half of reading a cell.
_DICTIONARY_COLUMNS = ("cell_spec",)


def _read_table(path: pathlib.Path) -> pa.Table:
    """``pq.read_table(path)``, the same table, with ``_DICTIONARY_COLUMNS`` decoded from their dictionary."""
    table = pq.read_table(path, read_dictionary=list(_DICTIONARY_COLUMNS))  # absent names are ignored
    names = [n for n in _DICTIONARY_COLUMNS if n in table.schema.names]
    stored = pq.read_schema(path) if names else None  # the columns' types as written
    for name in names:
        field = stored.field(name)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            i = table.schema.get_field_index(name)
            chunks = [_decode(c, field.type) for c in table.column(i).chunks]
            table = table.set_column(i, field, pa.chunked_array(chunks, type=field.type))
    return table


def _decode(chunk: pa.DictionaryArray, type_: pa.DataType) -> pa.Array:
    """``chunk.cast(type_)``; a chunk of one value on every row as one repeated block (numpy memory,
    allocated once: the cast's buffer grew and faulted its pages in a few at a time)."""
    if not (pa.types.is_large_string(type_) and len(chunk.dictionary) == 1 and chunk.null_count == 0
            and chunk.dictionary.null_count == 0):
        return chunk.cast(type_)
    value = np.frombuffer(chunk.dictionary[0].as_buffer(), np.uint8)
    n = len(chunk)
    data = np.empty((n, len(value)), np.uint8)
    data[:] = value
    offsets = np.arange(n + 1, dtype=np.int64) * len(value)
    return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class CorruptCell(Exception):
    """A cell file that cannot be trusted; the message says why, in one line."""


@dataclasses.dataclass
class Check:
    """What a cell's file holds: ``state`` is ok, missing, corrupt or stale (with ``reason``)."""

    path: pathlib.Path
    state: str
    reason: str = ""
    frame: pd.DataFrame | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class Store:
    """A directory of cell files: ``<root>/cells/<optimizer>__<key>.parquet`` (see the module doc)."""

    def __init__(self, root: str | os.PathLike = "results"):
        self.root = pathlib.Path(root)
        self.cells = self.root / "cells"
        self.locks = self.root / ".locks"

    def path(self, spec: CellSpec) -> pathlib.Path:
        return self.cells / f"{spec.optimizer}__{spec.key}.parquet"

    def has(self, spec: CellSpec) -> bool:
        """A file exists under the cell's name (``check`` says whether it can be used)."""
        return self.path(spec).exists()

    # reading and checking

    @staticmethod
    def read(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
        """A cell file's frame and metadata, verified; raises ``CorruptCell`` saying why not."""
        path = pathlib.Path(path)
        try:
            table = _read_table(path)
            df = table.to_pandas()
        except Exception as err:  # truncated, garbled, not Parquet at all
            raise CorruptCell(f"unreadable Parquet ({type(err).__name__}: {str(err)[:120]})") from None
        raw = (table.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise CorruptCell("no checksum metadata (written before the store recorded one)")
        try:
            meta = json.loads(raw)
            key, checksum = meta["cell_key"], meta["checksum"]
        except (ValueError, KeyError, TypeError):
            raise CorruptCell("garbled checksum metadata") from None
        name_key = path.stem.rsplit("__", 1)[-1]
        if key != name_key:
            raise CorruptCell(f"holds cell {key}, not the {name_key} its name says")
        if frame_digest(df) != checksum:
            raise CorruptCell("checksum mismatch: the data changed after it was written")
        # the spec is stored as CellSpec.to_json wrote it (with its schema version): it hashes to the key
        if "cell_spec" in df.columns and len(df) and \
                hashlib.sha256(str(df["cell_spec"].iloc[0]).encode()).hexdigest()[:16] != key:
            raise CorruptCell("its rows' spec does not hash to its key")
        return df, meta

    def check(self, spec: CellSpec, fingerprint: Fingerprint | None = None) -> Check:
        """Whether the stored cell can be reused: present, intact, and computed by this code."""
        path = self.path(spec)
        if not path.exists():
            return Check(path, "missing")
        try:
            df, meta = self.read(path)
        except CorruptCell as err:
            legacy = str(err).startswith("no checksum metadata")
            return Check(path, "stale" if legacy else "corrupt", str(err))
        fp = code_fingerprint(spec.problem, spec.optimizer) if fingerprint is None else fingerprint
        if meta.get("fingerprint") != fp.digest:
            return Check(path, "stale", f"computed by other code ({fp.changes(meta.get('code') or {})})", df)
        return Check(path, "ok", "", df)

    def load(self, spec: CellSpec) -> pd.DataFrame | None:
        """The cell's frame if it is stored intact (whatever code computed it), else None."""
        path = self.path(spec)
        if not path.exists():
            return None
        try:
            return self.read(path)[0]
        except CorruptCell as err:
            warn(f"{path}: {err}; not used")
            return None

    # writing

    def save(self, spec: CellSpec, df: pd.DataFrame, fingerprint: Fingerprint | None = None) -> pathlib.Path:
        """Write the cell with provenance columns, its checksum and fingerprint; crash-safe."""
        fp = code_fingerprint(spec.problem, spec.optimizer) if fingerprint is None else fingerprint
        df = df.copy()
        for k, v in provenance().items():
            df[k] = v
        df["code_fingerprint"] = fp.digest
        df["cell_key"] = spec.key
        df["cell_spec"] = spec.to_json()
        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = {"format": META_FORMAT, "cell_key": spec.key, "fingerprint": fp.digest, "code": fp.components,
                "checksum": frame_digest(table.to_pandas()), "schema": SCHEMA_VERSION}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta)})
        path = self.path(spec)
        _atomic_write(path, lambda fh: pq.write_table(table, fh), spec.key)
        return path

    # claims: one writer per cell

    def _lock_path(self, name: str) -> pathlib.Path:
        self.locks.mkdir(parents=True, exist_ok=True)
        return self.locks / f"{name}.lock"

    @contextlib.contextmanager
    def _flock(self, name: str):
        fd = os.open(self._lock_path(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def claim(self, spec: CellSpec):
        """Hold the cell's lock (waiting for another holder); temporary files left by a killed
        writer of this cell are removed, since no live writer can hold them."""
        with self._flock(spec.key):
            for tmp in self.cells.glob(f".tmp-{spec.key}-*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            yield

    def claimed(self, spec: CellSpec) -> bool:
        """Whether another process holds the cell's lock now (it is computing the cell)."""
        fd = os.open(self._lock_path(spec.key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def clean_tmp(self, max_age_s: float = TMP_MAX_AGE_S) -> int:
        """Remove temporary files older than ``max_age_s`` (left by killed writers)."""
        removed, now = 0, time.time()
        for folder in (self.cells, self.root):
            if not folder.is_dir():
                continue
            for tmp in folder.glob(".tmp-*"):
                with contextlib.suppress(OSError):
                    if now - tmp.stat().st_mtime > max_age_s:
                        tmp.unlink()
                        removed += 1
        return removed

    # failures

    @property
    def failures_path(self) -> pathlib.Path:
        return self.root / "failures.json"

    def failures(self) -> dict[str, dict[str, Any]]:
        """Cells that raised, hung or crashed: cell key -> {problem, optimizer, error, utc_time}."""
        if not self.failures_path.exists():
            return {}
        try:
            data = json.loads(self.failures_path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except ValueError as err:
            warn(f"{self.failures_path} is corrupt ({err}); its failures are forgotten")
            return {}

    def _write_failures(self, failures: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(failures, indent=1, sort_keys=True).encode()
        _atomic_write(self.failures_path, lambda fh: fh.write(text), "failures")

    def record_failure(self, spec: CellSpec, error: str) -> None:
        """Remember a failed cell, so a re-run skips it unless asked to retry (locked, crash-safe)."""
        entry = {"problem": spec.problem, "optimizer": spec.optimizer, "error": error,
                 "utc_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        with self._flock("failures"):
            for tmp in self.root.glob(".tmp-failures-*"):  # left by a writer killed under this lock
                with contextlib.suppress(OSError):
                    tmp.unlink()
            failures = self.failures()
            failures[spec.key] = entry
            self._write_failures(failures)

    def forget_failure(self, spec: CellSpec) -> None:
        if spec.key not in self.failures():
            return
        with self._flock("failures"):
            failures = self.failures()
            if failures.pop(spec.key, None) is not None:
                self._write_failures(failures)

    # all cells

    def files(self) -> Iterator[pathlib.Path]:
        if self.cells.exists():
            yield from sorted(p for p in self.cells.glob("*.parquet") if not p.name.startswith("."))

    def load_all(self, keys: set[str] | None = None) -> pd.DataFrame:
        """Every stored cell (or those whose key is in ``keys``) as one frame.

        Files that fail their checks (``read``) are skipped with a warning naming each; cells
        computed by other code than this checkout's are kept, with one warning line.
        """
        frames, stale = [], []
        for p in self.files():
            if keys is not None and p.stem.rsplit("__", 1)[-1] not in keys:
                continue
            try:
                df, meta = self.read(p)
            except CorruptCell as err:
                warn(f"{p}: {err}; skipped (`python -m bench run` recomputes it)")
                continue
            if len(df) and code_fingerprint(str(df["problem"].iloc[0]), str(df["optimizer"].iloc[0])).digest \
                    != meta.get("fingerprint"):
                stale.append(p.name)
            frames.append(df)
        if stale:
            warn(f"{len(stale)} stored cells were computed by other code or library versions than this "
                 f"checkout's (e.g. {stale[0]}); `python -m bench run` recomputes them")
        if not frames:
            return pd.DataFrame()
        return pd.concat(_decategorize(frames), ignore_index=True)


def _decategorize(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """``frames`` with each categorical column whose categories differ between them (a cell's problem,
    family and optimizer: one category each) as its categories' dtype, which is what ``pd.concat``
    makes of it, converted here from the codes (pandas converts value by value, through objects)."""
    if not all(f.columns.is_unique for f in frames):
        return frames
    for name, dtype in frames[0].dtypes.items():
        if not isinstance(dtype, pd.CategoricalDtype):
            continue
        cols = [f[name] if name in f.columns else None for f in frames]
        if any(c is None or not isinstance(c.dtype, pd.CategoricalDtype) for c in cols):
            continue
        dtypes = [c.dtype for c in cols]
        target = dtypes[0].categories.dtype
        if not isinstance(target, pd.StringDtype) or all(d == dtypes[0] for d in dtypes) \
                or any(d.categories.dtype != target for d in dtypes):
            continue  # concatenated as categoricals, or to a common type worked out by pandas
        for f, c in zip(frames, cols):
            f[name] = c.cat.categories.array.take(c.cat.codes.to_numpy(), allow_fill=True)
    return frames
