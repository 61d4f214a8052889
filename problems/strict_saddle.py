"""The two-dimensional strict saddle f(x, y) = x^2 + y^4/4 - y^2/2.

Critical points: the origin, a strict saddle with Hessian diag(2, -1) and f = 0, and the two
global minima (0, +-1) with f* = -1/4 and Hessian diag(2, 2). Gradient descent started on the
x-axis (y = 0) converges to the saddle; any perturbation in y escapes it. A standard example
of Ge et al. 2015 and Jin et al. 2017.
"""

import jax.numpy as jnp

from problems.base import Reference, Saddle, make, uniform_box_init


def strict_saddle_value(params):
    x, y = params[0], params[1]
    return x**2 + 0.25 * y**4 - 0.5 * y**2


def strict_saddle(init_radius: float = 1.0):
    """Strict saddle x^2 + y^4/4 - y^2/2: saddle at 0, minima (0, +-1), f* = -1/4."""
    if not init_radius > 0:
        raise ValueError(f"strict_saddle: init_radius must be > 0, got {init_radius}")

    return make(
        dim=2,
        init=uniform_box_init(2, -init_radius, init_radius),
        full_loss=strict_saddle_value,
        reference=Reference(
            f_star=-0.25,
            f_target=-0.25 + 1e-4,
            source="closed form: minima (0, +-1), f* = -1/4",
            extra={"saddle_value": 0.0},
        ),
        saddles=(Saddle(point=jnp.zeros(2, jnp.float32), value=0.0, index=1, name="origin"),),
    )
