"""The optax optimizers users train with, AdaHessian and Sophia: what each paper claims, on small problems.

Each test checks one property stated in the optimizer's paper against a closed form or a hand
computation in numpy (float64), on a problem small enough that the property can be read off
exactly; the generic checks (convergence, dtypes, wrappers, oracle counts) are the shared tests'.
Tolerances: float32 round-off (rtol 1e-5 on a handful of operations) unless said otherwise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optimizers
from optimizers import ada_hessian, hutchinson

RNG = np.random.default_rng(0)
# a symmetric positive definite 5x5 matrix with off-diagonal entries of size ~1
_Q, _ = np.linalg.qr(RNG.standard_normal((5, 5)))
A = (_Q * np.array([0.5, 1.0, 2.0, 4.0, 8.0])) @ _Q.T
A = (A + A.T) / 2
A32 = jnp.asarray(A, jnp.float32)


def _quadratic(x):
    return 0.5 * x @ (A32 @ x)


def _steps(name, grads_fn, x0, n, key=None, **hp):
    """n eager updates of optimizers.get(name, **hp) from x0; (updates, params, states) per step."""
    tx = optimizers.get(name, **hp)
    update = jax.jit(functools.partial(tx.update, value_fn=_quadratic))
    state, x, out = tx.init(x0), x0, []
    for t in range(n):
        g = grads_fn(x, t)
        extra = {} if key is None else {"key": jax.random.fold_in(key, t)}
        u, state = update(g, state, x, **extra)
        x = optax.apply_updates(x, u)
        out.append((u, x, state))
    return out


# ----------------------------------------------------------------------------- Hutchinson / AdaHessian


def test_hutchinson_diagonal_is_unbiased_with_the_rademacher_variance():
    """E[z * Az] = diag(A), Var[(z * Az)_i] = sum_{j != i} A_ij^2 (Rademacher z), checked by the CLT.

    N = 4096 probes: the mean is within 4.5 standard errors sqrt(var_i / N) of diag(A) for every
    coordinate (a false alarm has probability < 1e-4 over the 5 coordinates), and the sample
    variance within 15% of the closed form (its relative standard error is about
    sqrt(2 / N) x kurtosis factor < 5% here).
    """
    n = 4096
    keys = jax.random.split(jax.random.key(1), n)
    x = jnp.ones(5, jnp.float32)
    est = np.asarray(jax.jit(jax.vmap(lambda k: hutchinson.hutchinson_diagonal(_quadratic, x, k)))(keys), np.float64)
    var = (A**2).sum(axis=1) - np.diag(A) ** 2
    assert np.all(np.abs(est.mean(axis=0) - np.diag(A)) <= 4.5 * np.sqrt(var / n)), (est.mean(axis=0), np.diag(A))
    np.testing.assert_allclose(est.var(axis=0), var, rtol=0.15)
    # exact on a diagonal Hessian, whatever the probe
    d = jnp.array([1.0, -2.0, 3.0])
    one = hutchinson.hutchinson_diagonal(lambda y: 0.5 * jnp.sum(d * y**2), jnp.zeros(3), keys[0])
    np.testing.assert_array_equal(np.asarray(one), np.asarray(d))


def test_adahessian_spatial_average_over_kernel_axes():
    """|D| averaged over the leading ndim - 2 axes of a kernel (flax layout), untouched for ndim <= 2."""
    d = jnp.asarray(RNG.standard_normal((3, 3, 2, 4)), jnp.float32)
    v = jnp.asarray(RNG.standard_normal(4), jnp.float32)
    out = ada_hessian.spatial_average({"kernel": d, "bias": v})
    expect = np.broadcast_to(np.abs(np.asarray(d)).mean(axis=(0, 1), keepdims=True), d.shape)
    np.testing.assert_allclose(np.asarray(out["kernel"]), expect, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out["bias"]), np.abs(np.asarray(v)))


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_adahessian_steps_by_hand_on_a_diagonal_quadratic(power):
    """On f = sum a_i x_i^2 / 2 the estimate is exact (D = a): step t is, by the paper's Algorithm 1,
    -lr m_hat / (v_hat^(k/2) + eps) with v_hat = a^2, i.e. -lr m_hat / (|a|^k + eps); one HVP each."""
    a = np.array([0.5, 4.0, -2.0])
    f = functools.partial(lambda y, a: 0.5 * jnp.sum(a * y**2), a=jnp.asarray(a, jnp.float32))
    lr, b1, eps = 0.15, 0.9, 1e-4
    tx = optimizers.get("adahessian", hessian_power=power)
    x = jnp.array([1.0, -1.0, 0.5])
    state, m, xs = tx.init(x), np.zeros(3), np.asarray(x, np.float64)
    for t in range(1, 4):
        g = jax.grad(f)(x)
        u, state = tx.update(g, state, x, value_fn=f, key=jax.random.key(t))
        m = b1 * m + (1 - b1) * a * xs
        expect = -lr * (m / (1 - b1**t)) / (np.abs(a) ** power + eps)
        np.testing.assert_allclose(np.asarray(u), expect, rtol=2e-5)
        x, xs = optax.apply_updates(x, u), xs + expect
    assert int(optimizers.oracle_counts(state)["hvps"]) == 3
    assert int(optimizers.oracle_counts(state)["grads"]) == 0


# ----------------------------------------------------------------------------- Sophia


def test_sophia_hvp_every_k_steps_and_clipped_newton_steps():
    """Sophia-H on f = (x^2 - y^2) / 2 + 2 z^2 (a saddle; exact Hessian-diagonal estimates):

    * one HVP on updates 1, 11, 21 (k = 10): 3 after 21 updates;
    * update 1 (h = 0): every coordinate is clipped, the step is -lr sign(m);
    * update 2 (h = (1 - b2) diag(H), optax's EMA without bias correction):
      -lr clip(m_hat / max(gamma h, eps), 1) by hand; along the negative curvature (h_y < 0)
      it is the clipped -lr sign(m_y), which moves away from the saddle (the paper's safeguard).
    """
    diag = np.array([1.0, -1.0, 4.0])
    f = functools.partial(lambda p, d: 0.5 * jnp.sum(d * p**2), d=jnp.asarray(diag, jnp.float32))
    lr, b1, b2, gamma = 0.05, 0.965, 0.99, 0.01
    tx = optimizers.get("sophia", learning_rate=lr)
    x = jnp.array([0.5, 1e-3, 0.1])
    state = tx.init(x)
    step = jax.jit(lambda s, x, k: tx.update(jax.grad(f)(x), s, x, value_fn=f, key=k))
    m, xs = np.zeros(3), np.asarray(x, np.float64)
    for t in range(1, 22):
        u, state = step(state, x, jax.random.key(t))
        g = diag * xs
        m = b1 * m + (1 - b1) * g
        if t == 1:
            np.testing.assert_allclose(np.asarray(u), -lr * np.sign(g), rtol=1e-6)
        if t == 2:
            h = (1 - b2) * diag
            expect = -lr * np.clip((m / (1 - b1**2)) / np.maximum(gamma * h, 1e-8), -1, 1)
            np.testing.assert_allclose(np.asarray(u), expect, rtol=1e-5)
            assert np.sign(u[1]) == np.sign(xs[1]) and abs(float(u[1])) == pytest.approx(lr)
        xs = xs + np.asarray(u, np.float64)
        x = optax.apply_updates(x, u)
    counts = optimizers.oracle_counts(state)
    assert (int(counts["hvps"]), int(counts["grads"]), int(counts["values"])) == (3, 0, 0)


# ----------------------------------------------------------------------------- SAM


def test_sam_update_is_the_gradient_at_the_ascent_point():
    """SAM (momentum 0): u = -lr grad f(x + rho g / |g|), by hand on Rosenbrock; one extra gradient per update."""

    def f(p):
        return 100.0 * (p[1] - p[0] ** 2) ** 2 + (1.0 - p[0]) ** 2

    def grad64(p):
        x, y = p
        return np.array([-400 * x * (y - x**2) - 2 * (1 - x), 200 * (y - x**2)])

    lr, rho = 1e-3, 0.05
    tx = optimizers.get("sam", learning_rate=lr, rho=rho, momentum=0.0)
    x = jnp.array([-1.2, 1.0])
    state = tx.init(x)
    for n in range(1, 3):
        g = grad64(np.asarray(x, np.float64))
        expect = -lr * grad64(np.asarray(x, np.float64) + rho * g / np.linalg.norm(g))
        u, state = tx.update(jax.grad(f)(x), state, x, value_fn=f)
        np.testing.assert_allclose(np.asarray(u), expect, rtol=1e-5)
        assert int(optimizers.oracle_counts(state)["grads"]) == n
        x = optax.apply_updates(x, u)
    assert int(optimizers.oracle_counts(state)["values"]) == 0


# ----------------------------------------------------------------------------- the optax first-order optimizers


def _grads(seed, n, d=4):
    return [jnp.asarray(g, jnp.float32) for g in np.random.default_rng(seed).standard_normal((n, d))]


def test_lion_update_is_sign_valued_of_magnitude_lr():
    """u = -lr sign(b1 m + (1 - b1) g), m <- b2 m + (1 - b2) g: every coordinate exactly +-lr."""
    lr, b1, b2 = 3e-4, 0.9, 0.99
    gs = _grads(1, 5)
    out = _steps("lion", lambda x, t: gs[t], jnp.zeros(4), 5, learning_rate=lr)
    m = np.zeros(4)
    for (u, _, _), g in zip(out, gs, strict=True):
        g = np.asarray(g, np.float64)
        np.testing.assert_array_equal(np.abs(np.asarray(u)), np.float32(lr))
        np.testing.assert_array_equal(np.sign(np.asarray(u)), -np.sign(b1 * m + (1 - b1) * g))
        m = b2 * m + (1 - b2) * g


def test_adamw_decay_is_decoupled():
    """AdamW's update is Adam's minus lr lambda x (Loshchilov and Hutter: the decay is not rescaled)."""
    lr, wd = 1e-2, 0.05
    x = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    g = _grads(2, 1)[0]
    u_w = optimizers.get("adamw", learning_rate=lr, weight_decay=wd).update(
        g, optimizers.get("adamw", learning_rate=lr, weight_decay=wd).init(x), x)[0]
    adam = optax.adam(*map(jnp.float32, (lr, 0.9, 0.999, 1e-8)))  # float32 hyperparameters, as optimizers.get's
    u_a = adam.update(g, adam.init(x), x)[0]
    np.testing.assert_allclose(np.asarray(u_w), np.asarray(u_a) - lr * wd * np.asarray(x), rtol=1e-6)


def _adam_like(gs, b1, b2, eps, kind):
    """numpy reference updates (lr = 1) of NAdam, AMSGrad, AdaBelief and RAdam, from their papers."""
    m = v = vmax = np.zeros_like(gs[0], np.float64)
    out = []
    for t, g in enumerate(gs, start=1):
        g = np.asarray(g, np.float64)
        m = b1 * m + (1 - b1) * g
        if kind == "adabelief":
            v = b2 * v + (1 - b2) * (g - m) ** 2 + 1e-16
        else:
            v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        if kind == "nadam":  # Dozat: the look-ahead moment b1 m_hat_t + (1 - b1) g_t / (1 - b1^t)
            out.append(-(b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)) / (np.sqrt(v_hat) + eps))
        elif kind == "amsgrad":  # the running maximum of v_hat in the denominator
            vmax = np.maximum(vmax, v_hat)
            out.append(-m_hat / (np.sqrt(vmax) + eps))
        elif kind == "adabelief":
            out.append(-m_hat / (np.sqrt(v_hat) + eps))
        elif kind == "radam":  # Liu et al. 2020, Algorithm 2, with optax's threshold 5
            rho_inf = 2 / (1 - b2) - 1
            rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
            if rho > 5:
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                out.append(-r * m_hat / (np.sqrt(v_hat) + eps))
            else:
                out.append(-m_hat)
    return out


@pytest.mark.parametrize("name,eps", [("nadam", 1e-8), ("amsgrad", 1e-8), ("adabelief", 1e-16), ("radam", 1e-8)])
def test_adam_variants_match_their_papers_update_rules(name, eps):
    """Eight steps on gradients whose size falls by 10x at step 4 (AMSGrad's max then matters) against numpy.

    RAdam's first steps (rho_t <= 5, here t <= 5) are momentum SGD, -lr m_hat, with no adaptive
    denominator: the paper's warm-up by rectification. Its later steps are checked to 1%: rho_t
    = rho_inf - 2 t b2^t / (1 - b2^t) is a difference of two numbers near rho_inf = 1999 in float32
    (1 - b2^t carries ~1e-5 relative error, times ~2000), so at t = 6, where rho_t - 4 ~ 2, the
    rectification r_t is off by ~0.5% in optax's float32 arithmetic.
    """
    gs = [g * (10.0 if t < 4 else 1.0) for t, g in enumerate(_grads(3, 8))]
    out = _steps(name, lambda x, t: gs[t], jnp.zeros(4), 8, learning_rate=1.0)
    ref = _adam_like(gs, 0.9, 0.999, eps, name)
    for t, ((u, _, _), r) in enumerate(zip(out, ref, strict=True)):
        rtol = 1e-2 if name == "radam" and t >= 5 else 2e-5
        np.testing.assert_allclose(np.asarray(u), r, rtol=rtol, atol=1e-6, err_msg=f"{name} step {t + 1}")


def test_adafactor_factored_moments_are_exact_for_rank_one_squares():
    """For g = u v^T, g^2 = (u^2)(v^2)^T is rank one and the row/column factorization reproduces it:
    the first step (beta2_1 = 0) is -lr g / |g| = -lr sign(g), of RMS 1 = d, so unclipped."""
    u, v = np.array([1.0, -2.0, 0.5]), np.array([3.0, 0.25, -1.0, 2.0])
    g = jnp.asarray(np.outer(u, v), jnp.float32)
    tx = optimizers.get("adafactor", learning_rate=0.1)
    x = jnp.zeros((3, 4))
    step, _ = tx.update(g, tx.init(x), x)
    np.testing.assert_allclose(np.asarray(step), -0.1 * np.sign(np.outer(u, v)), rtol=1e-5)


def test_schedule_free_x_is_the_average_of_the_z_iterates():
    """With a constant lr (weights lr^2) x_T = (z_1 + ... + z_T) / T, recovered from y as optax does."""
    tx = optimizers.get("schedule_free_adamw", learning_rate=0.05)
    y = jnp.asarray([1.0, -1.0, 2.0, 0.5])
    state, zs = tx.init(y), []
    for _ in range(6):
        u, state = tx.update(jax.grad(lambda p: jnp.sum(p**2))(y), state, y)
        y = optax.apply_updates(y, u)
        zs.append(np.asarray(state.inner_state.z, np.float64))
    x = optax.contrib.schedule_free_eval_params(state.inner_state, y)
    np.testing.assert_allclose(np.asarray(x), np.mean(zs, axis=0), rtol=1e-5)


def test_prodigy_step_scale_grows_from_its_initial_estimate_and_stays_below_the_distance():
    """Prodigy's d is non-decreasing from estim_lr0 = 1e-6 and, on a convex quadratic, stays a lower
    bound on D = |x_0 - x*| (Mishchenko and Defazio, Lemma 1) while growing by orders of magnitude."""
    x0 = jnp.asarray([3.0, -4.0, 0.0, 0.0, 0.0])  # x* = 0, D = 5
    out = _steps("prodigy", lambda x, t: jax.grad(_quadratic)(x), x0, 60)
    d = np.array([float(s.inner_state.estim_lr) for _, _, s in out])
    assert np.all(np.diff(d) >= 0) and d[0] >= np.float32(1e-6)
    assert 1e-2 < d[-1] <= 5.0, d[-1]


def test_muon_orthogonalizes_matrices_and_gives_other_leaves_adamw():
    """Muon's matrix step has g's singular vectors and singular values pushed towards 1 (Jordan's quintic
    Newton-Schulz lands them in about [0.7, 1.2]); a vector leaf gets AdamW's (Nesterov) step."""
    g = {"W": jnp.asarray(RNG.standard_normal((8, 4)), jnp.float32), "b": jnp.asarray([1.0, -2.0, 0.5])}
    x = jax.tree.map(jnp.zeros_like, g)
    tx = optimizers.get("muon", learning_rate=1.0)
    u, _ = tx.update(g, tx.init(x), x)
    uu, s, vt = np.linalg.svd(np.asarray(g["W"], np.float64), full_matrices=False)
    core = uu.T @ -np.asarray(u["W"], np.float64) @ vt.T  # diagonal when the singular vectors are g's
    np.testing.assert_allclose(core - np.diag(np.diag(core)), 0.0, atol=1e-4)
    assert np.all((np.diag(core) > 0.65) & (np.diag(core) < 1.25)), np.diag(core)
    assert s.max() / s.min() > 1.5  # so the flattening above is real
    adamw = optax.adamw(*map(jnp.float32, (1.0, 0.9, 0.999)), weight_decay=0.0, nesterov=True)
    np.testing.assert_allclose(np.asarray(u["b"]), np.asarray(adamw.update(g["b"], adamw.init(x["b"]), x["b"])[0]),
                               rtol=1e-6)


# ----------------------------------------------------------------------------- families


def test_every_optimizer_of_the_project_has_a_family():
    """Every optimizer registered by this package (a plug-in's may leave it out: the leaderboard says "other")."""
    from optimizers.base import _REGISTRY, FAMILIES

    ours = [n for n, (_, factory) in _REGISTRY.items() if factory.__module__.startswith("optimizers.")]
    missing = {n: optimizers.spec(n).family for n in ours if optimizers.spec(n).family not in FAMILIES}
    assert not missing, f"register these with family= one of {FAMILIES}: {missing}"
    with pytest.raises(ValueError, match="unknown family 'second-order'"):
        optimizers.register("_bad_family", optimizers.classics.sgd, family="second-order")


def test_leaderboard_groups_scores_by_family():
    """The score table: a family column, families in FAMILIES order ("other" last), best score first within."""
    import pandas as pd

    from bench.reports import leaderboard

    summary = pd.DataFrame({"score_cost": [0.2, 0.9, 0.5, 0.7, 0.1, 0.3]},
                           index=["sgd", "cubic_reg", "adam", "_gone", "perturbed_gd", "newton"])
    out = leaderboard.by_family(summary)
    assert list(out.index) == ["adam", "sgd", "perturbed_gd", "cubic_reg", "newton", "_gone"]
    assert list(out["family"]) == ["first-order"] * 2 + ["noise-injecting"] + ["Hessian-vector"] * 2 + ["other"]


def test_quick_suite_keeps_its_size_every_saddle_method_and_every_family():
    from bench import suites
    from optimizers.base import FAMILIES

    quick, full = suites.get("quick"), suites.get("full")
    names = quick.optimizer_names()
    assert len(names) == len(set(names)) == 15 and len(quick.cells()) <= 15 * 11
    assert set(names) <= set(optimizers.names())
    assert {"noisy_sgd", "sphere_noise_sgd", "perturbed_gd", "cubic_reg", "stochastic_cubic", "saddle_free_newton",
            "nc_descent"} <= set(names)
    assert {optimizers.spec(n).family for n in names} >= set(FAMILIES) - {"sub-sampled"}
    assert full.optimizer_names() == optimizers.names()
