"""An n-dimensional strict saddle with chosen index and curvatures.

    f(x) = 1/2 sum_i lambda_i x_i^2 + 1/4 sum_i x_i^4,   x in R^dim,
    lambda_i = -neg_curvature for i < index,  lambda_i = +pos_curvature otherwise.

The function separates over coordinates. Its critical points are x_i in {0, +-sqrt(-lambda_i)}
for the negative directions and x_i = 0 for the positive ones. The origin is a strict saddle of
Morse index `index` with Hessian diag(lambda) and f = 0; the 2^index global minima
x_i = +-sqrt(neg_curvature) (i < index) have f* = -index neg_curvature^2 / 4 and Hessian
eigenvalues 2 neg_curvature (i < index) and pos_curvature. The critical point with m of the
negative coordinates at 0 and the rest at a minimum is a saddle of index m with value
-(index - m) neg_curvature^2 / 4. This is the separable quartic model behind the saddle-escape
analyses of Ge et al. 2015 ("Escaping From Saddle Points") and Jin et al. 2017 ("How to Escape
Saddle Points Efficiently"): gradient descent leaves the origin at rate (1 + eta neg_curvature)
per step along the negative directions, while pos_curvature sets the conditioning.

The initialization is uniform in the cube of half-width init_radius around the origin; it is
small by default so that every run starts at the saddle and the benchmark measures escape.
"""

import functools

import jax.numpy as jnp

from problems.base import Reference, Saddle, make, relative_target, uniform_box_init


def saddle_nd_curvatures(dim: int, index: int, neg_curvature: float, pos_curvature: float):
    """The diagonal Hessian at the origin, lambda (float32, shape (dim,))."""
    return jnp.asarray([-neg_curvature] * index + [pos_curvature] * (dim - index), jnp.float32)


def saddle_nd_value(params, lam):
    x = params
    return 0.5 * jnp.sum(lam * x**2) + 0.25 * jnp.sum(x**4)


def saddle_nd(
    dim: int = 10,
    index: int = 1,
    neg_curvature: float = 1.0,
    pos_curvature: float = 1.0,
    init_radius: float = 1e-3,
):
    """Separable quartic with a strict saddle of chosen index at 0; f* = -index neg_curvature^2/4."""
    if dim < 1:
        raise ValueError(f"saddle_nd: dim must be >= 1, got {dim}")
    if not 1 <= index <= dim:
        raise ValueError(f"saddle_nd: index must be in [1, dim={dim}], got {index}")
    for pname, value in (
        ("neg_curvature", neg_curvature),
        ("pos_curvature", pos_curvature),
        ("init_radius", init_radius),
    ):
        if not value > 0:
            raise ValueError(f"saddle_nd: {pname} must be > 0, got {value}")
    lam = saddle_nd_curvatures(dim, index, neg_curvature, pos_curvature)
    f_star = -index * neg_curvature**2 / 4.0

    return make(
        dim=dim,
        init=uniform_box_init(dim, -init_radius, init_radius),
        full_loss=functools.partial(saddle_nd_value, lam=lam),
        reference=Reference(
            f_star=f_star,
            f_target=relative_target(f_star, 0.0),
            source=(
                "closed form: minima x_i = +-sqrt(neg_curvature) on the index negative directions, "
                "f* = -index neg_curvature^2 / 4; target f* + 1e-4 (f(0) - f*)"
            ),
            extra={"saddle_value": 0.0},
        ),
        saddles=(Saddle(point=jnp.zeros(dim, jnp.float32), value=0.0, index=index, name="origin"),),
    )
