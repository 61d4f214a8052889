"""ReLU networks: the Safran-Shamir closed form against Monte Carlo, and the MLP against numpy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import problems
from problems.relu_mlp import lecun_normal, load_dataset
from problems.relu_teacher import population_loss, relu_pair_expectation, xavier_uniform

MC_SAMPLES = 400_000
Z = 5.0  # Monte Carlo tolerance in standard errors


def np_pair_expectation(a, b):
    """numpy float64 closed form of E[[a.x]_+ [b.x]_+], for reference."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    t = np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))
    return na * nb * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi)


def np_population_loss(w, k):
    v = np.eye(k)
    g = lambda a, b: np_pair_expectation(a, b)
    ss = sum(g(a, b) for a in w for b in w)
    st = sum(g(a, b) for a in w for b in v)
    tt = sum(g(a, b) for a in v for b in v)
    return 0.5 * ss - st + 0.5 * tt


def teacher_kernel(params):
    return np.asarray(params["hidden"]["kernel"], np.float64).T  # rows are the student units


def test_pair_expectation_against_monte_carlo_and_special_angles():
    rng = np.random.default_rng(0)
    d = 5
    x = rng.standard_normal((MC_SAMPLES, d))
    base = rng.standard_normal(d)
    pairs = [
        (rng.standard_normal(d), rng.standard_normal(d)),
        (base, 2.0 * base + 1e-3 * rng.standard_normal(d)),  # nearly parallel
        (base, -0.5 * base + 0.3 * rng.standard_normal(d)),  # obtuse
    ]
    pair = jax.jit(relu_pair_expectation)
    for a, b in pairs:
        prod = np.maximum(x @ a, 0) * np.maximum(x @ b, 0)
        se = prod.std() / math.sqrt(MC_SAMPLES)
        got = float(pair(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))
        assert abs(got - prod.mean()) < Z * se, (got, prod.mean(), se)
        assert got == pytest.approx(np_pair_expectation(a, b), rel=1e-5)
    e = jnp.eye(3)
    w = jnp.array([0.3, -1.2, 2.0])
    assert float(pair(e[0], e[1])) == pytest.approx(1 / (2 * np.pi), rel=1e-6)
    assert float(pair(w, w)) == pytest.approx(float(w @ w) / 2, rel=1e-6)
    assert float(pair(w, -w)) == pytest.approx(0.0, abs=1e-6)
    assert float(pair(jnp.zeros(3), w)) == 0.0


def test_pair_gradient_is_finite_and_correct_at_degenerate_points():
    g = jax.jit(jax.grad(relu_pair_expectation, argnums=(0, 1)))
    w = jnp.array([0.3, -1.2, 2.0])
    v = jnp.array([1.0, 0.5, 0.0])
    for a, b in [(w, 2 * w), (w, -w), (jnp.zeros(3), v), (w, w)]:
        ga, gb = g(a, b)
        assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
    # Parallel vectors (t = 0): grad_a = (|b| sin t a/|a| + (pi - t) b)/(2 pi) = b/2, and grad_b = a/2.
    ga, gb = g(w, 2 * w)
    np.testing.assert_allclose(ga, w, rtol=1e-5)
    np.testing.assert_allclose(gb, w / 2, rtol=1e-5)
    # Hessian-vector products stay finite at parallel pairs too (second-order methods use them).
    def hvp(x, t):
        return jax.jvp(jax.grad(lambda a: relu_pair_expectation(a, 2 * x)), (x,), (t,))[1]

    assert np.all(np.isfinite(jax.jit(hvp)(w, v)))


def test_population_loss_zero_at_teacher():
    k = 6
    prob = problems.get("relu_teacher", k=k)
    f = jax.jit(prob.full_loss)
    teacher = {"hidden": {"kernel": jnp.eye(k)}}
    assert float(f(teacher)) == pytest.approx(0.0, abs=1e-5)
    grad = jax.jit(jax.grad(prob.full_loss))(teacher)["hidden"]["kernel"]
    assert float(jnp.max(jnp.abs(grad))) < 1e-5
    # Any permutation of the student units is also a global minimum.
    perm = {"hidden": {"kernel": jnp.eye(k)[:, ::-1]}}
    assert float(f(perm)) == pytest.approx(0.0, abs=1e-5)
    assert prob.reference.f_star == 0.0 and prob.reference.f_target == 1e-4


@pytest.mark.parametrize("k,n", [(4, 4), (3, 5)])
def test_population_loss_matches_monte_carlo(k, n):
    prob = problems.get("relu_teacher", k=k, n=n)
    params = jax.jit(prob.init)(jax.random.key(k * 10 + n))
    w = teacher_kernel(params)
    assert w.shape == (n, k)
    x = np.random.default_rng(1).standard_normal((MC_SAMPLES, k))
    sq = 0.5 * (np.maximum(x @ w.T, 0).sum(1) - np.maximum(x, 0).sum(1)) ** 2
    se = sq.std() / math.sqrt(MC_SAMPLES)
    closed = float(jax.jit(prob.full_loss)(params))
    assert abs(closed - sq.mean()) < Z * se, (closed, sq.mean(), se)
    assert closed == pytest.approx(np_population_loss(w, k), rel=1e-4)
    assert float(jax.jit(population_loss, static_argnums=1)(jnp.asarray(w, jnp.float32), k)) == pytest.approx(
        closed, rel=1e-6
    )


