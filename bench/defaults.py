"""Defaults from evidence: which point of each optimizer's search space does best across a suite.

An optimizer's registered defaults are what a user gets who tunes nothing, and what the leaderboard's
*defaults track* scores. They should not be a guess: in a suite run with a ``qmc<K>`` grid every cell
of an optimizer tries the same K + 1 points (point 0 the registered defaults, then K scrambled-Halton
points of its search space with one fixed seed, ``bench.grid``), so each point has a cost to target on
every problem of the suite. This module scores every point as if it were an optimizer of its own:

  * per problem, the median over the cell's held-out seeds (the same seeds the leaderboard reports) of
    the cost to target in gradient-equivalents, +inf when half or more fail (``score.cost_to_target``);
  * the AlgoPerf score of those costs (``score.algoperf_score``, tau in [1, 4]) against the tuned field
    (every optimizer at the point the leaderboard chose on the tuning seeds), over the problems where
    some tuned run reached the target, exactly as the leaderboard's defaults track is scored;

and chooses, per optimizer, the point that solves the most problems (its median held-out run reaches the
target), then the one with the highest score (the fastest among them), then the highest mean success
rate, then the lowest point index (so the current defaults win ties). Solved problems come first
because a default is what a user runs on a problem nobody tuned for: one that is fast on one problem
and fails on five is a worse default than one that solves five (the score alone, which counts a
problem only when the point is within 4x of the best, can prefer the former). Held-out seeds only: the choice is made on
seeds the tuned field did not choose its points on, and it is one choice per optimizer across all
problems, not a per-problem tuning.

Command line: ``python -m bench defaults [--results DIR] [--suite quick] [--out FILE.md] [--json FILE]``
prints the per-point table and writes it (Markdown) and the chosen points (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench import schema as S

SEP = "#"  # candidate label: "<optimizer>#<hp_index>"


def _values(row: pd.Series, names: Sequence[str]) -> tuple:
    """The point's searched hyperparameters as (name, value) pairs (the stored hp columns)."""
    out = []
    for n in names:
        v = row.get(S.HP_PREFIX + n, math.nan)
        if isinstance(v, (float, np.floating)) and math.isnan(v):
            continue
        out.append((n, float(v)))
    return tuple(out)


