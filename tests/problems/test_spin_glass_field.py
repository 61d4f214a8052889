"""The spin glass's local field T.s^{p-1}: its matmul order (large tensors) against the chain order
(small tensors, the numbers stored cells carry) and against numpy float64.

Float32 rounding bounds. Worst case (Higham, "Accuracy and Stability of Numerical Algorithms",
2002, eq. 3.5): a sum of K float32 products computed in any order has |fl(v) - v| <= gamma_{K+2}
sum |terms|, gamma_m = m u / (1 - m u), u = 2^-24 (the products' own roundings inside the K + 2);
the field's check uses it elementwise, the terms' absolute sum from numpy. The loss, gradient and
HVP pass the field through O(1) more operations per entry, and the loss cancels (its value is
~1/sqrt(K) of its absolute terms), where the worst case is too loose to tell a wrong result; they
use the probabilistic bound of Higham and Mary ("A new approach to probabilistic rounding error
analysis", SIAM J. Sci. Comput. 41(5), 2019, Thm 2.4): lambda sqrt(K) u sum |terms|, exceeded with
probability at most 2 exp(-lambda^2 (1-u)^2 / 2) per entry; lambda = 8 makes that 3e-14. Both
bounds are ~1000x the typical error at K = 16384, so the loss, gradient and HVP are also held to the
chain order's own error against float64 (a factor 10 and 4 ulps of the absolute terms' scale).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import problems
from problems.spin_glass import (
    FIELD_GEMM_MIN_ENTRIES,
    _chart_functions,
    _energy,
    field_block_rows,
    local_field,
    radial_curvature,
    symmetrize,
)

U = 2.0**-24
CHAIN = math.inf  # gemm_min_entries that keeps the chain order at every size

# the smallest sizes on the matmul side of the switch (p = 3: 128^2 = 16384; p = 4: 26^3 = 17576)
SIZES = [(3, 128), (4, 26)]


def _einsum_field(t, s):
    """T.s^{p-1} by numpy einsum (any dtype)."""
    p = t.ndim
    letters = "abcd"[:p]
    return np.einsum(f"{letters}," + ",".join(letters[1:]) + f"->{letters[0]}", t, *([s] * (p - 1)))


@pytest.mark.parametrize("p,n", SIZES)
def test_sizes_straddle_the_switch(p, n):
    assert n ** (p - 1) >= FIELD_GEMM_MIN_ENTRIES > (n - 1) ** (p - 1)


@pytest.mark.parametrize("p,n", SIZES)
def test_field_within_float32_bound_in_both_orders(p, n):
    prob = problems.get("spin_glass", p=p, n=n, instance=2)
    t32 = prob.constants
    t64 = np.asarray(t32, np.float64)
    rng = np.random.default_rng(0)
    s = rng.standard_normal((4, n)).astype(np.float32)
    k = n ** (p - 1)
    gamma = (k + 2) * U / (1 - (k + 2) * U)
    errors = {}
    for order, threshold in (("matmul", None), ("chain", CHAIN)):
        got = np.asarray(jax.jit(jax.vmap(local_field(t32, threshold)))(jnp.asarray(s)), np.float64)
        errors[order] = []
        for row, si in zip(got, s.astype(np.float64)):
            exact = _einsum_field(t64, si)
            absolute = _einsum_field(np.abs(t64), np.abs(si))
            assert np.all(np.abs(row - exact) <= gamma * absolute), order
            errors[order].append((np.max(np.abs(row - exact)), np.max(absolute)))
    # sharper: as accurate as the chain order, to a factor 10 plus 4 ulps of the absolute terms (module doc)
    for (e_new, scale), (e_old, _) in zip(errors["matmul"], errors["chain"]):
        assert e_new <= 10 * e_old + 4 * U * scale, (e_new, e_old)


def _reference(t, w, v, p, n):
    """numpy float64 (loss, gradient, HVP) of the loss at |w| = 1 (problems/spin_glass.py's doc):
    F = N^{p/2-1} T[w^p], grad = P grad F, Hv = P grad^2 F P v - (w.grad F) P v + c_r w (w.v); and the
    same expressions over absolute values (|T|, |w|, |v|, |P| <= I + |w||w|^T, every sign +), which
    bound the sum of the absolute terms that each float32 result rounds (Higham's running bound)."""
    c = n ** (p / 2 - 1)
    letters = "abcd"[:p]

    def parts(t, w, v, sign):
        egrad = p * c * _einsum_field(t, w)
        ehess = p * (p - 1) * c * np.einsum(f"{letters}," + ",".join(letters[2:]) + f"->{letters[:2]}", t,
                                            *([w] * (p - 2)))
        proj = np.eye(n) + sign * np.outer(w, w)
        hv = proj @ ehess @ proj @ v + sign * (w @ egrad) * (proj @ v) + radial_curvature(p) * w * (w @ v)
        return c * _einsum_field(t, w) @ w, proj @ egrad, hv

    return parts(t, w, v, -1.0), parts(np.abs(t), np.abs(w), np.abs(v), 1.0)


@pytest.mark.parametrize("p,n", SIZES)
def test_loss_gradient_hvp_within_float32_bound_in_both_orders(p, n):
    prob = problems.get("spin_glass", p=p, n=n, instance=1)
    chain = _chart_functions(p, n, lambda t: _energy(t, gemm_min_entries=CHAIN))(prob.constants)
    t64 = np.asarray(prob.constants, np.float64)
    keys = jax.random.split(jax.random.key(3), 3)
    w = jax.vmap(prob.init)(keys)
    v = jax.random.normal(jax.random.key(4), w.shape)

    def evaluate(f, w, v):
        g = jax.vmap(jax.value_and_grad(f))(w)
        h = jax.vmap(lambda x, d: jax.jvp(jax.grad(f), (x,), (d,))[1])(w, v)
        return (*g, h)

    # both orders in one program: one compile
    both = jax.jit(lambda w, v: (evaluate(prob.full_loss, w, v), evaluate(chain["full_loss"], w, v)))
    new, old = ([np.asarray(a, np.float64) for a in out] for out in both(w, v))
    # K products per field entry, plus the chart's O(1) roundings per entry (retraction, scaling,
    # projection, the HVP's three terms): 16 more is generous; lambda = 8 (module doc)
    k = n ** (p - 1) + 16
    gamma = 8.0 * math.sqrt(k) * U
    w64, v64 = np.asarray(w, np.float64), np.asarray(v, np.float64)
    for i in range(len(w64)):
        ref, absolute = _reference(t64, w64[i] / np.linalg.norm(w64[i]), v64[i], p, n)
        for name, a, b, r, bound in zip(("loss", "gradient", "hvp"), new, old, ref, absolute):
            assert np.all(np.abs(a[i] - r) <= gamma * bound), ("matmul order", name)
            assert np.all(np.abs(b[i] - r) <= gamma * bound), ("chain order", name)
            if name != "loss":  # a wrong contraction is off by the quantity itself; the bound is far below
                assert np.max(gamma * bound) < 0.1 * np.max(np.abs(r)), name  # (a random start's energy ~ 0)
            # sharper (the bound above is ~1000x the typical error): both orders round the same K terms,
            # in another order, so their errors are alike; the matmul order's may be 10x the chain's
            # (the order of the suite's numbers until now) plus 4 ulps of the absolute terms' scale
            err_new, err_old = np.max(np.abs(a[i] - r)), np.max(np.abs(b[i] - r))
            assert err_new <= 10 * err_old + 4 * U * np.max(bound), (name, err_new, err_old)


def test_small_sizes_keep_the_chain_bitwise():
    # the quick suite's spin_glass(p=3,n=30) and the pinned n=10 cell: the chain order, same bits
    for n in (10, 30):
        prob = problems.get("spin_glass", p=3, n=n, instance=0)
        chain = _chart_functions(3, n, lambda t: _energy(t, gemm_min_entries=CHAIN))(prob.constants)
        w = jax.vmap(prob.init)(jax.random.split(jax.random.key(0), 4))
        a, b = jax.jit(lambda w, f=prob.full_loss, g=chain["full_loss"]: (
            jax.vmap(jax.value_and_grad(f))(w), jax.vmap(jax.value_and_grad(g))(w)))(w)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# The blocked order (p = 3 at GEMM sizes, vmapped batches on the CPU): at a tiny size with every
# switch forced (GEMM from 1 entry, blocked from 1 point, chunks of 3 points, blocks of 4 rows), a
# batch of 7 points runs as 3 chunks (the last padded) of 3 blocks each.
TINY = {"gemm_min_entries": 1, "min_points": 1, "chunk_points": 3, "block_rows": 4}


def _tiny_case(n=12, points=7):
    rng = np.random.default_rng(5)
    t = symmetrize(rng.standard_normal((n,) * 3)).astype(np.float32)
    s = rng.standard_normal((points, n)).astype(np.float32)
    ds = rng.standard_normal((points, n)).astype(np.float32)
    return t, s, ds


def _bound(k):
    return (k + 2) * U / (1 - (k + 2) * U)  # Higham's gamma_{K+2} (module doc)


def test_blocked_rows_divide_n():
    assert field_block_rows(200) == 10 and field_block_rows(128) == 8 and field_block_rows(131) == 1
    assert field_block_rows(12, 4) == 4 and field_block_rows(12, 5) == 4


def test_blocked_field_and_tangent_within_float32_bound():
    assert jax.default_backend() == "cpu"  # the blocked order is the CPU's
    t, s, ds = _tiny_case()
    n = t.shape[0]
    field = local_field(jnp.asarray(t), **TINY)
    # blocked: the batch's fields come from a lax.map over chunks (a scan), not one vmapped matmul
    assert "scan" in str(jax.make_jaxpr(jax.vmap(field))(s))
    assert "scan" in str(jax.make_jaxpr(jax.vmap(lambda a, b: jax.jvp(field, (a,), (b,))))(s, ds))
    v, dv = jax.jit(jax.vmap(lambda a, b: jax.jvp(field, (a,), (b,))))(s, ds)
    t64, s64, d64 = (np.asarray(x, np.float64) for x in (t, s, ds))
    exact = np.einsum("ijk,bj,bk->bi", t64, s64, s64)
    absolute = np.einsum("ijk,bj,bk->bi", np.abs(t64), np.abs(s64), np.abs(s64))
    d_exact = 2 * np.einsum("ijk,bj,bk->bi", t64, s64, d64)
    d_absolute = 2 * np.einsum("ijk,bj,bk->bi", np.abs(t64), np.abs(s64), np.abs(d64))
    gamma = _bound(n * n)
    assert np.all(np.abs(np.asarray(v, np.float64) - exact) <= gamma * absolute)
    assert np.all(np.abs(np.asarray(dv, np.float64) - d_exact) <= gamma * d_absolute)
    # the value alone (the gradient's path) is the jvp's value, and each point's is the one-point
    # field's to rounding (the one-point field is the GEMM order)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(field))(s)), np.asarray(v))
    one = np.stack([np.asarray(field(jnp.asarray(x))) for x in s])
    assert np.all(np.abs(one - exact) <= gamma * absolute)


def test_blocked_field_under_jacfwd_nested_vmap_and_hessian():
    t, s, ds = _tiny_case()
    t64, s64 = np.asarray(t, np.float64), np.asarray(s, np.float64)
    field = local_field(jnp.asarray(t), **TINY)
    gamma = _bound(t.shape[0] ** 2)
    scale = np.abs(t64).sum(axis=(1, 2)).max() * np.abs(s64).max() * 2
    # one point, a batch of tangents: the Jacobian 2 T.s
    jac = np.asarray(jax.jacfwd(field)(s[0]), np.float64)
    np.testing.assert_allclose(jac, 2 * np.einsum("ijk,j->ik", t64, s64[0]), rtol=0, atol=gamma * scale)
    # a batch of batches (the runner's hyperparameter x seed vmaps) equals the flat batch's values
    nested = jax.jit(jax.vmap(jax.vmap(field)))(np.stack([s, s[::-1]]))
    flat = np.einsum("ijk,bj,bk->bi", t64, s64, s64)
    absolute = np.einsum("ijk,bj,bk->bi", np.abs(t64), np.abs(s64), np.abs(s64))
    assert np.all(np.abs(np.asarray(nested[0], np.float64) - flat) <= gamma * absolute)
    assert np.all(np.abs(np.asarray(nested[1], np.float64) - flat[::-1]) <= gamma * absolute[::-1])
    # the energy's dense Hessian (jacfwd of its custom gradient) at a batch of points: 6 T.s
    energy = _energy(jnp.asarray(t), **TINY)
    hess = np.asarray(jax.jit(jax.vmap(jax.hessian(energy)))(s), np.float64)
    np.testing.assert_allclose(hess, 6 * np.einsum("ijk,bk->bij", t64, s64), rtol=0, atol=3 * gamma * scale)


def test_blocked_field_below_min_points_is_the_gemm_order():
    # 7 points, below min_points: vmap of the GEMM order (no chunk loop), its matmul kept in the
    # orientation plain vmap gives it at n = 200 (problems/spin_glass.py: _batched_p3's gemm_batch);
    # XLA may orient a tiny one either way, so the check is rounding, against numpy float64
    t, s, ds = _tiny_case()
    blocked = local_field(jnp.asarray(t), **{**TINY, "min_points": 8})
    assert "scan" not in str(jax.make_jaxpr(jax.vmap(blocked))(s))
    assert "scan" not in str(jax.make_jaxpr(jax.vmap(lambda a, b: jax.jvp(blocked, (a,), (b,))))(s, ds))
    v, dv = jax.jit(jax.vmap(lambda a, b: jax.jvp(blocked, (a,), (b,))))(s, ds)
    t64, s64, d64 = (np.asarray(x, np.float64) for x in (t, s, ds))
    gamma = _bound(t.shape[0] ** 2)
    exact = np.einsum("ijk,bj,bk->bi", t64, s64, s64)
    absolute = np.einsum("ijk,bj,bk->bi", np.abs(t64), np.abs(s64), np.abs(s64))
    d_exact = 2 * np.einsum("ijk,bj,bk->bi", t64, s64, d64)
    d_absolute = 2 * np.einsum("ijk,bj,bk->bi", np.abs(t64), np.abs(s64), np.abs(d64))
    assert np.all(np.abs(np.asarray(v, np.float64) - exact) <= gamma * absolute)
    assert np.all(np.abs(np.asarray(dv, np.float64) - d_exact) <= gamma * d_absolute)


def test_problem_loss_gradient_hvp_blocked_at_n128():
    # spin_glass(p=3, n=128): a 64-point batch takes the blocked order (FIELD_BLOCKED_MIN_POINTS);
    # against numpy float64 on 4 of the points, with the bound of the test above (lambda = 8)
    p, n = 3, 128
    prob = problems.get("spin_glass", p=p, n=n, instance=1)
    w = jax.vmap(prob.init)(jax.random.split(jax.random.key(3), 64))
    v = jax.random.normal(jax.random.key(4), w.shape)
    f = prob.full_loss
    assert "scan" in str(jax.make_jaxpr(jax.vmap(jax.grad(f)))(w))  # the blocked order
    loss, grad = jax.jit(jax.vmap(jax.value_and_grad(f)))(w)
    hvp = jax.jit(jax.vmap(lambda x, d: jax.jvp(jax.grad(f), (x,), (d,))[1]))(w, v)
    t64 = np.asarray(prob.constants, np.float64)
    gamma = 8.0 * math.sqrt(n ** (p - 1) + 16) * U
    w64, v64 = np.asarray(w, np.float64), np.asarray(v, np.float64)
    for i in (0, 21, 42, 63):
        ref, absolute = _reference(t64, w64[i] / np.linalg.norm(w64[i]), v64[i], p, n)
        for name, a, r, bound in zip(("loss", "gradient", "hvp"), (loss, grad, hvp), ref, absolute):
            assert np.all(np.abs(np.asarray(a[i], np.float64) - r) <= gamma * bound), (name, i)
            if name != "loss":
                assert np.max(gamma * bound) < 0.1 * np.max(np.abs(r)), name
