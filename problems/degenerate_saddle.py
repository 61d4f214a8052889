"""A degenerate saddle: f(x, y) = x^2 + y^3 + y^4.

Critical points: grad f = (2x, y^2 (3 + 4y)) vanishes at the origin and at (0, -3/4). The origin
has f = 0 and Hessian diag(2, 0): no negative eigenvalue, yet it is not a minimum (f = y^3 < 0 for
small y < 0), so second-order conditions cannot detect it. (0, -3/4) is the global minimum,
f* = -27/64 + 81/256 = -27/256, Hessian diag(2, 9/4). Gradient descent started with y > 0 creeps
towards the origin at rate O(1/t) (y' = -3 y^2) and never leaves; started with y < 0 it escapes,
slowly at first. The textbook example of a saddle that is not strict (Ge et al. 2015, "Escaping
From Saddle Points", Section 1; Jin et al. 2017).
"""

import jax.numpy as jnp

from problems.base import Reference, Saddle, make, relative_target, uniform_box_init

DEGENERATE_SADDLE_F_STAR = -27.0 / 256.0


def degenerate_saddle_value(params):
    x, y = params[0], params[1]
    return x**2 + y**3 + y**4


def degenerate_saddle(init_radius: float = 1.0):
    """Degenerate saddle x^2 + y^3 + y^4: Hessian diag(2, 0) at 0, f* = -27/256 at (0, -3/4)."""
    if not init_radius > 0:
        raise ValueError(f"degenerate_saddle: init_radius must be > 0, got {init_radius}")

    return make(
        dim=2,
        init=uniform_box_init(2, -init_radius, init_radius),
        full_loss=degenerate_saddle_value,
        reference=Reference(
            f_star=DEGENERATE_SADDLE_F_STAR,
            f_target=relative_target(DEGENERATE_SADDLE_F_STAR, 0.0),
            source=(
                "closed form: minimum (0, -3/4), f* = -27/256; target f* + 1e-4 (f(0) - f*)"
            ),
            extra={"saddle_value": 0.0},
        ),
        # Hessian diag(2, 0): degenerate, so no Morse index.
        saddles=(Saddle(point=jnp.zeros(2, jnp.float32), value=0.0, index=None, name="origin"),),
    )
