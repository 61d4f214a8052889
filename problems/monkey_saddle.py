"""A monkey saddle made bounded below by a quartic: f(x, y) = x^3 - 3 x y^2 + (x^2 + y^2)^2.

In polar coordinates f = r^3 cos(3 t) + r^4. The origin is a degenerate critical point (gradient
and Hessian both vanish; the cubic has three descending valleys, the "monkey saddle") with f = 0.
The only other critical points are the three global minima at r = 3/4, cos(3 t) = -1, i.e.
(-3/4, 0) and (3/8, +-3 sqrt(3)/8), with f* = -(3/4)^3 + (3/4)^4 = -27/256. Gradient descent
started on one of the three ridges t = 0, 2 pi / 3, 4 pi / 3 converges to the origin, and only at
rate O(1/t) because the saddle is degenerate; started near a ridge it stalls there for a long time.
A standard example of a saddle that second-order (Hessian) information cannot see
(e.g. Anandkumar and Ge 2016, "Efficient approaches for escaping higher order saddle points").
"""

import jax.numpy as jnp

from problems.base import Reference, Saddle, make, relative_target, uniform_box_init

MONKEY_SADDLE_F_STAR = -27.0 / 256.0


def monkey_saddle_value(params):
    x, y = params[0], params[1]
    return x**3 - 3.0 * x * y**2 + (x**2 + y**2) ** 2


def monkey_saddle(init_radius: float = 1.0):
    """Bounded monkey saddle x^3 - 3xy^2 + (x^2+y^2)^2: degenerate saddle at 0, f* = -27/256."""
    if not init_radius > 0:
        raise ValueError(f"monkey_saddle: init_radius must be > 0, got {init_radius}")

    return make(
        dim=2,
        init=uniform_box_init(2, -init_radius, init_radius),
        full_loss=monkey_saddle_value,
        reference=Reference(
            f_star=MONKEY_SADDLE_F_STAR,
            f_target=relative_target(MONKEY_SADDLE_F_STAR, 0.0),
            source=(
                "closed form: f = r^3 cos 3t + r^4 is minimal at cos 3t = -1, r = 3/4, f* = -27/256; "
                "target f* + 1e-4 (f(0) - f*)"
            ),
            extra={"saddle_value": 0.0},
        ),
        # The Hessian at 0 is the zero matrix: no Morse index.
        saddles=(Saddle(point=jnp.zeros(2, jnp.float32), value=0.0, index=None, name="origin"),),
    )
