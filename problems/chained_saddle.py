"""The chained-saddle ("octopus") function of Du, Jin, Lee, Jordan, Poczos and Singh 2017.

S. S. Du et al., "Gradient Descent Can Take Exponential Time to Escape Saddle Points",
NeurIPS 2017 (arXiv:1705.10412), Section 4. With constants tau, L, gamma > 0, the splines

    g1(a) = -gamma a^2 + (-14 L + 10 gamma) (a - tau)^3 / (3 tau) + (5 L - 3 gamma) (a - tau)^4 / (2 tau^2)
    g2(a) = -gamma - 10 (L + gamma) (a - 2 tau)^3 / tau^3 - 15 (L + gamma) (a - 2 tau)^4 / tau^4
            - 6 (L + gamma) (a - 2 tau)^5 / tau^5
    nu    = -g1(2 tau) + 4 L tau^2 = (13 gamma + 37 L) tau^2 / 6

glue quadratics along a tube of boxes. Writing a_j = |x_j| (the paper's mirroring, which turns
the tube into the "octopus" and makes every saddle an interior point), on the paper's domain
(a_1..a_{i-1} in [2 tau, 6 tau], a_{i+1}..a_d in [0, tau]):

    a_i <= tau:          f = sum_{j<i} L (a_j - 4 tau)^2 - gamma a_i^2 + sum_{j>i} L a_j^2 - (i-1) nu
    tau < a_i <= 2 tau:  f = sum_{j<i} L (a_j - 4 tau)^2 + g1(a_i) + g2(a_i) a_{i+1}^2
                             + sum_{j>i+1} L a_j^2 - (i-1) nu
    all a_j > 2 tau:     f = sum_j L (a_j - 4 tau)^2 - d nu

(the paper's equations (6)-(10); terms with an index beyond d are absent). Critical points: the d saddles
s_k = (4 tau, ..., 4 tau, 0, ..., 0) with k leading entries 4 tau (k = 0..d-1), f(s_k) = -k nu,
Hessian diag(2L (k times), -2 gamma, 2L, ..., 2L) (index 1); and the 2^d global minima
|x_j| = 4 tau, f* = -d nu. Gradient descent with step 1/(4L) from the paper's initialization
(uniform in [-1, 1]^d, inside the first box because tau = e > 1) visits s_0, s_1, ... in turn;
each escape takes a constant factor longer than the previous one, because while coordinate k
is being escaped every later coordinate contracts by (1 - 2 L eta) per step (measured at d = 5:
escapes after ~9, ~45, ~240 further steps). In float32 those coordinates, halved every step,
underflow to exactly 0 after ~150 steps, and GD then sits on s_3 for good: an exact stall at a
strict saddle, which perturbed or adaptive methods escape. The paper's choices tau = e, L = e,
gamma = 1 and its initialization are the defaults; init_radius sets the cube [-r, r]^d.

Outside the tube the paper only invokes Whitney's extension theorem. Here the function is
extended explicitly: g2(a) a_{i+1}^2 equals (1 - S) L a_{i+1}^2 + S (-gamma a_{i+1}^2) with S the
quintic smoothstep S(t) = 10 t^3 - 15 t^4 + 6 t^5 at t = (a - tau) / tau, so the middle branch is
written as g1(a_i) + (1 - S) L sum_{j>i} a_j^2 + S F_{i+1}(a_{i+1}, ..., a_d), with F_{i+1} the same
construction started at coordinate i+1. On the paper's domain this is exactly (6)-(10); on all of
R^d it is C^2 and piecewise polynomial, and the global minimum is still -d nu: by induction
F_i >= -(d-i+1) nu, since the first branch is >= -gamma tau^2 > -nu, the middle one is
>= g1(a_i) - (d-i) nu >= 4 L tau^2 - nu - (d-i) nu (g1 decreases on [tau, 2 tau] for all
L, gamma > 0, as g1'(a) = -2 gamma tau (1-t)^2 (3t+1) - L tau t^2 (14 - 10 t)), and the last one
is L (a_i - 4 tau)^2 - nu + F_{i+1}. The extension may have critical points of its own outside
the tube; they are not analysed here.
"""

import functools
import math

import jax.numpy as jnp

