"""The report's "Landscape" section: how the runs got where they ended, not only where.

Always (cheap, from the stored frames): plateau episodes per optimizer and problem
(``bench.plateaus``, held-out runs at the chosen hyperparameters), and the curvature figures of
cells run with ``--curvature`` (``curvature_plots``). Included when their commands have written
them into the results directory: the saddle-escape sweeps (``python -m bench escape``:
``escape/ESCAPE.md``) and the spin-glass census (``python -m bench census``: ``census/CENSUS_*.md``).
With ``pictures=True`` (``python -m bench report --landscape``; each picture re-runs a stored run,
one compile per (problem, optimizer)): the pictures of the way (``pictures``: paths on the 2-D
contours, the loss along the line from start to end, filter-normalised slices of the MLP) for each
problem's ``top`` best-ranked optimizers, and the Hessian's spectral density (stochastic Lanczos
quadrature, ``bench.spectrum``) at the start and end of each problem's best-ranked median run.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pandas as pd

import problems
from bench import plateaus
from bench import schema as S

TOP = 4  # optimizers per problem in the pictures


def _short(name: str) -> str:
    return name.split("(")[0]


def plateau_lines(df: pd.DataFrame, evaluated: pd.DataFrame) -> list[str]:
    """Median plateau steps (and the share of runs with a plateau) per optimizer and problem."""
    keys = [S.PROBLEM, S.OPTIMIZER, S.HP_INDEX, S.SEED]
    ev = evaluated[keys].astype({S.PROBLEM: str, S.OPTIMIZER: str}).drop_duplicates()
    # only the evaluated runs' rows (a sixth of a qmc4 cell's): the episode search is a loop over runs;
    # and only the columns plateau_runs reads, the rows picked before the merge (which keeps their order)
    df = df[[c for c in df.columns if c in plateaus.COLUMNS or c.startswith(S.HP_PREFIX)]]
    df = df[pd.MultiIndex.from_frame(df[keys].astype({S.PROBLEM: str, S.OPTIMIZER: str})).isin(
        pd.MultiIndex.from_frame(ev))]
    rows = df.astype({S.PROBLEM: str, S.OPTIMIZER: str}).merge(ev, on=keys, how="inner")
    pr = plateaus.plateau_runs(rows) if not rows.empty else pd.DataFrame()
    if pr.empty:
        return []
    cells = pr.groupby([S.PROBLEM, S.OPTIMIZER], sort=True).agg(
        steps=(plateaus.PLATEAU_STEPS, "median"), share=(plateaus.N_PLATEAUS, lambda x: float(np.mean(x > 0))))
    probs = sorted(cells.index.get_level_values(0).unique())
    short = {p: _short(p) for p in probs}
    if len(set(short.values())) < len(probs):
        short = {p: p for p in probs}
    order = cells.groupby(level=1)["steps"].mean().sort_values().index
    lines = ["### Plateaus", "",
             f"Per held-out run at the chosen hyperparameters: log intervals on which the loss falls at most "
             f"{plateaus.RTOL:g} times as fast (relative to the remaining gap) as the run's fastest while the "
             f"gradient norm is at most {plateaus.GTOL:g} of the run's largest (or {S.GRAD_TOL:g}), before the target "
             "(`bench/plateaus.py`; Saxe et al. 2014's plateaus of deep linear networks from small initialization "
             "are the showcase). Entry: median steps on plateaus [share of runs with one]; 0 [0%]: none.", "",
             "| optimizer | " + " | ".join(short[p] for p in probs) + " |", "|---|" + "---:|" * len(probs)]
    for opt in order:
        row = []
        for p in probs:
            if (p, opt) in cells.index:
                c = cells.loc[(p, opt)]
                row.append(f"{c['steps']:.0f} [{100 * c['share']:.0f}%]")
            else:
                row.append("–")
        lines.append(f"| {opt} | " + " | ".join(row) + " |")
    return [*lines, "", *plateaus.index_lines(pr)]


def _included(path: pathlib.Path, root: pathlib.Path) -> list[str]:
    """A Markdown file written by another command, its headings moved one level down and its
    relative image links made relative to ``root`` (where the leaderboard is)."""
    prefix = path.parent.relative_to(root).as_posix()
    out = []
    for ln in path.read_text().rstrip("\n").splitlines():
        if re.match(r"^#{1,5} ", ln):
            ln = "#" + ln
        if prefix not in ("", "."):
            ln = re.sub(r"\]\((?![a-z]+:|/)([^)]+)\)", lambda m: f"]({prefix}/{m.group(1)})", ln)
        out.append(ln)
    return out + [""]


def _figure_list(title: str, files: list[pathlib.Path], root: pathlib.Path) -> list[str]:
    if not files:
        return []
    return [f"{title}: " + ", ".join(f"`{f.relative_to(root)}`" for f in files) + ".", ""]


def negative_share(d) -> float:
    """The density's mass below -EIG_TOL max(1, |lambda_max|), averaged over its probes."""
    nodes, weights = np.asarray(d.nodes, np.float64), np.asarray(d.weights, np.float64)
    cut = -S.EIG_TOL * max(1.0, abs(float(d.lambda_max)))
    return float(np.mean(np.sum(np.where(nodes < cut, weights, 0.0), axis=-1)))