def test_population_gradient_against_finite_differences_float64_reference():
    # Near-parallel student units (where the custom JVP matters) and one nearly zero unit.
    k = 4
    rng = np.random.default_rng(3)
    w = np.eye(k) + 0.05 * rng.standard_normal((k, k))
    w[1] = 1.5 * w[0] + 1e-2 * rng.standard_normal(k)
    w[3] *= 1e-2
    prob = problems.get("relu_teacher", k=k)
    params = {"hidden": {"kernel": jnp.asarray(w.T, jnp.float32)}}
    grad = np.asarray(jax.jit(jax.grad(prob.full_loss))(params)["hidden"]["kernel"]).T
    h = 1e-6
    fd = np.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        e = np.zeros_like(w)
        e[idx] = h
        fd[idx] = (np_population_loss(w + e, k) - np_population_loss(w - e, k)) / (2 * h)
    np.testing.assert_allclose(grad, fd, atol=2e-4, rtol=1e-3)


def assert_unbiased(prob, init_seed, loss_seed, draws=4000):
    """Mean of ``draws`` mini-batch losses at one init is within Z standard errors of full_loss."""
    params = jax.jit(prob.init)(jax.random.key(init_seed))
    keys = jax.random.split(jax.random.key(loss_seed), draws)
    samples = np.asarray(jax.jit(jax.vmap(prob.loss, (None, 0)))(params, keys), np.float64)
    se = samples.std() / math.sqrt(samples.size)
    assert abs(samples.mean() - float(jax.jit(prob.full_loss)(params))) < Z * se


def test_teacher_minibatch_loss_is_unbiased():
    prob = problems.get("relu_teacher", k=5, batch_size=64)
    assert prob.stochastic
    assert_unbiased(prob, init_seed=0, loss_seed=1)


def test_teacher_init_is_xavier_and_vmappable():
    k, n = 6, 8
    prob = problems.get("relu_teacher", k=k, n=n)
    keys = jax.random.split(jax.random.key(0), 3)
    init = jax.jit(prob.init)
    batched = jax.jit(jax.vmap(prob.init))(keys)
    for i in range(3):
        np.testing.assert_array_equal(batched["hidden"]["kernel"][i], init(keys[i])["hidden"]["kernel"])
    kernel = batched["hidden"]["kernel"]
    assert kernel.shape == (3, k, n) and prob.dim == k * n
    assert float(jnp.max(jnp.abs(kernel))) <= math.sqrt(6 / (k + n))
    assert prob.name == "relu_teacher(k=6,n=8,batch_size=256)"
    assert problems.get(prob.name) is prob


def test_flat_initializers_are_bit_identical_to_flax():
    # The flat draws exist only to speed up compilation; the numbers must be flax's own.
    shape = (6, 5)

    def both(key):
        ours = (xavier_uniform(key, shape), lecun_normal(key, shape))
        inits = (nnx.initializers.xavier_uniform(), nnx.initializers.lecun_normal())
        return ours, tuple(init(key, shape) for init in inits)

    ours, flax_init = jax.jit(both)(jax.random.key(7))
    for a, b in zip(ours, flax_init, strict=True):
        np.testing.assert_array_equal(a, b)


def test_teacher_bad_parameters_raise():
    with pytest.raises(ValueError, match="k must be"):
        problems.get("relu_teacher", k=0)
    with pytest.raises(ValueError, match="n must be"):
        problems.get("relu_teacher", n=0)
    with pytest.raises(ValueError, match="batch_size"):
        problems.get("relu_teacher", batch_size=0)


def np_mlp_loss(params, x, y, weight_decay):
    layers = [params["layers"][i] for i in sorted(params["layers"])]
    h = x.astype(np.float64)
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    z = h - h.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    ce = -logp[np.arange(len(y)), y].mean()
    penalty = sum((np.asarray(layer["kernel"], np.float64) ** 2).sum() for layer in layers)
    return ce + 0.5 * weight_decay * penalty


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(dataset="iris", width=7, depth=3, weight_decay=1e-3),
        dict(dataset="breast_cancer", depth=1),
    ],
)
def test_mlp_full_loss_matches_numpy_forward_pass(kwargs):
    prob = problems.get("relu_mlp", **kwargs)
    x, y, n_classes = load_dataset(prob.params["dataset"])
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    params = jax.jit(prob.init)(jax.random.key(0))
    want = np_mlp_loss(params, x, y, prob.params["weight_decay"])
    assert float(jax.jit(prob.full_loss)(params)) == pytest.approx(want, rel=1e-5)
    sizes = [x.shape[1]] + [prob.params["width"]] * prob.params["depth"] + [n_classes]
    assert prob.dim == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    assert prob.reference.f_star == 0.0 and prob.reference.f_target == 0.01


def test_mlp_digits_shape_and_minibatch_unbiased():
    x, y, n_classes = load_dataset("digits")
    assert x.shape == (1797, 64) and n_classes == 10 and set(np.unique(y)) == set(range(10))
    prob = problems.get("relu_mlp", dataset="iris", batch_size=16)
    assert_unbiased(prob, init_seed=2, loss_seed=3)


def test_mlp_bad_parameters_raise():
    with pytest.raises(ValueError, match="unknown dataset"):
        problems.get("relu_mlp", dataset="mnist")
    with pytest.raises(ValueError, match="depth"):
        problems.get("relu_mlp", depth=0)
    with pytest.raises(ValueError, match="weight_decay"):
        problems.get("relu_mlp", weight_decay=-1.0)