from problems.base import RELATIVE_TARGET_TAU, Reference, Saddle, make, uniform_box_init


def chained_saddle_nu(tau: float, L: float, gamma: float) -> float:
    """nu = -g1(2 tau) + 4 L tau^2 = (13 gamma + 37 L) tau^2 / 6: the drop in f from saddle to saddle."""
    return (13.0 * gamma + 37.0 * L) * tau**2 / 6.0


def chained_saddle_value(params, tau: float, L: float, gamma: float):
    a = jnp.abs(params)
    a2 = a * a
    nu = chained_saddle_nu(tau, L, gamma)
    q = jnp.cumsum(a2[::-1])[::-1] - a2  # q_i = sum_{j>i} a_j^2
    g1 = (
        -gamma * a2
        + (-14.0 * L + 10.0 * gamma) / (3.0 * tau) * (a - tau) ** 3
        + (5.0 * L - 3.0 * gamma) / (2.0 * tau**2) * (a - tau) ** 4
    )
    t = jnp.clip((a - tau) / tau, 0.0, 1.0)
    s = t**3 * (10.0 - 15.0 * t + 6.0 * t**2)
    # Each branch is affine in the tail F_{i+1}: F_i = alpha_i + beta_i F_{i+1}, F_{d+1} = 0, so
    # F_1 = sum_i alpha_i prod_{j<i} beta_j. Vectorized over coordinates rather than unrolled, and
    # the prefix products taken as a masked (d, d) product (no division, exact at beta = 0), which
    # compiles faster than an unrolled loop or cumprod, Hessians included.
    low = a <= tau
    high = a > 2.0 * tau
    alpha = jnp.where(
        low, -gamma * a2 + L * q, jnp.where(high, L * (a - 4.0 * tau) ** 2 - nu, g1 + (1.0 - s) * L * q)
    )
    beta = jnp.where(low, 0.0, jnp.where(high, 1.0, s))
    strictly_before = jnp.tril(jnp.ones((a.shape[0], a.shape[0]), bool), -1)
    weight = jnp.prod(jnp.where(strictly_before, beta[None, :], 1.0), axis=1)
    return jnp.sum(alpha * weight)


def chained_saddle(
    dim: int = 5,
    tau: float = math.e,
    L: float = math.e,
    gamma: float = 1.0,
    init_radius: float = 1.0,
):
    """Du et al. 2017 octopus: d saddles f = -k nu at (4tau,..,0,..), f* = -d nu at |x_j| = 4tau."""
    if dim < 2:
        raise ValueError(f"chained_saddle: dim must be >= 2, got {dim}")
    for pname, value in (("tau", tau), ("L", L), ("gamma", gamma), ("init_radius", init_radius)):
        if not value > 0:
            raise ValueError(f"chained_saddle: {pname} must be > 0, got {value}")
    nu = chained_saddle_nu(tau, L, gamma)
    f_star = -dim * nu
    # The rule of base.relative_target(f_star, 0.0), but rounded as it always was here:
    # f_star + (tau d) nu and f_star + tau (d nu) differ in the last bit for some instances (at the
    # default tau, L, gamma the first is d = 1319), and stored results compare f_target bitwise.
    f_target = f_star + RELATIVE_TARGET_TAU * dim * nu

    saddles = tuple(
        Saddle(
            point=jnp.asarray([4.0 * tau] * k + [0.0] * (dim - k), jnp.float32),
            value=-k * nu,
            index=1,
            name=f"s{k}",
        )
        for k in range(dim)
    )
    return make(
        dim=dim,
        init=uniform_box_init(dim, -init_radius, init_radius),
        full_loss=functools.partial(chained_saddle_value, tau=tau, L=L, gamma=gamma),
        reference=Reference(
            f_star=f_star,
            f_target=f_target,
            source=(
                "closed form (Du et al. 2017, eqs. 6-10): minima |x_j| = 4 tau, f* = -d nu, "
                "nu = (13 gamma + 37 L) tau^2 / 6; target f* + 1e-4 (f(0) - f*)"
            ),
            extra={"nu": nu, **{f"saddle_value_s{k}": -k * nu for k in range(dim)}},
        ),
        saddles=saddles,
    )
