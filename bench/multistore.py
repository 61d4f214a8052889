"""Stores from several machines in one report: ``python -m bench report --store A --store B``.

A laptop's CPU store and a GPU server's, or the shards of a cluster's sweep, are read together:

* **Each cell once.** A cell is named by its content hash (``CellSpec.key``: problem, optimizer,
  hyperparameter points, seeds, budget, dtype, schema), so a cell present in several stores is the
  same experiment: the report's success rates, costs and scores count it once, from the first
  store on the command line that holds an intact copy (a corrupt copy is skipped with a warning
  and the next store's is used).
* **The device on every row.** Every row gets a ``device`` column (``bench.store.device_label``:
  ``cpu:<model> x<cores>``, ``gpu:<kind>``; rows stored before the column existed get
  ``<backend>:<device_kind>``, with `` x<count>`` for several devices) and a ``store`` column (the
  directory it was read from); ``leaderboard.csv`` has a ``device`` column.
* **Times within a device only.** Oracle counts and gradient-equivalents do not depend on the
  machine; seconds do. So the overall seconds score of the main table is left out when the rows
  come from more than one device, and the *Devices* section gives, per device, the AlgoPerf score
  of the seconds to target computed over that device's own runs (every copy it stored, a cell in
  two stores of one device counted once), and a table with the seconds per run of each
  (problem, optimizer) side by side, one column per device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench import schema as S
from bench.store import Store

DEVICE = "device"
STORE = "store"


def device_column(df: pd.DataFrame) -> pd.Series:
    """Each row's device: the stored ``device`` column, else ``<backend>:<device_kind>[ x<count>]``."""
    n = len(df)
    if n == 0:
        return pd.Series([], dtype=object)
    legacy = pd.Series("?:?", index=df.index, dtype=object)
    if "backend" in df and "device_kind" in df:
        count = df["device_count"] if "device_count" in df else pd.Series(1, index=df.index)
        legacy = (df["backend"].astype(str) + ":" + df["device_kind"].astype(str)
                  + np.where(pd.to_numeric(count, errors="coerce").fillna(1).to_numpy() > 1,
                             " x" + count.astype(str), ""))
    if DEVICE not in df:
        return legacy.astype(object)
    stored = df[DEVICE].astype(object)
    return stored.where(stored.notna(), legacy).astype(object)


@dataclasses.dataclass
class Combined:
    """Several stores read as one.

    Attributes:
      frame: the logged rows of every distinct cell, once each, with ``device`` and ``store`` columns.
      failures: failed cells of every store (cell key -> record), less those some store holds.
      cells: one row per stored copy that counts for times (a cell once per device): problem,
        optimizer, steps, device, store, cell key, compile seconds, run seconds per run.
      device_frames: device -> the logged rows of its copies (for its seconds score).
      duplicates: how many copies were not counted (a cell already read from an earlier store).
    """

    frame: pd.DataFrame
    failures: dict
    cells: pd.DataFrame
    device_frames: dict[str, pd.DataFrame]
    duplicates: int = 0

    @property
    def devices(self) -> list[str]:
        return sorted(self.device_frames)


def combine(stores: Sequence[Store], keys: set[str] | None = None) -> Combined:
    """Read ``stores`` (``Store.load_all(keys)`` each) into one ``Combined`` (module doc)."""
    frames, per_device = [], {}
    seen: set[str] = set()
    seen_on: set[tuple[str, str]] = set()
    cell_rows = []
    failures: dict = {}
    duplicates = 0
    for store in stores:
        for k, v in store.failures().items():
            if keys is None or k in keys:
                failures.setdefault(k, v)
        df = store.load_all(keys)
        if df.empty:
            continue
        df[DEVICE] = device_column(df).to_numpy()
        df[STORE] = str(store.root)
        for key, idx in df.groupby("cell_key", sort=False, observed=True).indices.items():
            g = df.iloc[idx]
            device = str(g[DEVICE].iloc[0])
            if key not in seen:
                seen.add(key)
                frames.append(g)
            else:
                duplicates += 1
            if (key, device) not in seen_on:  # one copy per device counts for the times
                seen_on.add((key, device))
                per_device.setdefault(device, []).append(g)
                cell_rows.append({S.PROBLEM: str(g[S.PROBLEM].iloc[0]), S.OPTIMIZER: str(g[S.OPTIMIZER].iloc[0]),
                                  S.STEPS: int(g[S.STEPS].iloc[0]), DEVICE: device, STORE: str(store.root),
                                  "cell_key": key, S.COMPILE_S: float(g[S.COMPILE_S].iloc[0]),
                                  S.RUN_S_AMORTIZED: float(g[S.RUN_S_AMORTIZED].iloc[0])})
    stored = seen
    failures = {k: v for k, v in failures.items() if k not in stored}
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Combined(frame=frame, failures=failures, cells=pd.DataFrame(cell_rows),
                    device_frames={d: pd.concat(fs, ignore_index=True) for d, fs in per_device.items()},
                    duplicates=duplicates)


