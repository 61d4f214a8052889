"""Spin-glass critical-point census (bench.census) against numpy and the semicircle theory.

The census of spin_glass(p=3, N=30, instance=0) from 192 starts is computed once (module fixture,
~8 s). Every point is re-checked in float64 numpy from the coupling tensor itself (no autodiff, no
chart): F(w) = N^{p/2-1} S(w,..,w), grad F = p N^{p/2-1} S(w,..,w,.), grad^2 F = p(p-1) N^{p/2-1}
S(w,..,w,.,.), the Riemannian gradient P grad F and Hessian B grad^2 F B^T - p F I in an
orthonormal tangent basis B (rows orthogonal to w).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import problems
from bench import census
from problems.spin_glass import couplings, symmetrize, threshold_energy

P, N, INSTANCE = 3, 30, 0


@pytest.fixture(scope="module")
def found():
    return census.run(P, N, INSTANCE, starts=192, key=0, max_descent_steps=200, newton_iters=25)


def _numpy_critical_data(w):
    """(energy per spin, |Riemannian gradient|, tangent Hessian eigenvalues) at unit w, numpy float64."""
    # the problem's float32 tensor, bit for bit (symmetrized, then scaled in float32), in float64
    s = symmetrize(couplings(P, N, INSTANCE))
    s = (s * np.float32(N ** (-(P - 1) / 2))).astype(np.float64)
    c = N ** (P / 2 - 1)
    h2 = P * (P - 1) * c * (s @ w)  # S(w, ., .) for p = 3
    g = P * c * (s @ w @ w)
    energy = c * (s @ w @ w @ w)
    rgrad = g - (w @ g) * w
    basis = np.linalg.svd(w[None, :])[2][1:]  # (N-1, N) orthonormal rows, orthogonal to w
    hess = basis @ h2 @ basis.T - P * energy * np.eye(N - 1)
    return energy, np.linalg.norm(rgrad), np.linalg.eigvalsh(hess)


def test_semicircle_cdf_closed_form_against_quadrature():
    # F(t) = int_{-1}^t (2/pi) sqrt(1 - x^2) dx; F(-1) = 0, F(0) = 1/2, F(1) = 1, clipped outside
    for t in (-0.9, -0.5, -0.1, 0.3, 0.8):
        ref = scipy.integrate.quad(lambda x: 2 / math.pi * math.sqrt(1 - x * x), -1, t)[0]
        assert census.semicircle_cdf(t) == pytest.approx(ref, abs=1e-10)
    np.testing.assert_allclose(census.semicircle_cdf([-3.0, -1.0, 0.0, 1.0, 2.0]), [0, 0, 0.5, 1, 1], atol=1e-15)
    # u = -E_inf is the band edge: no negative eigenvalues; u = 0: half of them
    assert census.theory_index_fraction(-threshold_energy(P), P) == pytest.approx(0.0, abs=1e-12)
    assert census.theory_index_fraction(0.0, P) == pytest.approx(0.5, abs=1e-12)


def test_theory_radius_against_a_large_goe_sample():
    # sqrt(p(p-1)/n) G - p u I, G a GOE of size n-1 = 400: the eigenvalue counting function
    # of a GOE has variance ~ (2/pi^2) log n ~ 1.2 (rigidity), i.e. a fraction error ~ 0.003,
    # plus O(1/n) finite-size corrections; 0.01 covers both and would catch a radius off by a
    # few percent (dF/dt ~ 0.6 at t = -0.5).
    rng = np.random.default_rng(0)
    n = 401
    g = rng.standard_normal((n - 1, n - 1))
    mu = np.linalg.eigvalsh((g + g.T) / math.sqrt(2)) * math.sqrt(P * (P - 1) / n)
    for u in (-1.5, -1.0, -0.5, 0.0, 0.7):
        assert np.mean(mu - P * u < 0) == pytest.approx(census.theory_index_fraction(u, P, n), abs=0.01)


def test_census_points_are_critical_distinct_and_indexed_like_numpy(found):
    df = found
    assert len(df) >= 40, len(df)  # measured: 77 distinct points from 132 converged starts
    points = np.stack(df["point"])
    assert np.all(df["grad_norm"] < census.GRAD_TOL)
    np.testing.assert_array_equal(df["index_fraction"], df["index"] / (N - 1))
    for i, w in enumerate(points):
        energy, gnorm, eig = _numpy_critical_data(w)
        # float64 throughout; gradient entries O(1): round-off ~ N eps ~ 1e-14, so 1e-10 is safe
        assert gnorm < 1e-10, (i, gnorm)
        assert df["energy"][i] == pytest.approx(energy, abs=1e-12)
        # nondegenerate (|eig| >= 1e-3 >> the 1e-10 agreement), so the index is well defined
        assert np.min(np.abs(eig)) > 1e-3
        assert df["index"][i] == np.sum(eig < 0)
        assert df["lambda_min"][i] == pytest.approx(eig[0], abs=1e-9)
        assert df["lambda_max"][i] == pytest.approx(eig[-1], abs=1e-9)
    overlaps = points @ points.T - np.eye(len(points)) * 2
    assert overlaps.max() < census.DUPLICATE_OVERLAP
    assert df["hits"].sum() == df.attrs["converged"]


def test_census_tracks_the_index_energy_theory(found):
    df = found
    # the index grows with the energy: Spearman rank correlation (measured 0.98)
    assert scipy.stats.spearmanr(df["energy"], df["index"]).statistic > 0.9
    # the census spans minima and saddles of high index
    assert df["index"].min() == 0 and df["index_fraction"].max() > 0.35
    # per energy bin, the mean index fraction against the theory. Tolerance: 3 standard errors
    # of the bin mean (sampling) plus 0.035 for what the theory leaves out at N = 30 and for
    # Newton's basin-weighted sampling. For the N -> infinity curve the finite-N shift is
    # measurable: the Kac-Rice mean at N = 30 lies 0.005-0.010 below F (the |det| tilt and
    # the radius sqrt((N-1)/N)), and the census another 0.00-0.02 below that (measured
    # errors vs F: -0.025 to +0.003, vs Kac-Rice: -0.020 to +0.007).
    table = census.agreement(df, P, N, min_count=5, kac_rice_samples=2000)
    assert len(table) >= 5
    for _, row in table.iterrows():
        assert abs(row["error"]) <= 0.035 + 3 * row["sem"], row.to_dict()
        assert abs(row["error_kac_rice"]) <= 0.035 + 3 * row["sem"], row.to_dict()
    # near the bottom, where the theory expects fewer than one negative eigenvalue,
    # E[index] = (N-1) F(u) < 1, Markov's inequality gives P(index >= 1) <= E[index]; so the
    # fraction of minima there must be at least 1 - mean((N-1) F(u_i)), less 2 binomial standard
    # deviations (measured: 12 points, 8 minima, bound 0.35)
    expected = (N - 1) * census.theory_index_fraction(df["energy"], P)
    low = df[expected < 1.0]
    assert len(low) >= 8
    bound = 1 - float(np.mean(expected[expected < 1.0]))
    sd = math.sqrt(bound * (1 - bound) / len(low)) if 0 < bound < 1 else 0.0
    assert np.mean(low["index"] == 0) >= bound - 2 * sd - 1e-12, (np.mean(low["index"] == 0), bound, sd)


def test_place_reproduces_census_points_and_flags_non_critical_ones(found):
    prob = problems.get("spin_glass", p=P, n=N, instance=INSTANCE)
    pts = np.stack(found["point"][:5]) * 3.0  # off the sphere: place retracts first
    rand = np.random.default_rng(1).standard_normal((3, N))
    placed = census.place(prob, np.concatenate([pts, rand]))
    np.testing.assert_allclose(placed["energy"][:5], found["energy"][:5], atol=1e-12)
    np.testing.assert_array_equal(placed["index"][:5], found["index"][:5])
    assert np.all(placed["grad_norm"][:5] < census.GRAD_TOL)
    assert np.all(placed["grad_norm"][5:] > 1e-3)  # a random point is not critical
    with pytest.raises(ValueError, match="coordinates"):
        census.place(prob, np.zeros((2, N + 1)))


def test_descent_schedule_and_bad_input():
    s = census.descent_schedule(26, 200)
    assert s[0] == 0 and s.max() == 200 and len(s) == 26
    assert np.all(census.descent_schedule(5, 0) == 0)
    prob = problems.get("spin_glass", p=P, n=10, instance=0)
    with pytest.raises(ValueError, match="starts"):
        census.find(prob, None, 0)
