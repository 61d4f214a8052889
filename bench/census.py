"""Critical-point census of the spherical p-spin glass: index against energy, with the theory curve.

The landscape picture behind the suite (Auffinger, Ben Arous and Cerny 2013, "Random matrices and
complexity of spin glasses", CPAM 66(2); Dauphin et al. 2014, "Identifying and attacking the saddle
point problem in high-dimensional non-convex optimization", NeurIPS): the critical points of the
spherical p-spin energy are saddles whose index grows with their energy, and the minima sit at or
below the threshold -E_inf. This module finds many critical points of one instance and records
their energy per spin u and Morse index k, so the fraction k/(N-1) can be compared with theory.

Theory. Write F(w) = H(sqrt(N) w)/N on the unit sphere (``problems.spin_glass``), with the
symmetrized couplings S = N^{-(p-1)/2} Sym(J). At a critical point w of energy u the Riemannian
Hessian on the tangent space w^perp is

    Hess F(w) = P grad^2 F(w) P - (w.grad F(w)) P = p (p-1) N^{-1/2} A - p u I,

A_ab = Sym(J)(e_a, e_b, w, ..., w) in an orthonormal tangent basis (Euler: w.grad F = p F). For a
symmetrized iid Gaussian tensor, Cov(A_ab, A_cd) = (delta_ac delta_bd + delta_ad delta_bc)/(p(p-1))
(of the p! index pairings only the 2 (p-2)! that match tangent with tangent slots survive), and A is
independent of the energy and of the gradient (their pairings would match a tangent slot with w).
So, given u, the tangent Hessian is sigma_N G - p u I with G a GOE matrix of size N-1 (off-diagonal
variance 1) and sigma_N = sqrt(p(p-1)/N): a semicircle of radius R_N = 2 sqrt(p(p-1)(N-1)/N)
-> 2 sqrt(p(p-1)) = p E_inf centred at -p u. (In ABC's normalization, on the sphere of radius
sqrt(N), this is their sqrt(2(N-1)p(p-1)) M - p N u I up to the factor N.) Its fraction of
negative eigenvalues is the semicircle mass below p u / R, i.e. with t = u / E_inf,

    F(t) = 1/2 + (t sqrt(1 - t^2) + arcsin t) / pi   for |t| <= 1,   0 below -1, 1 above 1.

Energies of interest are negative: F(-1) = 0 (minima at and below the threshold -E_inf), F(0) = 1/2
(equator), so index fraction rises from 0 at -E_inf to 1/2 at u = 0 (``theory_index_fraction``;
with ``n`` the finite-N radius R_N is used, t = u sqrt(N/(N-1)) / E_inf).

Finite N. By the Kac-Rice formula (as used throughout ABC 2013), the mean number of critical
points of index k at energy u is proportional to E[|det Hess| 1{index = k}] with
Hess = sigma_N G - p u I, so among the critical points at energy u the index fraction has mean

    E[i(Hess)/(N-1) |det Hess|] / E[|det Hess|],

which ``kac_rice_index_fraction`` evaluates by Monte Carlo over GOE samples (the |det| tilt pushes
eigenvalues away from 0; at N = 30 this and the edge fluctuations, of order N^{-2/3}, are the
finite-N corrections to F). A census from Newton's method samples critical points by the size of
their basins, not uniformly, so it can only be expected to track these curves within a few
hundredths; ``agreement`` measures how closely it does, per energy bin.

Search. From ``starts`` uniform random points on the sphere, each start first takes a number of
Riemannian gradient-descent steps (w <- retract(w - lr grad f(w)), numbers spread geometrically
from 0 to ``max_descent_steps``, so starts reach different heights of the landscape: the fewer
steps, the higher the energy and index of the critical point found), then Newton-Raphson steps
on the gradient field, which converge quadratically to the nearest nondegenerate critical point
of ANY index (not only minima):

    d = -(Hess f(w))^{-1} grad f(w),  clipped to |d| <= ``max_step``,   w <- retract(w + d).

The problem's loss is the chart pulled back through the tangent projection (``problems.spin_glass``),
so its autodiff Hessian at |w| = 1 is the Riemannian Hessian on the tangent space plus c_r w w^T
(c_r = p E_inf > 0) radially: the Newton step of a tangent gradient is tangent, and the dense
Hessian (``jax.hessian``, N HVPs) is invertible at every nondegenerate critical point. The dense
Hessian costs about 3 N^{p+1} flops per Newton step (p = 3: 2.4 Mflop at N = 30, 7.7 at N = 40),
meant for N up to ~60; measured on a shared 2-core CPU (float64, 30 Newton steps, up to 300
descent steps): N = 30, 512 starts in 18 s, N = 40, 384 starts in 18 s, compilation included. Everything
runs in float64 (``jax.enable_x64``), one jitted program vmapped over starts. Points with
Riemannian gradient norm below ``grad_tol`` are kept, their index is counted from the dense
``eigh`` of the tangent block (a Householder reflection maps w to e_1 and the radial row and
column are dropped), and duplicates (same point found from several starts: overlap
w.w' > 1 - 1e-8) are merged, counting ``hits``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import problems
from problems.spin_glass import threshold_energy

GRAD_TOL = 1e-8  # Riemannian gradient norm (energy per spin, unit sphere) that counts as critical
DUPLICATE_OVERLAP = 1.0 - 1e-8  # w.w' above this: the same critical point
GD_RATE = 0.1  # stable, fast gradient-descent rate for p = 3, 4 on the unit sphere (problems.spin_glass)
COLUMNS = ["p", "n", "instance", "energy", "index", "index_fraction", "grad_norm", "lambda_min", "lambda_max",
           "min_abs_eig", "descent_steps", "start", "hits", "point"]


def semicircle_cdf(t):
    """F(t) = 1/2 + (t sqrt(1 - t^2) + arcsin t)/pi, the mass of the semicircle law on [-1, 1] below t."""
    t = np.clip(np.asarray(t, np.float64), -1.0, 1.0)
    return 0.5 + (t * np.sqrt(1.0 - t * t) + np.arcsin(t)) / np.pi


def theory_index_fraction(u, p: int, n: int | None = None):
    """Asymptotic fraction of negative Hessian eigenvalues at a critical point of energy per spin u.

    F(u / E_inf) with E_inf = 2 sqrt((p-1)/p) (module docstring); with ``n``, the finite-N semicircle
    radius 2 sqrt(p(p-1)(n-1)/n), i.e. F(u sqrt(n/(n-1)) / E_inf).
    """
    t = np.asarray(u, np.float64) / threshold_energy(p)
    if n is not None:
        t = t * math.sqrt(n / (n - 1))
    return semicircle_cdf(t)


def kac_rice_index_fraction(u, p: int, n: int, samples: int = 4000, seed: int = 0):
    """Finite-N Kac-Rice mean index fraction at energy u: E[i(M)/(n-1) |det M|] / E[|det M|].

    M = sqrt(p(p-1)/n) G - p u I, G an (n-1) x (n-1) GOE matrix (off-diagonal variance 1, diagonal
    2); Monte Carlo over ``samples`` GOE draws (the same draws for every u), weights |det M| taken
    in logs. ``u`` may be an array.
    """
    rng = np.random.default_rng(seed)
    m = n - 1
    g = rng.standard_normal((samples, m, m))
    g = (g + np.swapaxes(g, 1, 2)) / math.sqrt(2.0)
    mu = np.linalg.eigvalsh(g) * math.sqrt(p * (p - 1) / n)
    u = np.atleast_1d(np.asarray(u, np.float64))
    lam = mu[None, :, :] - p * u[:, None, None]
    logdet = np.sum(np.log(np.abs(lam)), axis=-1)
    w = np.exp(logdet - logdet.max(axis=1, keepdims=True))
    frac = np.mean(lam < 0, axis=-1)
    out = np.sum(w * frac, axis=1) / np.sum(w, axis=1)
    return out if out.size > 1 else float(out[0])


def descent_schedule(starts: int, max_descent_steps: int) -> np.ndarray:
    """Gradient-descent steps per start: 0 and a geometric grid 1 .. max_descent_steps, cycled."""
    if max_descent_steps <= 0:
        return np.zeros(starts, np.int32)
    levels = np.unique(np.round(np.geomspace(1, max_descent_steps, 12)).astype(np.int32))
    levels = np.concatenate([[0], levels])
    return levels[np.arange(starts) % len(levels)].astype(np.int32)


def tangent_hessian(f, w):
    """The Riemannian Hessian of ``f`` at the unit vector ``w`` in an orthonormal tangent basis, (n-1, n-1).

    ``jax.hessian(f)(w)`` is the Riemannian Hessian plus c_r w w^T (problems.spin_glass); the
    Householder reflection Q = I - 2 v v^T / |v|^2, v = w + sign(w_1) e_1, maps w to -sign(w_1) e_1,
    so Q H Q has the radial eigenvalue in its (0, 0) corner and the tangent block below.
    """
    h = jax.hessian(f)(w)
    sign = jnp.where(w[0] >= 0, 1.0, -1.0)
    v = w.at[0].add(sign)
    q = jnp.eye(w.shape[0], dtype=w.dtype) - 2.0 * jnp.outer(v, v) / (v @ v)
    return (q @ h @ q)[1:, 1:]


@functools.partial(jax.jit, static_argnames=("f", "retract", "max_descent", "newton_iters"))
def _search(f, retract, w0, steps, lr, max_step, max_descent, newton_iters):
    grad = jax.grad(f)

    def one(w, n_steps):
        def gd(i, w):
            return jnp.where(i < n_steps, retract(w - lr * grad(w)), w)

        w = jax.lax.fori_loop(0, max_descent, gd, w)

        def newton(w, _):
            g = grad(w)
            d = -jnp.linalg.solve(jax.hessian(f)(w), g)
            nd = jnp.linalg.norm(d)
            d = jnp.where(nd > max_step, d * (max_step / nd), d)
            w_new = retract(w + d)
            return jnp.where(jnp.all(jnp.isfinite(w_new)), w_new, w), None

        w, _ = jax.lax.scan(newton, w, None, length=newton_iters)
        eig = jnp.linalg.eigvalsh(tangent_hessian(f, w))
        return w, f(w), jnp.linalg.norm(grad(w)), eig

    return jax.vmap(one)(w0, steps)


def find(
    problem,
    key: jax.Array,
    starts: int = 256,
    *,
    max_descent_steps: int = 200,
    lr: float = GD_RATE,
    newton_iters: int = 30,
    max_step: float = 0.2,
    descent_steps: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Run the search from ``starts`` random points (module docstring); one row per start, no filtering.

    Returns a dict of numpy arrays: ``point`` (starts, n) unit vectors, ``energy`` per spin,
    ``grad_norm`` (Riemannian), ``eigs`` (starts, n-1) tangent Hessian eigenvalues ascending,
    ``index``, ``descent_steps``. Runs in float64.
    """
    if starts < 1:
        raise ValueError(f"census: starts must be >= 1, got {starts}")
    if newton_iters < 1:
        raise ValueError(f"census: newton_iters must be >= 1, got {newton_iters}")
    n = problem.dim
    steps = descent_schedule(starts, max_descent_steps) if descent_steps is None else np.asarray(descent_steps)
    if steps.shape != (starts,):
        raise ValueError(f"census: descent_steps must have shape ({starts},), got {steps.shape}")
    max_descent = int(steps.max()) if starts else 0
    with jax.enable_x64(True):
        w0 = jax.random.normal(key, (starts, n), jnp.float64)
        w0 = w0 / jnp.linalg.norm(w0, axis=1, keepdims=True)
        w, u, gn, eig = _search(problem.full_loss, problem.retract, w0, jnp.asarray(steps, jnp.int32),
                                jnp.float64(lr), jnp.float64(max_step), max_descent, int(newton_iters))
        w, u, gn, eig = (np.asarray(a, np.float64) for a in (w, u, gn, eig))
    return {"point": w, "energy": u, "grad_norm": gn, "eigs": eig, "index": np.sum(eig < 0, axis=1),
            "descent_steps": steps}


