"""The results store: one Parquet file per cell, named by a content hash, written atomically.

The hash covers everything that determines a cell's numbers: problem name (with all its
parameters), optimizer, hyperparameter points, seeds, steps, log_every, dtype and the store's
schema version. Running the same cell again finds the file and reuses it. Every row carries its
provenance (library versions, backend, device, x64 flag, git commit, UTC time, compile and run
seconds), so a table can always be traced back to what produced it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import os
import pathlib
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pandas as pd

# Bump when the meaning of stored numbers changes (columns, statuses, counting conventions).
# 2: run_s renamed run_s_amortized. 3: the spin glass's loss is the tangent pullback (its
# gradients change by float32 round-off, its Hessian is the Riemannian one). 4: end-point probe
# (status stalled_at_degenerate_saddle, column final_probe_drop); exact oracle counts, with the
# runner reusing the value and gradient an optimizer already computed (L-BFGS, ARC). 5: targets
# relative to a best-known value where a reference campaign recorded one (problems/best_known.json).
SCHEMA_VERSION = 5

PROVENANCE_COLUMNS = [
    "jax_version", "jaxlib_version", "optax_version", "flax_version", "backend", "device_kind",
    "device_count", "x64", "git_commit", "utc_time", "cell_key", "cell_spec",
]


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
              log_every: int, dtype: str = "float32") -> CellSpec:
    return CellSpec(
        problem=problem,
        optimizer=optimizer,
        hparams=tuple(tuple(sorted(p.items())) for p in points),
        seeds=tuple(int(s) for s in seeds),
        steps=int(steps),
        log_every=int(log_every),
        dtype=dtype,
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
        "x64": bool(jax.config.jax_enable_x64),
        "git_commit": _git_commit(),
        "utc_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


class Store:
    """A directory of cell files: ``<root>/cells/<optimizer>__<key>.parquet``."""

    def __init__(self, root: str | os.PathLike = "results"):
        self.root = pathlib.Path(root)
        self.cells = self.root / "cells"

    def path(self, spec: CellSpec) -> pathlib.Path:
        return self.cells / f"{spec.optimizer}__{spec.key}.parquet"

    def has(self, spec: CellSpec) -> bool:
        return self.path(spec).exists()

    def load(self, spec: CellSpec) -> pd.DataFrame | None:
        path = self.path(spec)
        return pd.read_parquet(path) if path.exists() else None

    def save(self, spec: CellSpec, df: pd.DataFrame) -> pathlib.Path:
        """Write the cell with provenance columns; atomic (temporary file, then rename)."""
        df = df.copy()
        for k, v in provenance().items():
            df[k] = v
        df["cell_key"] = spec.key
        df["cell_spec"] = spec.to_json()
        self.cells.mkdir(parents=True, exist_ok=True)
        path = self.path(spec)
        fd, tmp = tempfile.mkstemp(dir=self.cells, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            df.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @property
    def failures_path(self) -> pathlib.Path:
        return self.root / "failures.json"

    def failures(self) -> dict[str, dict[str, Any]]:
        """Cells that raised, hung or crashed: cell key -> {problem, optimizer, error, utc_time}."""
        if not self.failures_path.exists():
            return {}
        return json.loads(self.failures_path.read_text())

    def record_failure(self, spec: CellSpec, error: str) -> None:
        """Remember a failed cell (atomically), so a re-run skips it unless asked to retry."""
        failures = self.failures()
        failures[spec.key] = {"problem": spec.problem, "optimizer": spec.optimizer, "error": error,
                              "utc_time": provenance()["utc_time"]}
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(failures, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.failures_path)

    def forget_failure(self, spec: CellSpec) -> None:
        failures = self.failures()
        if failures.pop(spec.key, None) is not None:
            self.failures_path.write_text(json.dumps(failures, indent=1, sort_keys=True))

    def files(self) -> Iterator[pathlib.Path]:
        if self.cells.exists():
            yield from sorted(p for p in self.cells.glob("*.parquet") if not p.name.startswith("."))

    def load_all(self, keys: set[str] | None = None) -> pd.DataFrame:
        """Every stored cell (or those whose key is in ``keys``) as one frame."""
        frames = []
        for p in self.files():
            if keys is not None and p.stem.rsplit("__", 1)[-1] not in keys:
                continue
            frames.append(pd.read_parquet(p))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)
