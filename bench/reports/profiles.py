"""Figures of the one-score view across problems (``bench.reports.score``): the Dolan-Moré
performance profile, each line labelled with its AlgoPerf score, and COCO's runtime ECDF."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from bench import schema as S  # noqa: E402
from bench.reports import save_figure, score  # noqa: E402

_STYLES = ["-", "--", "-.", ":"]


def _styles(names: list) -> dict:
    """(colour, line style) per name: the ten tab10 colours, then again dashed, dash-dotted, dotted."""
    colors = sns.color_palette("tab10", 10)
    return {n: (colors[i % 10], _STYLES[(i // 10) % len(_STYLES)]) for i, n in enumerate(names)}


def _plain(x: float, _pos=None) -> str:
    return f"{x:g}"


def _finish(fig, ax, path: str | pathlib.Path, title: str, legend_title: str) -> pathlib.Path:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False, title=legend_title,
              title_fontsize=9, alignment="left")
    ax.set_title(title, fontsize=11)
    return save_figure(fig, path)


def write_profile(costs: pd.DataFrame, path: str | pathlib.Path, cost_label: str, *, tau_max: float = 4.0,
                  shift: float = 0.0) -> pathlib.Path:
    """Plot rho_s(tau) per optimizer (``score.performance_profile``) to a PNG at ``path``; return the path.

    Args:
      costs: problems x optimizers, the cost to reach the target (NaN or +inf: failed).
      cost_label: the cost and its unit, e.g. "gradients to target (median over held-out runs)".
      tau_max: the AlgoPerf integration limit: marked on the axis, the scores in the legend use it.
      shift: added to the costs before the ratios (``score.ratios``).

    The tau axis is log2 from 1 to just past the largest finite ratio; legend entries are sorted
    by AlgoPerf score and end with the share of problems solved at all.
    """
    r = score.ratios(costs, shift=shift)
    v = r.to_numpy()
    finite = v[np.isfinite(v)]
    r_hi = max(float(finite.max()) if finite.size else 1.0, 2.0)
    x_hi = r_hi * 2 ** 0.15  # a little past the last jump so it shows
    prof = score.performance_profile(costs, np.union1d(np.union1d([1.0], finite), [x_hi]), shift=shift)
    scores = score.algoperf_score(costs, tau_max, shift=shift)
    order = sorted(costs.columns, key=lambda s: (-scores[s], str(s)))
    styles = _styles(order)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig, ax = plt.subplots(figsize=(9, 5.2))
        for s in order:
            color, ls = styles[s]
            label = f"{s}  [{scores[s]:.2f}; {prof[s].iloc[-1]:.0%}]"
            ax.step(prof.index, prof[s], where="post", color=color, ls=ls, lw=1.8, label=label, alpha=0.9)
        ax.set_xscale("log", base=2)
        ax.set_xlim(1.0, x_hi)
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.02, 1.02)
        ax.axvline(tau_max, color="0.3", ls=":", lw=1.2,
                   label=f"τ = {tau_max:g}: score = ∫ρ(τ)dτ over [1, {tau_max:g}] / {tau_max - 1:g}")
        ax.set_xlabel("τ: cost / cheapest optimizer's cost on the problem (log2 scale)")
        ax.set_ylabel(f"ρ(τ): fraction of the {len(costs.index)} problems with ratio ≤ τ")
        return _finish(fig, ax, path, f"Performance profile; cost: {cost_label}",
                       "optimizer  [AlgoPerf score; problems solved]")


def write_ecdf(ecdf_frame: pd.DataFrame, path: str | pathlib.Path, cost_label: str, *,
               optimizer_col: str = S.OPTIMIZER) -> pathlib.Path:
    """Plot the runtime ECDF (``score.runtime_ecdf``) to a PNG at ``path``; return the path.

    x: the cost on a log scale (costs <= 0 are drawn at half the smallest positive cost); y: the
    fraction of (problem, run) pairs that reached the target within that cost. Each line runs on
    to the largest cost of any optimizer, so its final height (also in the legend) is its share
    of pairs solved; ``cost_label`` names the cost and unit, e.g. "gradients / dimension".
    """
    d = ecdf_frame[np.isfinite(ecdf_frame[score.COST].to_numpy(dtype=np.float64))]
    pos = d[score.COST][d[score.COST] > 0]
    x_lo = float(pos.min()) / 2 if len(pos) else 0.5
    x_hi = max(float(d[score.COST].max()) * 1.5 if len(d) else 1.0, x_lo * 4)
    final = ecdf_frame.groupby(optimizer_col, sort=True)[score.FRACTION].max()
    n_pairs = ecdf_frame.groupby(optimizer_col, sort=True)[score.N_PAIRS].first()
    order = sorted(final.index, key=lambda s: (-final[s], str(s)))
    styles = _styles(order)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig, ax = plt.subplots(figsize=(9, 5.2))
        for s in order:
            g = d[d[optimizer_col] == s]
            x = np.maximum(g[score.COST].to_numpy(dtype=np.float64), x_lo)
            y = g[score.FRACTION].to_numpy(dtype=np.float64)
            xs = np.concatenate([[x_lo], x, [x_hi]])
            ys = np.concatenate([[0.0], y, [y[-1] if len(y) else 0.0]])
            color, ls = styles[s]
            ax.step(xs, ys, where="post", color=color, ls=ls, lw=1.8, alpha=0.9,
                    label=f"{s}  [{final[s]:.0%} of {int(n_pairs[s])}]")
        ax.set_xscale("log")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"{cost_label} (log scale)")
        ax.set_ylabel("fraction of (problem, run) pairs solved")
        return _finish(fig, ax, path, f"Runtime ECDF; cost: {cost_label}",
                       "optimizer  [solved of (problem, run) pairs]")


def write_ecdf_panels(frames: dict[str, pd.DataFrame], path: str | pathlib.Path, cost_label: str, title: str, *,
                      optimizer_col: str = S.OPTIMIZER) -> pathlib.Path:
    """Several runtime ECDFs (``score.runtime_ecdf`` frames, one per panel title) side by side, with
    one shared cost axis and one legend (each optimizer keeps its colour and line style)."""
    names = sorted({str(n) for f in frames.values() for n in f[optimizer_col].unique()})
    styles = _styles(names)
    costs_ = pd.concat([f[score.COST] for f in frames.values()]).to_numpy(dtype=np.float64)
    costs_ = costs_[np.isfinite(costs_)]
    pos = costs_[costs_ > 0]
    x_lo = float(pos.min()) / 2 if len(pos) else 0.5
    x_hi = max(float(costs_.max()) * 1.5 if len(costs_) else 1.0, x_lo * 4)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig, axes = plt.subplots(1, len(frames), figsize=(4.2 * len(frames) + 2.5, 4.6), sharey=True, squeeze=False)
        for ax, (panel, f) in zip(axes[0], frames.items()):
            for s in names:
                g = f[(f[optimizer_col] == s) & np.isfinite(f[score.COST].to_numpy(dtype=np.float64))]
                x = np.maximum(g[score.COST].to_numpy(dtype=np.float64), x_lo)
                y = g[score.FRACTION].to_numpy(dtype=np.float64)
                color, ls = styles[s]
                ax.step(np.concatenate([[x_lo], x, [x_hi]]), np.concatenate([[0.0], y, [y[-1] if len(y) else 0.0]]),
                        where="post", color=color, ls=ls, lw=1.6, alpha=0.9, label=s)
            ax.set_xscale("log")
            ax.set_xlim(x_lo, x_hi)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(panel, fontsize=11)
            ax.set_xlabel(f"{cost_label} (log)")
        axes[0][0].set_ylabel("fraction of (problem, run) pairs solved")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False,
                   title="optimizer", title_fontsize=9)
        fig.suptitle(title, fontsize=12)
        return save_figure(fig, path, tight=True)