def seconds_scores(combined: Combined) -> pd.DataFrame:
    """Per device (columns), per optimizer (rows): the AlgoPerf score of the seconds to target over the
    problems that device solved, computed from that device's runs alone (leaderboard's selection:
    tuned on the tuning seeds, measured on the held-out ones). NaN: the optimizer has no runs there."""
    from bench.reports import leaderboard as lb
    from bench.reports import score

    cols = {}
    for device, df in combined.device_frames.items():
        runs = lb.with_costs(df)
        ev = lb.evaluated_runs(runs, lb.selection(runs))
        solved = set(lb.scored_problems(ev))
        ev = ev[ev[S.PROBLEM].isin(solved)]
        if ev.empty:
            cols[device] = pd.Series(dtype=np.float64)
            continue
        seconds = score.cost_to_target(ev, lb.SECONDS, success_col=lb.SUCCESS)
        cols[device] = score.algoperf_score(seconds)
    return pd.DataFrame(cols).sort_index()


def seconds_side_by_side(combined: Combined) -> pd.DataFrame:
    """(problem, optimizer, steps) rows x device columns: seconds per run (median over the copies)."""
    if combined.cells.empty:
        return pd.DataFrame()
    return combined.cells.pivot_table(index=[S.PROBLEM, S.OPTIMIZER, S.STEPS], columns=DEVICE,
                                      values=S.RUN_S_AMORTIZED, aggfunc="median")


def annotate(tab: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard table with the device(s) each row's cell was read from (``device`` column)."""
    if tab.empty or DEVICE not in frame:
        return tab
    dev = (frame.drop_duplicates("cell_key").groupby([S.PROBLEM, S.OPTIMIZER, S.STEPS], observed=True)[DEVICE]
           .agg(lambda d: ", ".join(sorted(set(map(str, d))))))
    keys = list(zip(tab["problem"], tab["optimizer"], tab["steps_budget"]))
    tab = tab.copy()
    tab[DEVICE] = [dev.get(k, "") for k in keys]
    return tab


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def markdown(combined: Combined, stores: Sequence[Store]) -> list[str]:
    """The *Devices* section: the devices and stores, seconds scores per device, seconds side by side."""
    cells = combined.cells
    lines = ["## Devices", "",
             f"Read from {len(stores)} stores ({', '.join(f'`{s.root}`' for s in stores)}): "
             f"{combined.frame['cell_key'].nunique() if not combined.frame.empty else 0} distinct cells; "
             f"{combined.duplicates} further copies of cells already read (the same content hash) are not counted "
             "again in the tables above. Success rates and costs (oracle calls, gradient-equivalents) do not "
             "depend on the machine; seconds do, so they are compared within a device only.", "",
             "| device | stores | cells |", "|---|---|---:|"]
    for device in combined.devices:
        mine = cells[cells[DEVICE] == device]
        lines.append(f"| {device} | {', '.join(sorted(set(mine[STORE])))} | {len(mine)} |")
    lines.append("")
    scores = seconds_scores(combined)
    if len(combined.devices) > 1:
        lines += ["The overall score in seconds above is left out: it would rank runs timed on different "
                  "machines against each other.", ""]
    if not scores.empty:
        lines += ["### Score in seconds, per device", "",
                  "The AlgoPerf score of the seconds to target, per device over the problems solved on it, from "
                  "that device's own runs (hyperparameters chosen on its tuning seeds).", "",
                  "| optimizer | " + " | ".join(scores.columns) + " |", "|---|" + "---:|" * len(scores.columns)]
        for opt, r in scores.iterrows():
            lines.append(f"| {opt} | " + " | ".join(_fmt(r[d]) for d in scores.columns) + " |")
        lines.append("")
    side = seconds_side_by_side(combined)
    if not side.empty:
        lines += ["### Seconds per run, side by side", "",
                  "Wall seconds of a cell's compiled program divided by its runs, per device (–: not run there).",
                  "", "| problem | optimizer | steps | " + " | ".join(side.columns) + " |",
                  "|---|---|---:|" + "---:|" * len(side.columns)]
        for (problem, opt, steps), r in side.iterrows():
            lines.append(f"| {problem} | {opt} | {steps} | " + " | ".join(_fmt(r[d]) for d in side.columns) + " |")
        lines.append("")
    return lines
