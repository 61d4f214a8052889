"""The n-dimensional Rosenbrock function (the chained form of Shang and Qiu 2006).

    f(x) = sum_{i=1}^{n-1} [ 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 ]

Global minimum f* = 0 at x = (1, ..., 1). For 4 <= n <= 7 there is one more local minimum near
(-1, 1, ..., 1) (Shang and Qiu 2006, "A Note on the Extended Rosenbrock Function"). The long
curved valley is the classic plateau for first-order methods.
"""

import jax.numpy as jnp

from problems.base import Reference, make, uniform_box_init


def rosenbrock_value(params):
    x = params
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock(dim: int = 2, init_low: float = -2.0, init_high: float = 2.0):
    """Rosenbrock in `dim` dimensions: f* = 0 at (1, ..., 1)."""
    if dim < 2:
        raise ValueError(f"rosenbrock: dim must be >= 2, got {dim}")
    if not init_low < init_high:
        raise ValueError(f"rosenbrock: need init_low < init_high, got {init_low}, {init_high}")

    return make(
        dim=dim,
        init=uniform_box_init(dim, init_low, init_high),
        full_loss=rosenbrock_value,
        reference=Reference(
            f_star=0.0,
            f_target=1e-4,
            source="closed form: minimum at (1, ..., 1), f* = 0",
        ),
    )
