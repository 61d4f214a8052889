"""Landscape figures: the Hessian spectral density at the start and end of a run, and the spin-glass census.

Two figures, one message each:

* ``plot_spectral_density``: SLQ densities (``bench.spectrum``) of the Hessian at a start and at an
  end point on one axis (log density, so outliers and the small negative mass stay visible), with
  the negative half-line shaded and each curve's fraction of negative eigenvalues (with its
  Chebyshev-Markov-Stieltjes bracket) in the legend. Message: how much negative curvature is left.
* ``plot_census``: energy per spin against index fraction k/(N-1) of the critical points of one
  spin-glass instance (``bench.census``), the semicircle law F(u/E_inf) and its finite-N Kac-Rice
  version, the threshold -E_inf and ground state -E_0, and optional optimizer end points on the
  same axes. Message: saddles above the threshold, minima below it, and where optimizers stop.

``spectral_density_start_end`` and ``census_figure`` compute and draw in one call.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench import census as census_mod  # noqa: E402
from bench import spectrum  # noqa: E402
from bench.reports import save_figure  # noqa: E402
from problems.spin_glass import ground_state_energy, threshold_energy  # noqa: E402

DENSITY_FLOOR = 1e-5  # lower end of the log density axis (relative to the largest peak)
DPI = 120


def _save(fig, path) -> pathlib.Path:
    return save_figure(fig, path, DPI, tight=True)


def plot_spectral_density(
    densities: Mapping[str, spectrum.SpectralDensity],
    path,
    *,
    title: str = "Hessian spectral density (stochastic Lanczos quadrature)",
    log: bool = True,
) -> pathlib.Path:
    """Draw several SLQ densities (label -> ``SpectralDensity``) on one axis and save a PNG at ``path``.

    The legend gives, per curve, the fraction of negative eigenvalues (Gauss-weight estimate and,
    when the quadrature is not exact, its bracket) and the extreme eigenvalues.
    """
    if not densities:
        raise ValueError("plot_spectral_density: no densities given")
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    colors = sns.color_palette("colorblind", len(densities))
    peak = max(float(np.max(np.asarray(d.density))) for d in densities.values())
    for (label, d), color in zip(densities.items(), colors):
        x = np.asarray(d.grid, np.float64)
        y = np.asarray(d.density, np.float64)
        q, lo, hi = float(d.neg_fraction), float(d.neg_fraction_lo), float(d.neg_fraction_hi)
        frac = f"{q:.3f}" if hi - lo < 5e-4 else f"{q:.3f} (quadrature bracket [{lo:.3f}, {hi:.3f}])"
        text = (f"{label}: negative fraction {frac}, "
                f"$\\lambda$ in [{float(d.lambda_min):.3g}, {float(d.lambda_max):.3g}]")
        # on the log axis, values under the floor are left out (gaps) rather than drawn along it
        yy = np.where(y >= DENSITY_FLOOR * peak, y, np.nan) if log else y
        ax.plot(x, yy, color=color, lw=1.8, label=text)
        neg = (x < 0) & np.isfinite(yy)
        if np.any(neg):
            ax.fill_between(x, DENSITY_FLOOR * peak if log else 0.0, np.where(neg, yy, np.nan), color=color,
                            alpha=0.25, lw=0)
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(DENSITY_FLOOR * peak, 2.0 * peak)
    ax.set_xlabel("Hessian eigenvalue $\\lambda$ (loss units per unit parameter$^2$)")
    ax.set_ylabel("spectral density $\\phi_\\sigma(\\lambda)$" + (" (log scale)" if log else ""))
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8.5, frameon=False)
    return _save(fig, path)


def spectral_density_start_end(
    f,
    start,
    end,
    path,
    *,
    key: jax.Array | None = None,
    title: str | None = None,
    **density_kwargs,
) -> tuple[pathlib.Path, dict[str, spectrum.SpectralDensity]]:
    """SLQ densities of the Hessian of ``f`` at ``start`` and ``end`` (same probes), drawn by
    ``plot_spectral_density``; returns the path and the two densities."""
    key = jax.random.key(0) if key is None else key
    ds = {
        "start": spectrum.density(f, start, key, **density_kwargs),
        "end": spectrum.density(f, end, key, **density_kwargs),
    }
    out = plot_spectral_density(ds, path, title=title or "Hessian spectral density at the start and end point")
    return out, ds


def plot_census(
    census: pd.DataFrame,
    p: int,
    n: int,
    path,
    *,
    end_points: pd.DataFrame | None = None,
    title: str | None = None,
    kac_rice_samples: int = 2000,
) -> pathlib.Path:
    """Index fraction against energy per spin: the census, the theory curves, optional end points.

    ``census``: ``bench.census.run``'s frame. ``end_points``: a frame with ``energy`` and
    ``index_fraction`` (``bench.census.place``) and optionally ``optimizer`` (one marker per
    optimizer).
    """
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(8.0, 5.2))
    e_inf = threshold_energy(p)
    e = census["energy"].to_numpy()
    lo = min(float(e.min()) if len(e) else -e_inf, -ground_state_energy(p) if p >= 3 else -e_inf) - 0.05
    hi = max(float(e.max()) if len(e) else 0.0, 0.0) + 0.05
    if end_points is not None and len(end_points):
        lo = min(lo, float(end_points["energy"].min()) - 0.05)
        hi = max(hi, float(end_points["energy"].max()) + 0.05)
    u = np.linspace(lo, hi, 400)
    ax.scatter(e, census["index_fraction"], s=16, color="0.45", alpha=0.6, lw=0,
               label=f"critical points found ({len(census)} distinct)")
    ax.plot(u, census_mod.theory_index_fraction(u, p), color="C0", lw=2.0,
            label="theory $F(u/E_\\infty)$, $N\\to\\infty$ (semicircle)")
    ax.plot(u, census_mod.kac_rice_index_fraction(u, p, n, samples=kac_rice_samples), color="C0", lw=1.4,
            ls="--", label=f"Kac-Rice mean at N = {n}")
    ax.axvline(-e_inf, color="C3", lw=1.0, ls=":", label=f"threshold $-E_\\infty$ = {-e_inf:.3f}")
    if p >= 3:
        e0 = ground_state_energy(p)
        ax.axvline(-e0, color="C2", lw=1.0, ls=":", label=f"ground state $-E_0$ = {-e0:.3f}")
    if end_points is not None and len(end_points):
        if "optimizer" in end_points:
            groups = end_points.groupby("optimizer", sort=True)
        else:
            groups = [("end points", end_points)]
        markers = ["X", "D", "^", "s", "P", "v", "*", "<", ">", "o"]
        colors = sns.color_palette("colorblind", 10)
        for i, (name, g) in enumerate(groups):
            ax.scatter(g["energy"], g["index_fraction"], s=60, marker=markers[i % len(markers)],
                       color=colors[(i + 1) % 10], edgecolor="k", lw=0.6, zorder=3, label=f"{name} end points")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.02, max(0.6, float(census["index_fraction"].max()) + 0.05 if len(census) else 0.6))
    ax.set_xlabel("energy per spin $u = H/N$")
    ax.set_ylabel("index fraction $k/(N-1)$ (negative Hessian eigenvalues)")
    ax.set_title(title or f"Critical points of spin_glass(p={p}, N={n}):\nthe index grows with the energy, "
                          "minima only at the bottom", fontsize=10.5)
    ax.legend(loc="upper left", fontsize=8.5, frameon=True)
    return _save(fig, path)


def census_figure(
    path,
    p: int = 3,
    n: int = 30,
    instance: int = 0,
    starts: int = 256,
    key: int = 0,
    end_points: pd.DataFrame | None = None,
    **search,
) -> tuple[pathlib.Path, pd.DataFrame]:
    """Run ``bench.census.run`` and draw it with ``plot_census``; returns the path and the census."""
    df = census_mod.run(p, n, instance, starts, key, **search)
    return plot_census(df, p, n, path, end_points=end_points), df
