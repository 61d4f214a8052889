"""Deep linear networks: f* against an independent reduced-rank regression, Hessians at 0, inits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree

import problems
from problems.deep_linear import deep_linear_data, end_to_end

SMALL = {"d_in": 5, "d_out": 4, "n_samples": 32}


def _data(p):
    q = p.params
    x, y, _ = deep_linear_data(q["d_in"], q["d_out"], q["n_samples"], q["teacher_rank"], q["s_max"],
                               q["s_ratio"], q["noise"], q["instance"])
    return x.astype(np.float64), y.astype(np.float64)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 2, "widths": (2,), "teacher_rank": 3, "noise": 0.1},  # bottleneck below the teacher
        {"depth": 3, "widths": (6, 3), "teacher_rank": 4},  # bottleneck 3 < teacher rank 4, no noise
        {"depth": 3, "width": 6, "teacher_rank": 2, "noise": 0.05},  # wide enough: f* = noise floor
    ],
)
def test_f_star_is_reduced_rank_regression(kwargs):
    p = problems.get("deep_linear", **SMALL, **kwargs)
    x, y = _data(p)
    n = x.shape[0]
    r = min(SMALL["d_in"], SMALL["d_out"], *(kwargs.get("widths") or [kwargs.get("width", 8)]))
    # Independently: least squares, then the best rank-r approximation of the fitted values
    # (Eckart-Young), which is the rank-r regression optimum because X has full column rank.
    beta = scipy.linalg.lstsq(x, y)[0]
    fitted = x @ beta
    _, sv, vt = np.linalg.svd(fitted, full_matrices=False)
    proj = vt[:r].T @ vt[:r]
    f_star = np.sum((y - fitted @ proj) ** 2) / (2 * n)
    assert p.reference.f_star == pytest.approx(f_star, rel=1e-9, abs=1e-12)
    assert p.reference.extra["rank"] == r
    tr_yy = np.sum(y * y) / n
    assert p.reference.extra["saddle_value"] == pytest.approx(tr_yy / 2, rel=1e-12)
    for k in range(1, r):  # plateau k: the top k modes learned
        assert p.reference.extra[f"plateau_{k}"] == pytest.approx(0.5 * (tr_yy - np.sum(sv[:k] ** 2) / n))
    # The rank-r solution W_r = (beta proj)^T, split over the layers through [I_r; 0] embeddings,
    # attains f* and is a critical point of the network loss.
    w1 = vt[:r] @ beta.T  # r x d_in
    dims = [SMALL["d_in"], *(kwargs.get("widths") or [kwargs["width"]] * (kwargs["depth"] - 1)),
            SMALL["d_out"]]
    embed = [np.eye(h, r) for h in dims[1:-1]]
    layers = [embed[0] @ w1] + [embed[l] @ embed[l - 1].T for l in range(1, len(embed))]
    layers.append(vt[:r].T @ embed[-1].T)
    params = tuple(jnp.asarray(w, jnp.float32) for w in layers)
    np.testing.assert_allclose(np.asarray(end_to_end(params)), (beta @ proj).T, atol=1e-5)
    value, grad = jax.jit(jax.value_and_grad(p.full_loss))(params)
    assert float(value) == pytest.approx(f_star, rel=1e-4, abs=1e-6 * tr_yy)
    assert max(float(jnp.max(jnp.abs(g))) for g in grad) <= 1e-5 * (1 + tr_yy)
    assert p.reference.f_target == pytest.approx(f_star + 1e-4 * (tr_yy / 2 - f_star))


def _hessian_at(p, point):
    flat, unravel = ravel_pytree(point)
    with jax.enable_x64(True):
        flat = jnp.asarray(flat, jnp.float64)
        h = jax.jit(jax.hessian(lambda z: p.full_loss(unravel(z))))(flat)
        return np.asarray(h, np.float64)


def test_depth2_origin_hessian_has_eigenvalues_plus_minus_singular_values_of_s_yx():
    width = 3
    p = problems.get("deep_linear", depth=2, width=width, noise=0.1, **SMALL)
    x, y = _data(p)
    s_yx = y.T @ x / x.shape[0]
    sv = np.linalg.svd(s_yx, compute_uv=False)
    (saddle,) = p.saddles
    eigs = np.linalg.eigvalsh(_hessian_at(p, saddle.point))
    # Per hidden unit the Hessian block is [[0, -S_yx], [-S_xy, 0]]: +-sigma_i, and |d_in - d_out| zeros.
    n_zero = width * abs(SMALL["d_in"] - SMALL["d_out"])
    expected = np.sort(np.concatenate([np.repeat(sv, width), -np.repeat(sv, width), np.zeros(n_zero)]))
    np.testing.assert_allclose(eigs, expected, atol=1e-9)
    assert saddle.index == int(np.sum(eigs < -1e-9)) == width * min(SMALL["d_in"], SMALL["d_out"])
    assert saddle.value == pytest.approx(0.5 * np.sum(y * y) / x.shape[0], rel=1e-12)


def test_depth3_origin_hessian_is_exactly_zero():
    p = problems.get("deep_linear", depth=3, width=3, **SMALL)
    (saddle,) = p.saddles
    assert saddle.index is None
    assert np.all(_hessian_at(p, saddle.point) == 0.0)


def test_depth1_is_linear_regression_without_saddles():
    p = problems.get("deep_linear", depth=1, **SMALL)
    assert p.saddles == () and p.dim == SMALL["d_in"] * SMALL["d_out"]
    assert p.reference.f_star == pytest.approx(0.0, abs=1e-12)  # no noise, full rank


@pytest.mark.parametrize("init", ["balanced", "aligned", "orthogonal"])
def test_structured_inits(init):
    scale = 0.7
    p = problems.get("deep_linear", depth=4, widths=(6, 3, 5), init=init, init_scale=scale, **SMALL)
    batch = jax.jit(jax.vmap(p.init))(jax.random.split(jax.random.key(0), 2))
    for seed in range(2):
        ws = [np.asarray(w[seed], np.float64) for w in batch]
        assert [w.shape for w in ws] == [(6, 5), (3, 6), (5, 3), (4, 5)]
        if init == "orthogonal":
            for w in ws:
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                np.testing.assert_allclose(gram, scale**2 * np.eye(min(w.shape)), atol=1e-5)
            continue
        # Balancedness (Saxe et al. 2014): W_{l+1}^T W_{l+1} = W_l W_l^T.
        for lower, upper in zip(ws[:-1], ws[1:], strict=True):
            np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, atol=1e-5)
        product = ws[3] @ ws[2] @ ws[1] @ ws[0]
        # Rank r = 3 (the bottleneck), all r singular values init_scale^D: a scaled partial isometry.
        np.testing.assert_allclose(np.linalg.svd(product, compute_uv=False), [scale**4] * 3 + [0.0], atol=1e-5)
        if init == "aligned":  # init_scale^D U_r V_r^T of S_yx, r = 3
            x, y = _data(p)
            u, _, vt = np.linalg.svd(y.T @ x / x.shape[0])
            np.testing.assert_allclose(product, scale**4 * u[:, :3] @ vt[:3], atol=1e-5)
    if init == "aligned":  # only the hidden frames are random: the end-to-end map is the same
        np.testing.assert_allclose(np.asarray(end_to_end(jax.tree.map(lambda w: w[0], batch))),
                                   np.asarray(end_to_end(jax.tree.map(lambda w: w[1], batch))), atol=1e-6)


def test_minibatch_option_makes_the_problem_stochastic():
    # Unbiasedness of the mini-batch loss is checked in test_shared (its EXTRA case).
    assert problems.get("deep_linear", batch_size=8, **SMALL).stochastic
    assert not problems.get("deep_linear", **SMALL).stochastic


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 0},
        {"depth": 3, "widths": (4,)},
        {"depth": 2, "widths": (0,)},
        {"width": 0},
        {"n_samples": 3},
        {"teacher_rank": 5},
        {"teacher_rank": 0},
        {"s_ratio": 1.5},
        {"s_max": 0.0},
        {"noise": -0.1},
        {"init": "xavier"},
        {"init_scale": 0.0},
        {"batch_size": 33},
        {"instance": -1},
    ],
)
def test_invalid_values_raise(kwargs):
    with pytest.raises(ValueError, match="deep_linear"):
        problems.get("deep_linear", **{**SMALL, **kwargs})
