"""Extreme Hessian eigenvalues (dense and Lanczos paths against numpy) and the degenerate-saddle probe."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from bench import landscape, schema


def _quadratic(a):
    a = jnp.asarray(a, jnp.float32)
    return lambda x: 0.5 * x @ (a @ x)


def test_dense_path_matches_numpy_on_a_random_quadratic():
    # f = x^T A x / 2 has Hessian A everywhere; dim 30 <= DENSE_MAX, so the Hessian is formed.
    rng = np.random.default_rng(0)
    m = rng.standard_normal((30, 30))
    a = (m + m.T) / 2
    ref = np.linalg.eigvalsh(a)
    lo, hi = jax.jit(lambda x: landscape.extreme_eigenvalues(_quadratic(a), x))(jnp.ones(30))
    # float32 eigvalsh of a matrix with entries O(1) and norm ~8: error ~ 30 * eps * |A| << 1e-4
    assert float(lo) == pytest.approx(ref[0], abs=1e-4)
    assert float(hi) == pytest.approx(ref[-1], abs=1e-4)


def test_lanczos_path_matches_numpy_on_isolated_extremes():
    # dim 200 > DENSE_MAX: Lanczos, 20 iterations. Spectrum: -1 and 5 isolated, the rest in
    # [0, 1] in a random basis. Kaniel-Paige: after k = 20 steps the error in lambda_max is at
    # most (lambda_max - lambda_min) (tan(v0, u_max) / T_19(1 + 2 gamma))^2 with
    # gamma = (5 - 1) / (1 + 1) = 2, T_19(5) ~ 1e18, tan^2 ~ dim = 200: far below float32
    # rounding, so the float32 Lanczos error (~1e-6 relative) is what the 1e-4 covers; the
    # same for lambda_min (gamma = 1 / 6, T_19(4/3) ~ 1e7).
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    eig = np.concatenate([[-1.0, 5.0], rng.uniform(0.0, 1.0, 198)])
    a = (q * eig) @ q.T
    assert 200 > landscape.DENSE_MAX
    lo, hi = jax.jit(lambda x: landscape.extreme_eigenvalues(_quadratic(a), x))(jnp.ones(200))
    assert float(lo) == pytest.approx(-1.0, abs=1e-4)
    assert float(hi) == pytest.approx(5.0, abs=1e-4)


def test_paths_agree_on_a_pytree_of_parameters():
    # the same 12-parameter point as a dict of two arrays: dense (default) and Lanczos (k = 12)
    def f(p):
        x = jnp.concatenate([p["a"].ravel(), p["b"]])
        return jnp.sum(jnp.sin(x) * x**2) + jnp.prod(x[:3])

    p = {"a": jnp.linspace(-1.0, 1.0, 8).reshape(2, 4), "b": jnp.asarray([0.3, -0.7, 1.1, 2.0])}
    dense = jax.jit(lambda q: landscape.extreme_eigenvalues(f, q))(p)
    lanczos = jax.jit(lambda q: landscape.extreme_eigenvalues(f, q, k=12))(p)
    np.testing.assert_allclose(np.asarray(dense), np.asarray(lanczos), atol=1e-4)


# --- the degenerate-saddle probe ---------------------------------------------------------------

R_MAX = max(landscape.PROBE_RADII)  # the probe's largest radius at points with rms(x) <= 1

DEEP3 = "deep_linear(depth=3,width=4,d_in=4,d_out=4,n_samples=32,teacher_rank=2)"


def _zeros(p):
    return jax.tree.map(jnp.zeros_like, p.init(jax.random.key(0)))


def _stalled_status(f_value, end):
    """The status of a run stalled (gradient 1e-6, target never reached) at an end point."""
    one = lambda v: np.asarray([float(v)])  # noqa: E731
    return schema.classify(one(f_value), one(1e-6), np.asarray([False]), one(end.lambda_min), one(end.lambda_max),
                           -np.inf, probe_drop=one(end.probe_drop))[0]


def _probe(f, x):
    return jax.jit(lambda q: landscape.end_point_probe(f, q))(x)


def test_degenerate_saddle_origin_descends_along_the_cubic_direction():
    # x^2 + y^3 + y^4 at 0: Hessian diag(2, 0), f(0, -r) = -r^3 + r^4. The probe's best point
    # is its largest radius on the null eigenvector: drop r^3 - r^4 = 9e-4 at r = 0.1.
    p = problems.get("degenerate_saddle")
    end = _probe(p.full_loss, jnp.zeros(2))
    assert float(end.lambda_min) == 0.0 and float(end.lambda_max) == pytest.approx(2.0)
    assert float(end.probe_drop) == pytest.approx(R_MAX**3 - R_MAX**4, rel=1e-4)
    assert _stalled_status(0.0, end) == "stalled_at_degenerate_saddle"


def test_slow_approach_to_the_degenerate_saddle_is_not_a_minimum():
    # gradient descent from y > 0 nears the origin like y ~ 1 / (3 lr t): at y = 6.7e-4 (lr 0.1,
    # 5000 steps) the Hessian diag(2, 6y) is positive definite and the gradient 3y^2 ~ 1e-6, yet
    # f keeps falling past the origin: at r = 0.1, f(0, y - r) - f(0, y) ~ -(r - y)^3.
    p = problems.get("degenerate_saddle")
    y = 6.7e-4
    end = _probe(p.full_loss, jnp.asarray([0.0, y]))
    assert float(end.lambda_min) == pytest.approx(6 * y + 12 * y**2, rel=1e-3)
    assert float(end.probe_drop) == pytest.approx((R_MAX - y) ** 3 - (R_MAX - y) ** 4 + y**3 + y**4, rel=1e-3)
    assert _stalled_status(y**3 + y**4, end) == "stalled_at_degenerate_saddle"


def test_monkey_saddle_origin_descends():
    # x^3 - 3xy^2 + (x^2+y^2)^2 = r^3 cos 3t + r^4: Hessian 0 at the origin; the best drop at
    # radius r is r^3 - r^4 (cos 3t = -1), which the power steps find from random directions.
    p = problems.get("monkey_saddle")
    end = _probe(p.full_loss, jnp.zeros(2))
    assert float(end.lambda_min) == 0.0 and float(end.lambda_max) == 0.0
    best = R_MAX**3 - R_MAX**4
    assert 0.5 * best < float(end.probe_drop) <= best * (1 + 1e-5)
    assert _stalled_status(0.0, end) == "stalled_at_degenerate_saddle"


@pytest.mark.parametrize("name, dense, data", [
    (DEEP3, True, (4, 4, 32, 2)),
    ("deep_linear", False, (8, 8, 128, 4)),  # the defaults: d_in, d_out, n_samples, teacher_rank
])
def test_deep_linear_origin_is_a_degenerate_saddle(name, dense, data):
    # depth 3: the loss is 1/2 tr S_yy - tr(W_3 W_2 W_1 S_xy) + 1/2 tr(W S_xx W^T), so the Hessian
    # at 0 is exactly 0 and the cubic term decides. A random direction sees a small part of it
    # (the cubic form lives on products across the three layers); the power steps climb towards
    # its maximum sigma_max(S_yx) / 3^(3/2) (~0.5 here), so the drop at r = 0.1 clears the
    # round-off allowance 1e-5 |f| (f(0) ~ 4.5) several times over. 48 parameters: dense Hessian;
    # the default (8 x 8, 192 parameters): Lanczos, which breaks down at once on H = 0 and leaves
    # the whole space to the random directions.
    from problems.deep_linear import deep_linear_data, deep_linear_moments

    x_data, y_data, _ = deep_linear_data(*data, s_max=3.0, s_ratio=0.5, noise=0.0, instance=0)
    sigma = np.linalg.svd(deep_linear_moments(x_data, y_data)[1], compute_uv=False)[0]
    p = problems.get(name)
    assert (p.dim <= landscape.DENSE_MAX) == dense
    x = _zeros(p)
    end = _probe(p.full_loss, x)
    f0 = float(p.full_loss(x))
    assert float(end.lambda_min) == 0.0 and float(end.lambda_max) == 0.0
    assert float(end.probe_drop) > 3 * schema.PROBE_RTOL * f0
    assert float(end.probe_drop) <= sigma / 3**1.5 * R_MAX**3 + 1e-6  # the cubic form's maximum (+ round-off)
    assert _stalled_status(f0, end) == "stalled_at_degenerate_saddle"


def test_strict_saddle_origin_stays_a_strict_saddle():
    # x^2 + y^4/4 - y^2/2 at 0: Hessian diag(2, -1). The probe discounts the negative curvature
    # (-r^2/2 along y), so its drop is only what is left, -r^4/4 < 0; the label comes from lambda_min.
    p = problems.get("strict_saddle")
    end = _probe(p.full_loss, jnp.zeros(2))
    assert float(end.lambda_min) == pytest.approx(-1.0)
    assert float(end.probe_drop) <= 0.0
    assert _stalled_status(0.0, end) == "stalled_at_saddle"


@pytest.mark.parametrize(
    "case, f, x",
    [
        # Hessian diag(2, 2): a strict minimum, f(0, 1) = -1/4
        ("strict minimum", lambda x: x[0] ** 2 + 0.25 * x[1] ** 4 - 0.5 * x[1] ** 2, [0.0, 1.0]),
        # Hessian diag(2, 0) at 0 but a quartic valley: a degenerate minimum, no descent
        ("degenerate minimum", lambda x: x[0] ** 2 + x[1] ** 4, [0.0, 0.0]),
        # on the way down that valley (gradient 4y^3 = 5e-4 <= GRAD_TOL): convex along every
        # line, so never below the tangent plane however far the probe looks
        ("quartic valley, stalled", lambda x: x[0] ** 2 + x[1] ** 4, [0.0, 0.05]),
        # Rosenbrock's minimum (1, ..., 1): lambda_min / lambda_max ~ 3e-4, nearly singular
        ("rosenbrock minimum", problems.get("rosenbrock(dim=5)").full_loss, [1.0] * 5),
    ],
)
def test_minima_show_no_descent(case, f, x):
    x = jnp.asarray(x, jnp.float32)
    end = _probe(f, x)
    assert float(end.lambda_min) >= 0.0
    assert float(end.probe_drop) <= schema.PROBE_RTOL * abs(float(f(x)))
    assert _stalled_status(f(x), end) == "stalled_at_minimum"


def test_round_off_is_not_descent():
    # (c + y)^2 - 2 c y - y^2 + x^2 = c^2 + x^2: flat in y, but float32 evaluates it through
    # terms of c^2 = 1e6, each off by up to ~0.06 (eps32 c^2 / 2): the probe's "drops" along y
    # are that round-off, far under 1e-5 |f| = 10.
    c = 1e3

    def f(x):
        return (c + x[1]) ** 2 - 2 * c * x[1] - x[1] ** 2 + x[0] ** 2

    end = _probe(f, jnp.zeros(2))
    assert 0.0 < float(end.probe_drop) < 1.0
    assert _stalled_status(c * c, end) == "stalled_at_minimum"


@pytest.mark.parametrize("name", ["rosenbrock(dim=5)", "deep_linear"])
def test_probe_reports_the_same_eigenvalue_bits(name):
    # end_point_probe's eigenvalues are extreme_eigenvalues', bit for bit (dense and Lanczos)
    p = problems.get(name)
    x = p.init(jax.random.key(3))
    lo, hi = jax.jit(lambda q: landscape.extreme_eigenvalues(p.full_loss, q))(x)
    end = _probe(p.full_loss, x)
    assert np.asarray(end.lambda_min) == np.asarray(lo) and np.asarray(end.lambda_max) == np.asarray(hi)


def test_end_points_of_a_batch_keep_its_axes():
    # the cell's landscape program on (H, S) = (2, 3) end points of the degenerate saddle (one
    # padded CHUNK): three near the origin (degenerate saddles), three at the minimum (0, -3/4),
    # Hessian diag(2, 9/4), where the probe finds no descent.
    p = problems.get("degenerate_saddle")
    pts = jnp.asarray([[[0.0, 0.0], [0.0, -0.75], [0.0, 0.0]], [[0.0, -0.75], [1e-3, 0.0], [0.0, -0.75]]])
    end = landscape.end_points(p, pts)
    assert all(np.shape(v) == (2, 3) for v in end)
    at_origin = np.asarray([[1, 0, 1], [0, 1, 0]], bool)
    assert (end.probe_drop[at_origin] > 1e-4).all()
    assert (end.probe_drop[~at_origin] <= schema.PROBE_RTOL * abs(p.reference.f_star)).all()
    np.testing.assert_allclose(end.lambda_min[~at_origin], 2.0, rtol=1e-5)


def test_curvature_index_dense_and_lanczos_against_numpy():
    # Eigenvalues -3, -2, -1 (index 3), positive ones in [1, 3], an isolated lambda_max = 5
    # (Lanczos's extremes converge fast when isolated) and -1e-4, below the index threshold
    # EIG_TOL max(1, |lambda_max|) = 5e-3 in magnitude, so not counted. Dim 41 is dense; 80 goes
    # through Lanczos (20 steps), whose negative Ritz values are as many as the 3 isolated
    # negative eigenvalues.
    rng = np.random.default_rng(1)
    for n in (41, 80):
        lam = np.concatenate([[-3.0, -2.0, -1.0, -1e-4], np.linspace(1.0, 3.0, n - 5), [5.0]])
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        a = (q * lam) @ q.T
        c = jax.jit(lambda x, a=a: landscape.curvature(_quadratic(a), x, schema.EIG_TOL))(jnp.ones(n))
        assert int(c.index) == 3
        assert float(c.lambda_min) == pytest.approx(-3.0, abs=1e-3)
        assert float(c.lambda_max) == pytest.approx(5.0, abs=1e-3)


def test_curvature_flag_records_the_way_and_keeps_the_trajectory():
    # saddle_nd(dim=10, index=3) from within 1e-3 of its saddle: Hessian diag(-1 x3, +1 x7) there
    # (curvatures 1), index 3 at step 0; gradient descent ends at a minimum (index 0, lambda_min
    # = 2 neg_curvature = 2). The flag only measures: the losses are the same bits without it.
    import bench

    name = "saddle_nd(dim=10,index=3)"
    kw = dict(hparams={"learning_rate": 0.2}, seeds=2, steps=200, log_every=20)
    df = bench.run_cell(name, "sgd", curvature=True, **kw)
    start, end = df[df.step == 0], df[df.step == 200]
    assert (start[schema.HESSIAN_INDEX] == 3).all() and (end[schema.HESSIAN_INDEX] == 0).all()
    np.testing.assert_allclose(start[schema.LAMBDA_MIN], -1.0, atol=1e-5)
    np.testing.assert_allclose(end[schema.LAMBDA_MIN], 1.0, atol=1e-3)
    plain = bench.run_cell(name, "sgd", **kw)
    assert np.array_equal(df[schema.LOSS].to_numpy(), plain[schema.LOSS].to_numpy())
    assert schema.LAMBDA_MIN not in plain