def candidate_runs(runs: pd.DataFrame, chosen: dict) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The held-out runs of every hyperparameter point, relabelled ``<optimizer>#<hp_index>``.

    ``runs``/``chosen``: the leaderboard's per-run frame (``leaderboard.with_costs``) and selection. Only
    points whose hyperparameter values are the same in every cell of the optimizer are candidates (a
    suite may override a hyperparameter on one problem). Returns the relabelled runs and, per label,
    the point's values of the optimizer's searched hyperparameters (``optimizers.spec(name).search_space``).
    """
    import optimizers
    keep = np.zeros(len(runs), bool)
    values: dict[tuple[str, int], list] = {}
    cells: dict[str, int] = {}
    for (problem, optimizer, steps), idx in runs.groupby([S.PROBLEM, S.OPTIMIZER, S.STEPS], sort=True).indices.items():
        g = runs.iloc[idx]
        if g[S.HP_INDEX].nunique() < 2:
            continue
        cells[optimizer] = cells.get(optimizer, 0) + 1
        held = chosen[(problem, optimizer, steps)][1]
        keep[idx] = g[S.SEED].isin(held).to_numpy()
        names = sorted(optimizers.spec(optimizer).search_space)
        for k, p in g.groupby(S.HP_INDEX):
            values.setdefault((optimizer, int(k)), []).append(_values(p.iloc[0], names))
    points = {}
    for (optimizer, k), vs in values.items():
        if len(vs) == cells[optimizer] and len(set(vs)) == 1:
            points[f"{optimizer}{SEP}{k}"] = dict(vs[0])
    cand = runs[keep].copy()
    label = cand[S.OPTIMIZER].astype(str) + SEP + cand[S.HP_INDEX].astype(int).astype(str)
    cand[S.OPTIMIZER] = label
    return cand[label.isin(points)].reset_index(drop=True), points


def point_scores(runs: pd.DataFrame, chosen: dict | None = None) -> pd.DataFrame:
    """One row per (optimizer, hyperparameter point): its score against the tuned field (module docstring).

    Columns: optimizer, hp_index, score, solved (problems whose median held-out run reached the target),
    mean_success, chosen (the best point of its optimizer), defaults (point 0, the registered defaults
    when the suite's grid rule puts them there), and one column per hyperparameter.
    """
    from bench.reports import leaderboard as lb
    from bench.reports import score

    chosen = lb.selection(runs) if chosen is None else chosen
    ev = lb.evaluated_runs(runs, chosen)
    keep = lb.scored_problems(ev)
    ev = ev[ev[S.PROBLEM].isin(keep)]
    cand, points = candidate_runs(runs, chosen)
    cand = cand[cand[S.PROBLEM].isin(keep)]
    if cand.empty:
        return pd.DataFrame()
    tuned = score.cost_to_target(ev, lb.COST, success_col=lb.SUCCESS)
    cc = score.cost_to_target(cand, lb.COST, success_col=lb.SUCCESS).reindex(index=tuned.index)
    both = pd.concat([tuned, cc], axis=1)
    scores = score.algoperf_score(both, shift=lb.COST_SHIFT)
    success = cand.groupby(S.OPTIMIZER)[lb.SUCCESS].mean()
    rows = []
    for label, vals in points.items():
        opt, k = label.rsplit(SEP, 1)
        rows.append({"optimizer": opt, S.HP_INDEX: int(k), "score": float(scores[label]),
                     "solved": int(np.isfinite(cc[label].to_numpy()).sum()),
                     "mean_success": float(success.get(label, 0.0)),
                     **{f"{S.HP_PREFIX}{n}": v for n, v in vals.items()}})
    out = pd.DataFrame(rows)
    out["_key"] = list(zip(-out["solved"], -out["score"], -out["mean_success"], out[S.HP_INDEX]))
    best = out.sort_values("_key").groupby("optimizer").head(1).index
    out["chosen"] = out.index.isin(best)
    out["defaults"] = out[S.HP_INDEX] == 0
    return out.drop(columns="_key").sort_values(["optimizer", S.HP_INDEX]).reset_index(drop=True)


def chosen_points(scores: pd.DataFrame) -> dict[str, dict[str, float]]:
    """optimizer -> the chosen point's hyperparameters (NaN columns, other optimizers', dropped)."""
    out = {}
    for _, r in scores[scores["chosen"]].iterrows():
        out[r["optimizer"]] = {c[len(S.HP_PREFIX):]: float(r[c]) for c in S.hp_columns(scores.columns)
                               if not (isinstance(r[c], float) and math.isnan(r[c]))}
    return out


def markdown(scores: pd.DataFrame, command: str) -> list[str]:
    """The evidence: per optimizer, every point's score, the chosen one in bold."""
    lines = ["# Defaults from evidence", "",
             f"Written by `{command}` (`bench/defaults.py`). Every point of each optimizer's quick-suite grid "
             "(point 0: the registered defaults at the time of the run; then scrambled-Halton points of its search "
             "space, the same on every problem) scored like an optimizer of its own: AlgoPerf score of the median "
             "held-out cost to target (gradient-equivalents) against the tuned field, over the problems some tuned "
             "run solved. The chosen point (**bold**): most problems solved, then highest score, then mean success, "
             "then lowest index.", ""]
    for opt, g in scores.groupby("optimizer", sort=True):
        hp = [c for c in S.hp_columns(g.columns) if g[c].notna().all()]
        lines += [f"## {opt}", "", "| point | " + " | ".join(c[len(S.HP_PREFIX):] for c in hp)
                  + " | score | solved | mean success |", "|---|" + "---:|" * (len(hp) + 3)]
        for _, r in g.iterrows():
            name = f"{r[S.HP_INDEX]}" + (" (defaults then)" if r["defaults"] else "")
            cells = [name, *(f"{r[c]:.4g}" for c in hp), f"{r['score']:.3f}", f"{r['solved']}",
                     f"{r['mean_success']:.0%}"]
            if r["chosen"]:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The arguments of ``python -m bench defaults`` (added to ``parser`` when given)."""
    p = parser or argparse.ArgumentParser(prog="python -m bench defaults", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="results directory of a suite run with a qmc grid")
    p.add_argument("--suite", default="quick", help="the suite whose cells are read (default quick)")
    p.add_argument("--out", default=None, help="write the Markdown evidence here (e.g. docs/DEFAULTS.md)")
    p.add_argument("--json", default=None, help="write the chosen points here (optimizer -> hyperparameters)")
    return p


def run_from_args(args: argparse.Namespace) -> pd.DataFrame:
    """Score every grid point of the stored suite, print the evidence and write the files asked for."""
    from bench import suites
    from bench.reports import leaderboard as lb
    from bench.store import Store

    keys = {c.spec().key for c in suites.get(args.suite).cells()}
    df = Store(args.results).load_all(keys)
    if df.empty:
        raise ValueError(f"no stored cells of suite {args.suite!r} in {args.results}; run `python -m bench run "
                         f"--suite {args.suite}` first")
    scores = point_scores(lb.with_costs(df))
    command = f"python -m bench defaults --results {args.results} --suite {args.suite}"
    command += (f" --out {args.out}" if args.out else "") + (f" --json {args.json}" if args.json else "")
    text = "\n".join(markdown(scores, command)) + "\n"
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(chosen_points(scores), indent=1, sort_keys=True) + "\n")
    return scores


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    """``python -m bench defaults [--results DIR] [--suite NAME] [--out FILE.md] [--json FILE]``."""
    return run_from_args(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
