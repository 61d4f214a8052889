"""The two-layer ReLU teacher-student network of Safran and Shamir 2018.

Safran and Shamir, "Spurious Local Minima are Common in Two-Layer ReLU Neural Networks",
ICML 2018. The teacher has k hidden units v_i = e_i in R^d with d = k; the student has n units
w_j (the rows of W); all output weights are fixed to 1. With x ~ N(0, I_d) the population loss
is

    F(W) = 1/2 E[(sum_j [w_j.x]_+ - sum_i [v_i.x]_+)^2]
         = 1/2 sum_{j,j'} g(w_j, w_j') - sum_{j,i} g(w_j, v_i) + 1/2 sum_{i,i'} g(v_i, v_i'),

    g(w, v) = E[[w.x]_+ [v.x]_+] = |w||v| (sin t + (pi - t) cos t) / (2 pi),

t the angle between w and v (Cho and Saul 2009). g(w, w) = |w|^2/2 and, for the orthonormal
teacher, the teacher-teacher term is k/2 + k(k-1)/(2 pi). The gradient of g in w is
(|v| sin t w/|w| + (pi - t) v)/(2 pi), finite and continuous also where w and v are parallel;
it is supplied as a custom JVP (automatic differentiation of arccos would blow up there); at
w = 0, where F is not differentiable, the same formula gives the finite value v/4.

The global minimum is F = 0, at W = V up to a permutation of the student units (n = k). Safran
and Shamir prove (computer-assisted) that spurious local minima exist for 6 <= k = n <= 20, and
observe that gradient descent from Xavier initialization ends in one of them with a probability
that grows with k, and that mildly over-parametrizing the student (n > k) lowers it sharply.
This is the family's point: a landscape whose bad local minima, not saddles, are what stops
first-order methods.

The student is a flax nnx module (Xavier-uniform kernel, no bias); ``params`` is the pure dict of
its ``nnx.Param`` state, and the losses re-assemble it with ``nnx.merge``. ``full_loss`` is the
closed form above; ``loss(params, key)`` is the mean of 1/2 (student(x) - teacher(x))^2 over
``batch_size`` fresh Gaussian inputs drawn from ``key``: an unbiased estimate of ``full_loss``.

Reference: f* = 0 (closed form). The target 1e-4 lies well below the spurious minima: plain
gradient descent on ``full_loss`` (step 0.1, 10^4 steps, 40 Xavier inits, float32) stalled at
F = 0.0215 for k = 8 (10% of runs), F = 0.0165 to 0.045 for k = 12 (48%) and F = 0.032 to 0.042
for k = 20 (85%), and otherwise reached |F| < 2e-6 (the float32 floor of the closed form). So
``full_loss <= 1e-4`` means the global minimum was found.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from problems.base import Reference, make

F_TARGET = 1e-4


def _safe_norm(x):
    """|x| along the last axis, with a finite (zero) derivative at x = 0."""
    sq = jnp.sum(x * x, axis=-1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _angle_terms(a, b):
    na, nb = _safe_norm(a), _safe_norm(b)
    dot = jnp.sum(a * b, axis=-1)
    prod = na * nb
    cos = dot / jnp.where(prod > 0, prod, 1.0)
    # Stay a hair inside [-1, 1]: arccos' is infinite at +-1 and the tangent rule below is
    # differentiated again for Hessian-vector products. The value error this causes is O(t^3).
    eps = jnp.finfo(cos.dtype).eps
    cos = jnp.clip(cos, -1.0 + eps, 1.0 - eps)
    t = jnp.arccos(cos)
    return na, nb, cos, t, jnp.sin(t)


@jax.custom_jvp
def relu_pair_expectation(a, b):
    """E[[a.x]_+ [b.x]_+] for x ~ N(0, I), rows of a and b paired (broadcast over leading axes)."""
    na, nb, cos, t, sin = _angle_terms(a, b)
    return na * nb * (sin + (jnp.pi - t) * cos) / (2.0 * jnp.pi)


@relu_pair_expectation.defjvp
def _relu_pair_expectation_jvp(primals, tangents):
    a, b = primals
    da, db = tangents
    na, nb, cos, t, sin = _angle_terms(a, b)
    value = na * nb * (sin + (jnp.pi - t) * cos) / (2.0 * jnp.pi)
    a_hat = a / jnp.where(na > 0, na, 1.0)[..., None]
    b_hat = b / jnp.where(nb > 0, nb, 1.0)[..., None]
    grad_a = (nb * sin)[..., None] * a_hat + (jnp.pi - t)[..., None] * b
    grad_b = (na * sin)[..., None] * b_hat + (jnp.pi - t)[..., None] * a
    tangent = (jnp.sum(grad_a * da, axis=-1) + jnp.sum(grad_b * db, axis=-1)) / (2.0 * jnp.pi)
    return value, tangent


def xavier_uniform(key, shape, dtype=jnp.float32):
    """Glorot/Xavier uniform, U(-a, a) with a = sqrt(6/(fan_in + fan_out)), for a (d_in, d_out) kernel.

    Bit-identical to ``nnx.initializers.xavier_uniform()`` but drawn as a flat vector and
    reshaped: XLA on CPU compiles threefry for shapes with a small trailing axis several times
    more slowly (seconds per benchmark cell) than for the same numbers drawn flat.
    """
    fan_in, fan_out = shape
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, (fan_in * fan_out,), dtype, -limit, limit).reshape(shape)


class Student(nnx.Module):
    """sum_j [w_j.x]_+ : n ReLU units on R^d, output weights fixed to 1."""

    def __init__(self, d: int, n: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(d, n, use_bias=False, kernel_init=xavier_uniform, rngs=rngs)

    @property
    def weights(self):
        """W with the student units w_j as rows, shape (n, d)."""
        return self.hidden.kernel[...].T

    def __call__(self, x):
        return jnp.sum(jax.nn.relu(self.hidden(x)), axis=-1)


def teacher_output(x):
    """sum_i [e_i.x]_+ : the teacher with v_i = e_i, d = k."""
    return jnp.sum(jax.nn.relu(x), axis=-1)


def population_loss(w, k: int):
    """F(W) in closed form, W of shape (n, d = k), teacher V = I_k."""
    n = w.shape[0]
    iu, ju = np.triu_indices(n, k=1)
    # Student-student: the diagonal g(w, w) = |w|^2/2 directly, off-diagonal pairs once each
    # (never a vector paired with itself, where the angle is degenerate).
    ss = 0.5 * jnp.sum(w * w) + 2.0 * jnp.sum(relu_pair_expectation(w[iu], w[ju]))
    v = jnp.eye(k, dtype=w.dtype)
    st = jnp.sum(relu_pair_expectation(w[:, None, :], v[None, :, :]))
    tt = k / 2.0 + k * (k - 1) / (2.0 * math.pi)
    return 0.5 * ss - st + 0.5 * tt


def relu_teacher(k: int = 10, n: int | None = None, batch_size: int = 256):
    """Safran-Shamir teacher-student ReLU net: k teacher units e_i in R^k, n student units (None: n = k)."""
    if k < 1:
        raise ValueError(f"relu_teacher: k must be >= 1, got {k}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"relu_teacher: n must be an integer >= 1 (or None for n = k), got {n!r}")
    if batch_size < 1:
        raise ValueError(f"relu_teacher: batch_size must be >= 1, got {batch_size}")
    n_student = k if n is None else n
    d = k

    graphdef, template = nnx.split(
        nnx.eval_shape(lambda: Student(d, n_student, rngs=nnx.Rngs(0))), nnx.Param
    )

    def module(params) -> Student:
        state = jax.tree.map(lambda x: x, template)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    def init(key):
        return nnx.to_pure_dict(nnx.state(Student(d, n_student, rngs=nnx.Rngs(params=key)), nnx.Param))

    def full_loss(params):
        return population_loss(module(params).weights, k)

    def loss(params, key):
        student = module(params)
        # Drawn flat and reshaped: same numbers, much faster XLA compile (see xavier_uniform).
        x = jax.random.normal(key, (batch_size * d,), student.hidden.kernel[...].dtype).reshape(batch_size, d)
        return 0.5 * jnp.mean((student(x) - teacher_output(x)) ** 2)

    return make(
        dim=d * n_student,
        init=init,
        full_loss=full_loss,
        loss=loss,
        reference=Reference(
            f_star=0.0,
            f_target=F_TARGET,
            source=(
                "closed form: F = 0 at W = V (student units = teacher units e_i); target 1e-4 lies "
                "below the spurious local minima (Safran and Shamir 2018; F >= 0.016 in our GD runs)"
            ),
            extra={"teacher_self_term": k / 2.0 + k * (k - 1) / (2.0 * math.pi)},
        ),
    )
