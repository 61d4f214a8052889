"""Cubic regularization (ARC with a Lanczos solver) and stochastic cubic regularization.

Checks the exact algebra: global optimality conditions of the cubic subproblem (Nesterov and
Polyak 2006, Thm. 10) against float64 numpy and multi-start scipy minimization, including the
hard case; one exact ARC step at a strict saddle; the sigma update rule; and the paper's
sub-solver recursions of Tripuraneni et al. (2018).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import optimizers
from optimizers.arc import cubic_step
from optimizers.cubic_subproblem import solve_cubic_dense

N = 6


def _strict_saddle(p):
    x, y = p[0], p[1]
    return x**2 + y**4 / 4 - y**2 / 2


def _rosenbrock(p):
    return (1 - p["x"][0]) ** 2 + 100 * (p["x"][1] - p["x"][0] ** 2) ** 2


def _model64(B, g, sigma, s):
    return g @ s + 0.5 * s @ B @ s + sigma / 3 * np.linalg.norm(s) ** 3


def _global_min_scipy(B, g, sigma, rng, starts=8):
    f = lambda y: _model64(B, g, sigma, y)
    jac = lambda y: g + B @ y + sigma * np.linalg.norm(y) * y
    best = 0.0
    scale = 2 * (np.abs(np.linalg.eigvalsh(B)).max() / sigma + 1)
    for _ in range(starts):
        r = scipy.optimize.minimize(f, rng.normal(size=len(g)) * scale, jac=jac, method="BFGS",
                                    options={"gtol": 1e-11, "maxiter": 2000})
        best = min(best, r.fun)
    return best


def _check_optimal(B, g, sigma, s, rtol=2e-5):
    """(B + sigma|s| I) s = -g, B + sigma|s| I PSD, in float64."""
    s = np.asarray(s, np.float64)
    lam = sigma * np.linalg.norm(s)
    scale = np.abs(np.linalg.eigvalsh(B)).max() + lam + 1.0
    res = (B + lam * np.eye(len(g))) @ s + g
    assert np.linalg.norm(res) <= rtol * scale * (np.linalg.norm(s) + np.linalg.norm(g) + 1e-30)
    assert np.linalg.eigvalsh(B + lam * np.eye(len(g))).min() >= -rtol * scale


_solve = jax.jit(jax.vmap(solve_cubic_dense))


def _random_problems(rng, count):
    Bs, gs, sigmas = [], [], []
    for i in range(count):
        a = rng.normal(size=(N, N))
        B = (a + a.T) / 2 + (2.0 if i % 3 == 0 else 0.0) * np.eye(N)  # some convex, most indefinite
        Bs.append(B)
        gs.append(rng.normal(size=N) * 10.0 ** rng.uniform(-2, 1))
        sigmas.append(10.0 ** rng.uniform(-1, 1))
    return np.array(Bs), np.array(gs), np.array(sigmas)


def _hard_problems(rng, count):
    """g orthogonal to the lowest eigenvector of an indefinite B, small enough for the hard case."""
    Bs, gs, sigmas = [], [], []
    for _ in range(count):
        Q = np.linalg.qr(rng.normal(size=(N, N)))[0]
        lam = np.concatenate([[-1.5], np.sort(rng.uniform(-1.0, 3.0, N - 1))])
        sigma = 10.0 ** rng.uniform(-0.5, 0.5)
        g = Q[:, 1:] @ rng.normal(size=N - 1)
        w = (Q.T @ g)[1:] / (lam[1:] - lam[0])  # |(B - lam_min I)^+ g|
        g *= 0.5 * (-lam[0] / sigma) / np.linalg.norm(w)  # -> hard case with margin
        Bs.append(Q @ np.diag(lam) @ Q.T)
        gs.append(g)
        sigmas.append(sigma)
    return np.array(Bs), np.array(gs), np.array(sigmas)


@pytest.mark.parametrize("kind", ["random", "hard"])
def test_subproblem_global_optimality(kind):
    rng = np.random.default_rng(0 if kind == "random" else 1)
    Bs, gs, sigmas = (_random_problems if kind == "random" else _hard_problems)(rng, 8)
    sol = _solve(jnp.asarray(Bs, jnp.float32), jnp.asarray(gs, jnp.float32), jnp.asarray(sigmas, jnp.float32))
    for i in range(len(gs)):
        s = np.asarray(sol.y[i], np.float64)
        _check_optimal(Bs[i], gs[i], sigmas[i], s)
        m = _model64(Bs[i], gs[i], sigmas[i], s)
        ref = _global_min_scipy(Bs[i], gs[i], sigmas[i], rng)
        assert m <= ref + 1e-5 * (abs(ref) + 1e-3), (i, m, ref)
        np.testing.assert_allclose(float(sol.model[i]), m, rtol=1e-4, atol=1e-6)
        if kind == "hard":
            # the step has the full norm -lambda_min/sigma, reached through the lowest eigenvector
            np.testing.assert_allclose(np.linalg.norm(s), 1.5 / sigmas[i], rtol=1e-5)


def test_subproblem_hard_case_closed_form():
    # B = diag(-1, 1, 2), g = (0, .1, .2), sigma = 1: lambda = 1,
    # y = (tau, -.1/2, -.2/3) with tau^2 = 1 - .05^2 - (.2/3)^2 (sign + when g_1 = 0).
    B = np.diag([-1.0, 1.0, 2.0])
    g = np.array([0.0, 0.1, 0.2])
    sol = jax.jit(solve_cubic_dense)(jnp.asarray(B, jnp.float32), jnp.asarray(g, jnp.float32), 1.0)
    tau = np.sqrt(1 - 0.05**2 - (0.2 / 3) ** 2)
    np.testing.assert_allclose(np.abs(np.asarray(sol.y)), [tau, 0.05, 0.2 / 3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sol.y)[1:], [-0.05, -0.2 / 3], rtol=1e-6)
    assert int(sol.which) == 1
    np.testing.assert_allclose(float(sol.lam), 1.0, rtol=1e-6)


def test_krylov_solution_with_full_space_is_the_global_minimizer():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(N, N))
    B = (a + a.T) / 2
    g = rng.normal(size=N)
    sigma = 0.7
    Bj, gj = jnp.asarray(B, jnp.float32), jnp.asarray(g, jnp.float32)
    f = lambda x: gj @ x + 0.5 * x @ (Bj @ x)
    x0 = jnp.zeros(N, jnp.float32)
    s, model, _ = jax.jit(lambda x: cubic_step(f, x, jax.grad(f)(x), sigma, N))(x0)
    _check_optimal(B, g, sigma, s, rtol=1e-4)
    np.testing.assert_allclose(float(model), _model64(B, g, sigma, np.asarray(s, np.float64)), rtol=1e-4)
    assert float(model) <= _global_min_scipy(B, g, sigma, rng) * (1 - 1e-4)


def _run(name, f, p0, steps, hp, noise=0.0):
    """steps of ``name`` on f (plus a N(0, noise^2) gradient perturbation from the step key)."""
    tx = optimizers.get(name, **hp)

    def step(carry, t):
        p, st = carry
        k = jax.random.fold_in(jax.random.key(3), t)
        fk = f
        if noise:
            xi = noise * jax.random.normal(jax.random.fold_in(k, 1), jnp.shape(p))
            fk = lambda q: f(q) + jnp.vdot(xi, q)
        v, g = jax.value_and_grad(fk)(p)
        u, st = tx.update(g, st, p, value=v, value_fn=fk, key=k)
        p = optax.apply_updates(p, u)
        inner = st.inner_state
        return (p, st), (f(p), inner)

    run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jnp.arange(steps)))
    return run(p0)


def test_cubic_reg_exact_step_at_strict_saddle():
    # g = 0 at the origin, B = diag(2, -1): hard case, s = (0, +-1), m(s) = -1/2 + 1/3 = -1/6,
    # f(s) = 1/4 - 1/2 = -1/4, rho = (1/4) / (1/6) = 1.5: very successful, sigma halves.
    (p, st), (fs, tr) = _run("cubic_reg", _strict_saddle, jnp.zeros(2), 1, {"sigma": 1.0, "krylov_dim": 2})
    np.testing.assert_allclose(np.abs(np.asarray(p)), [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(float(fs[0]), -0.25, atol=1e-7)
    np.testing.assert_allclose(float(tr.last_rho[0]), 1.5, rtol=1e-5)
    assert bool(tr.last_accepted[0])
    np.testing.assert_allclose(float(tr.sigma_scale[0]), 0.5)
    counts = optimizers.oracle_counts(st)
    assert (int(counts["hvps"]), int(counts["values"]), int(counts["grads"])) == (2, 1, 0)


def test_cubic_reg_rosenbrock():
    (p, _), (fs, tr) = _run("cubic_reg", _rosenbrock, {"x": jnp.array([-1.2, 1.0])}, 150, {})
    assert float(fs[-1]) < 1e-6
    np.testing.assert_allclose(np.asarray(p["x"]), [1.0, 1.0], atol=1e-3)
    assert np.all(np.diff(np.asarray(fs)) <= 1e-7)  # accepted steps decrease f, rejected ones are 0
    assert int(np.sum(~np.asarray(tr.last_accepted))) >= 1  # the sigma mechanism was exercised


def test_cubic_reg_sigma_update_rule():
    # double well -x^2/2 + x^4/4 from x = 0.1 with sigma_0 = 0.01: the first steps are far too
    # long (|s| ~ 1/sigma) and rejected, sigma doubles until the step fits, then shrinks again.
    f = lambda p: jnp.sum(-(p**2) / 2 + p**4 / 4)
    steps = 16
    (p, _), (fs, tr) = _run("cubic_reg", f, jnp.array([0.1]), steps, {"sigma": 0.01, "sigma_min": 0.002})
    sig = np.asarray(tr.last_sigma, np.float64)
    rho = np.asarray(tr.last_rho, np.float64)
    acc = np.asarray(tr.last_accepted)
    np.testing.assert_allclose(sig[:4], [0.01, 0.02, 0.04, 0.08], rtol=1e-6)
    assert not acc[:4].any() and acc.any()
    for t in range(steps - 1):
        if not np.isfinite(rho[t]) or (acc[t] and rho[t] < 0.1):
            continue  # no predicted decrease, or both decreases below float32 resolution of f
        expected = sig[t] / 2 if rho[t] >= 0.9 else (sig[t] if rho[t] >= 0.1 else 2 * sig[t])
        np.testing.assert_allclose(sig[t + 1], max(expected, 0.002), rtol=1e-6)
        assert acc[t] == (rho[t] >= 0.1)
    f_ = np.asarray(fs)
    assert np.all(f_[~acc] == np.concatenate([[f(jnp.array([0.1]))], f_[:-1]])[~acc])  # rejected: x kept
    assert (rho >= 0.9).any()
    np.testing.assert_allclose(np.abs(np.asarray(p)), [1.0], atol=1e-4)


def test_stochastic_cubic_cauchy_step_and_subsolver_recursion():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(N, N))
    B = (a + a.T) / 2
    Bj = jnp.asarray(B, jnp.float32)
    f = lambda x: 0.5 * x @ (Bj @ x)
    x0 = jnp.asarray(rng.normal(size=N), jnp.float32)
    g = B @ np.asarray(x0, np.float64)
    rho, lr, T = 2.0, 0.02, 7

    def one(hp):
        tx = optimizers.get("stochastic_cubic", **hp)
        step = jax.jit(lambda x: tx.update(jax.grad(f)(x), tx.init(x), x, value=f(x), value_fn=f,
                                            key=jax.random.key(0)))
        u, st = step(x0)
        return np.asarray(u, np.float64), st.inner_state

    # Cauchy branch: |g| >= l^2 / rho
    u, st = one({"l": 0.1, "rho": rho, "learning_rate": lr, "T_sub": T, "eps": 1e-12})
    gn = np.linalg.norm(g)
    beta = g @ B @ g / gn**2
    Rc = -beta / rho + np.sqrt((beta / rho) ** 2 + 2 * gn / rho)
    np.testing.assert_allclose(u, -Rc * g / gn, rtol=2e-5, atol=1e-6)
    assert int(st.last_branch) == 0 and int(st.counts.hvps) == 1
    # sub-solver branch without perturbation (c' = 0): T steps of D <- D - eta grad m(D)
    u, st = one({"l": 1e3, "rho": rho, "learning_rate": lr, "T_sub": T, "c_prime": 0.0, "eps": 1e-12})
    D = np.zeros(N)
    for _ in range(T):
        D = D - lr * (g + B @ D + rho / 2 * np.linalg.norm(D) * D)
    np.testing.assert_allclose(u, D, rtol=2e-5, atol=1e-6)
    dm = g @ D + 0.5 * D @ B @ D + rho / 6 * np.linalg.norm(D) ** 3
    np.testing.assert_allclose(float(st.last_model), dm, rtol=1e-4)
    assert int(st.last_branch) == 1 and int(st.counts.hvps) == T


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_stochastic_cubic_escapes_strict_saddle(noise):
    hp = {"l": 2.0, "rho": 6.0, "learning_rate": 1 / 40, "eps": 1e-3}
    (p, st), (fs, tr) = _run("stochastic_cubic", _strict_saddle, jnp.zeros(2), 40, hp, noise=noise)
    assert float(fs[-1]) <= -0.25 + 1e-3
    assert abs(abs(float(p[1])) - 1.0) < 0.05
    assert int(tr.last_branch[0]) == 1  # g = 0: the perturbed sub-solver, not the final solver
    assert int(optimizers.oracle_counts(st)["hvps"]) >= 40


def test_registered_specs():
    for name in ("cubic_reg", "stochastic_cubic"):
        sp = optimizers.spec(name)
        assert sp.needs_hvp and sp.needs_value_fn and sp.reference
    assert optimizers.spec("stochastic_cubic").uses_key
    assert optimizers.spec("cubic_reg").static == ("krylov_dim",)
    assert set(optimizers.spec("stochastic_cubic").static) == {"T_sub", "T_final"}
