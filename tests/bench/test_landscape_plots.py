"""Landscape figures (bench.reports.landscape_plots) are written as non-empty PNGs of sane size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import problems
from bench import census
from bench.reports import landscape_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_bytes=20_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes  # a blank canvas of this size compresses to a few kB
    img = matplotlib.image.imread(path)
    h, w = img.shape[:2]
    assert 400 <= h <= 1200 and 600 <= w <= 1600, (h, w)
    assert np.std(img[..., :3]) > 0.05  # something is drawn


def test_spectral_density_figure(tmp_path):
    # saddle_nd(dim=20, index=5): start at the saddle (a quarter of the eigenvalues negative),
    # end at a minimum x_i = 1 (i < 5), where the Hessian is diag(2 x 5, 1 x 15): none negative
    prob = problems.get("saddle_nd", dim=20, index=5)
    end = jnp.concatenate([jnp.ones(5), jnp.zeros(15)])
    path, ds = landscape_plots.spectral_density_start_end(
        prob.full_loss, jnp.zeros(20), end, tmp_path / "density.png", key=jax.random.key(3), num_probes=4,
        num_steps=12, title="saddle_nd(dim=20, index=5): Hessian spectrum at the saddle and at a minimum")
    _check_png(path)
    assert float(ds["start"].neg_fraction) == pytest.approx(0.25, abs=1e-6)
    assert float(ds["end"].neg_fraction) == 0.0


def test_census_figure_with_end_points(tmp_path):
    # a synthetic census on the theory curve (the figure, not the search, is under test here)
    n, p = 30, 3
    u = np.linspace(-1.55, 0.3, 40)
    index = np.round((n - 1) * census.theory_index_fraction(u, p)).astype(int)
    df = pd.DataFrame({"energy": u, "index": index, "index_fraction": index / (n - 1)})
    ends = pd.DataFrame({"energy": [-1.56, -1.54, -1.50, -1.2], "index_fraction": [0, 0, 0, 1 / 29],
                         "optimizer": ["adam", "adam", "gd", "gd"]})
    path = landscape_plots.plot_census(df, p, n, tmp_path / "census.png", end_points=ends, kac_rice_samples=200)
    _check_png(path)