def deduplicate(points: np.ndarray, overlap: float = DUPLICATE_OVERLAP) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the first occurrence of each distinct point, hits per distinct point).

    Two unit vectors are the same critical point when w.w' > ``overlap`` (-w is a different
    critical point, of energy -u, for odd p).
    """
    keep: list[int] = []
    hits: list[int] = []
    for i, w in enumerate(points):
        if keep:
            ov = points[keep] @ w
            j = int(np.argmax(ov))
            if ov[j] > overlap:
                hits[j] += 1
                continue
        keep.append(i)
        hits.append(1)
    return np.asarray(keep, np.int64), np.asarray(hits, np.int64)


def run(
    p: int = 3,
    n: int = 30,
    instance: int = 0,
    starts: int = 256,
    key: jax.Array | int = 0,
    *,
    grad_tol: float = GRAD_TOL,
    **search,
) -> pd.DataFrame:
    """The census of ``spin_glass(p, n, instance)``: one row per distinct critical point found.

    Columns (``COLUMNS``): p, n, instance, energy (per spin), index (negative eigenvalues of the
    tangent Hessian), index_fraction = index / (n - 1), grad_norm, lambda_min, lambda_max and
    min_abs_eig of the tangent Hessian (min_abs_eig > 0: nondegenerate), descent_steps and start
    of the first start that found it, hits (how many starts did), point (the unit vector w, a
    float64 array; ``np.stack(df["point"])`` gives them all). Rows are sorted by energy;
    ``df.attrs`` holds ``starts`` and ``converged`` (starts that reached a critical point).
    ``search`` goes to ``find``.
    """
    problem = problems.get("spin_glass", p=p, n=n, instance=instance)
    key = jax.random.key(key) if isinstance(key, int) else key
    res = find(problem, key, starts, **search)
    ok = np.flatnonzero(np.isfinite(res["energy"]) & (res["grad_norm"] < grad_tol))
    keep, hits = deduplicate(res["point"][ok])
    order = np.argsort(res["energy"][ok[keep]], kind="stable")  # rows sorted by energy
    sel, hits = ok[keep][order], hits[order]
    eigs = res["eigs"][sel]
    df = pd.DataFrame({
        "p": p, "n": n, "instance": instance,
        "energy": res["energy"][sel],
        "index": res["index"][sel].astype(np.int64),
        "index_fraction": res["index"][sel] / (n - 1),
        "grad_norm": res["grad_norm"][sel],
        "lambda_min": eigs[:, 0] if len(sel) else np.zeros(0),
        "lambda_max": eigs[:, -1] if len(sel) else np.zeros(0),
        "min_abs_eig": np.min(np.abs(eigs), axis=1) if len(sel) else np.zeros(0),
        "descent_steps": res["descent_steps"][sel],
        "start": sel,
        "hits": hits,
        "point": list(res["point"][sel]),
    }, columns=COLUMNS)
    df.attrs["starts"] = starts
    df.attrs["converged"] = int(len(ok))
    return df


@functools.partial(jax.jit, static_argnames=("f", "retract"))
def _place(f, retract, x):
    def one(w):
        w = retract(w)
        return f(w), jnp.linalg.norm(jax.grad(f)(w)), jnp.linalg.eigvalsh(tangent_hessian(f, w))

    return jax.vmap(one)(x)


def place(problem, params) -> pd.DataFrame:
    """Energy per spin, Riemannian gradient norm and Hessian index of given points (e.g. optimizers' end points).

    ``params``: (m, n) array of points of ``problem`` (a spin glass), retracted onto the unit sphere
    first; computed in float64 like the census, so they can be drawn on the same picture.
    """
    if problem.family != "spin_glass":
        raise ValueError(f"census.place: needs a spin_glass problem, got {problem.name}")
    x = np.atleast_2d(np.asarray(params, np.float64))
    if x.ndim != 2 or x.shape[1] != problem.dim:
        raise ValueError(f"census.place: points must have {problem.dim} coordinates, got shape {x.shape}")
    n = problem.dim
    with jax.enable_x64(True):
        u, gn, eig = (np.asarray(a, np.float64) for a in _place(problem.full_loss, problem.retract, jnp.asarray(x)))
    index = np.sum(eig < 0, axis=1)
    return pd.DataFrame({"energy": u, "index": index, "index_fraction": index / (n - 1), "grad_norm": gn,
                         "lambda_min": eig[:, 0], "lambda_max": eig[:, -1]})


def agreement(df: pd.DataFrame, p: int, n: int, bins=None, min_count: int = 5, kac_rice_samples: int = 4000):
    """Per energy bin: count, mean energy, mean index fraction and the theory at the bin's points.

    ``theory`` is the mean of F(u_i / E_inf) over the bin's points, ``theory_n`` the same with the
    finite-N radius, ``kac_rice`` the finite-N Kac-Rice mean (``kac_rice_index_fraction``); their
    differences from the census mean are ``error``, ``error_kac_rice``. Bins with fewer than
    ``min_count`` points are dropped. Default bins: 8 equal-width bins over the census energies.
    """
    e = df["energy"].to_numpy()
    if bins is None:
        bins = np.linspace(e.min(), e.max() + 1e-12, 9)
    which = np.digitize(e, bins) - 1
    rows = []
    kr = kac_rice_index_fraction(e, p, n, samples=kac_rice_samples) if len(e) else np.zeros(0)
    kr = np.atleast_1d(kr)
    for b in range(len(bins) - 1):
        m = which == b
        if m.sum() < min_count:
            continue
        frac = df["index_fraction"].to_numpy()[m]
        rows.append({
            "lo": bins[b], "hi": bins[b + 1], "count": int(m.sum()), "energy": float(e[m].mean()),
            "index_fraction": float(frac.mean()), "sem": float(frac.std(ddof=1) / math.sqrt(m.sum())),
            "theory": float(theory_index_fraction(e[m], p).mean()),
            "theory_n": float(theory_index_fraction(e[m], p, n).mean()),
            "kac_rice": float(kr[m].mean()),
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["error"] = out["index_fraction"] - out["theory"]
        out["error_kac_rice"] = out["index_fraction"] - out["kac_rice"]
    return out