def spectra(df: pd.DataFrame, tab: pd.DataFrame, plot_dir: pathlib.Path) -> tuple[list[str], list[pathlib.Path]]:
    """Spectral densities at the start and end of each problem's best-ranked median run."""
    from bench.reports import landscape_plots, pictures

    best = tab.groupby(S.PROBLEM, sort=True).head(1)
    rows, files = [], []
    for run in pictures.median_runs(df, best):
        try:
            problem = problems.get(run.problem)
            traj = pictures.rerun_median(run, every=run.steps)
        except (KeyError, TypeError, ValueError) as err:
            print(f"spectral density of {run.problem}: skipped ({err})")
            continue
        import jax

        start = jax.tree_util.tree_map(lambda x: x[0], traj.params)
        end = jax.tree_util.tree_map(lambda x: x[-1], traj.params)
        name = "spectrum_" + "".join(c if c.isalnum() else "_" for c in run.problem)[:80] + ".png"
        path, ds = landscape_plots.spectral_density_start_end(
            problem.full_loss, start, end, plot_dir / name,
            title=f"{_short(run.problem)}: Hessian spectral density at the start and end of {run.optimizer}'s median "
                  "run")
        files.append(path)
        rows.append((run.problem, run.optimizer, ds["start"], ds["end"], path))
    if not rows:
        return [], files
    lines = ["### Hessian spectra at the start and end", "",
             "Stochastic Lanczos quadrature (Ghorbani, Krishnan and Xiao 2019; `bench/spectrum.py`) at the start and",
             "the end point of each problem's best-ranked optimizer's median held-out run (re-run with the",
             "benchmark's step). *negative*: the quadrature's share of the spectrum below -1e-3 max(1, |lambda_max|)",
             "(the classifier's threshold for negative curvature, `schema.EIG_TOL`), then in brackets below 0, which",
             "also counts the round-off of zero eigenvalues (flat directions of a minimum).",
             "", "| problem | optimizer | start: lambda_min, lambda_max, negative (below 0) | end: lambda_min, "
             "lambda_max, negative (below 0) | figure |", "|---|---|---|---|---|"]
    for prob, opt, d0, d1, path in rows:
        def fmt(d):
            return (f"{float(d.lambda_min):.3g}, {float(d.lambda_max):.3g}, {negative_share(d):.3f} "
                    f"({float(d.neg_fraction):.3f})")
        lines.append(f"| {_short(prob)} | {opt} | {fmt(d0)} | {fmt(d1)} | `plots/{path.name}` |")
    return lines + [""], files


def build(df: pd.DataFrame, tab: pd.DataFrame, ov: dict, root: str | pathlib.Path, *, pictures: bool = False,
          figures: bool = True, top: int = TOP) -> tuple[list[str], list[pathlib.Path]]:
    """The section's Markdown lines and the figures it wrote (module docstring); ``figures=False``
    writes none (the tables and included sections only)."""
    from bench.reports import curvature_plots

    root = pathlib.Path(root)
    plot_dir = root / "plots"
    lines = ["## Landscape", ""]
    files: list[pathlib.Path] = []
    ev = ov.get("evaluated")
    if ev is not None and not ev.empty:
        lines += plateau_lines(df, ev)
        curv = curvature_plots.write(df, ev, plot_dir) if figures else []
        files += curv
        lines += _figure_list("Curvature along the way (cells run with `--curvature`: lambda_min against the loss, "
                              "sharpness against 2/eta)", curv, root)
    if pictures and figures and not tab.empty:
        from bench.reports import pictures as pics

        chosen = tab.groupby(S.PROBLEM, sort=True).head(top)
        pfiles = pics.write_all(df, chosen, plot_dir)
        files += pfiles
        lines += ["### Pictures of the way", "",
                  f"For each problem's {top} best-ranked optimizers, their median held-out run re-run with the "
                  "benchmark's step: paths on the loss contours (2-D problems), the loss along the straight line "
                  "from start to end point (Goodfellow, Vinyals and Saxe 2015), and filter-normalised 2-D slices "
                  "around the MLP's end points (Li et al. 2018).", ""]
        lines += _figure_list("Figures", pfiles, root)
        slines, sfiles = spectra(df, tab, plot_dir)
        lines += slines
        files += sfiles
    else:
        lines += ["Pictures of the way (paths on the 2-D contours, the loss along the line from start to end, "
                  "MLP slices) and Hessian spectra at the start and end: `python -m bench report --landscape`.", ""]
    escape_md = root / "escape" / "ESCAPE.md"
    if escape_md.exists():
        lines += _included(escape_md, root)
    else:
        lines += ["Saddle-escape sweeps (escape cost against dimension, curvature ratio and depth, with fitted "
                  "exponents): `python -m bench escape`.", ""]
    census_mds = sorted((root / "census").glob("CENSUS_*.md"))
    for md in census_mds:
        lines += _included(md, root)
    if not census_mds:
        lines += ["The spin glass's critical points, index against energy with the theory curve, and where the "
                  "optimizers end among them: `python -m bench census`.", ""]
    return lines, files
