"""Escape-cost figures: median cost to leave a saddle against dimension (or curvature, depth), log-log.

One message per figure: how an optimizer's escape cost scales with the swept variable. One line per
optimizer through its per-value medians (gradient-equivalents, ``bench.escape``) with bootstrap 95%
intervals as error bars, the fitted power law c x^b dashed in the same colour, and the exponent b
with its 95% interval and the overall fraction of runs that escaped in the legend. A value where more
than half of an optimizer's runs never escaped has no finite median: it is drawn as an upward
triangle at the budget (in gradient-equivalents, ~ steps for first-order methods), labelled "median
> budget".
"""

from __future__ import annotations

import pathlib
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.reports import save_figure  # noqa: E402

DPI = 120


def plot_escape_scaling(summary: pd.DataFrame, exponents: pd.DataFrame, path, *, xlabel: str = "dimension d",
                        title: str = "Saddle-escape cost") -> pathlib.Path:
    """Draw ``bench.escape.summarize``'s rows of one sweep and save a PNG at ``path``.

    ``summary``: columns value, optimizer, median_cost, cost_lo, cost_hi, escaped_fraction, n, steps;
    ``exponents``: columns optimizer, exponent, exponent_lo, exponent_hi (one row per optimizer).
    """
    if summary.empty:
        raise ValueError("plot_escape_scaling: no rows")
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    opts = list(dict.fromkeys(summary["optimizer"]))
    colors = sns.color_palette("colorblind", len(opts))
    markers = "osD^vP*X"
    censored = False
    for k, (opt, color) in enumerate(zip(opts, colors)):
        s = summary[summary["optimizer"] == opt].sort_values("value")
        x = s["value"].to_numpy(np.float64)
        m = s["median_cost"].to_numpy(np.float64)
        lo = s["cost_lo"].to_numpy(np.float64)
        hi = s["cost_hi"].to_numpy(np.float64)
        fin = np.isfinite(m)
        frac = float(np.average(s["escaped_fraction"], weights=s["n"]))
        e = exponents[exponents["optimizer"] == opt]
        if len(e) and np.isfinite(e["exponent"].iloc[0]):
            e = e.iloc[0]
            hi_txt = "inf" if not np.isfinite(e["exponent_hi"]) else f"{e['exponent_hi']:.2f}"
            label = f"{opt}: slope {e['exponent']:.2f} [{e['exponent_lo']:.2f}, {hi_txt}], {frac:.0%} escaped"
        else:
            label = f"{opt}: no fit, {frac:.0%} escaped"
        if fin.any():
            hi_bar = np.where(np.isfinite(hi), hi, m)
            ax.errorbar(x[fin], m[fin], yerr=[m[fin] - lo[fin], hi_bar[fin] - m[fin]], color=color,
                        marker=markers[k % len(markers)], ms=6, lw=1.8, capsize=3, label=label)
        else:
            ax.plot([], [], color=color, marker=markers[k % len(markers)], label=label)
        if fin.sum() >= 2 and len(e):
            b = float(e["exponent"])
            lx, ly = np.log(x[fin]), np.log(m[fin])
            a = ly.mean() - b * lx.mean()
            xx = np.geomspace(x[fin].min(), x[fin].max(), 50)
            ax.plot(xx, np.exp(a) * xx**b, color=color, ls="--", lw=1.0, alpha=0.8)
        if (~fin).any():
            # at the budget, nudged sideways per optimizer so that coinciding markers stay visible
            budget = s["steps"].to_numpy(np.float64)[~fin]
            nudge = 1.0 + 0.025 * (k - (len(opts) - 1) / 2)
            ax.scatter(x[~fin] * nudge, budget, marker="^", s=90, facecolor=color, edgecolor="k", lw=0.8,
                       zorder=5)
            censored = True
    if censored:
        ax.scatter([], [], marker="^", s=90, facecolor="0.7", edgecolor="k", lw=0.8,
                   label="median > budget: most runs did not escape (drawn at the budget)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("median escape cost (gradient-equivalents)")
    ax.set_title("\n".join(textwrap.fill(line, 90) for line in title.split("\n")), fontsize=10)
    xs = np.unique(summary["value"].to_numpy(np.float64))
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{v:g}" for v in xs])
    ax.minorticks_off()
    ax.legend(fontsize=8.5, loc="best", frameon=True)
    return save_figure(fig, path, DPI, tight=True)
