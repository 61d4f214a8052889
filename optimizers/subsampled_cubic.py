"""Sub-sampled cubic regularization (SCR): ARC with a sub-sampled gradient and Hessian.

Kohler and Lucchi (2017) run adaptive cubic regularization (ARC, Cartis, Gould and Toint 2011;
``optimizers.arc``) on a finite sum f = (1/n) sum_i f_i with the gradient and the Hessian of the
cubic model

    m(s) = f(x) + g_S.s + 1/2 s.B_S s + sigma/3 |s|^3,   g_S = grad f_{S_g}(x),   B_S = Hess f_{S_H}(x),

taken on independent random samples S_g, S_H of the data, and the ratio
rho = (f(x) - f(x + s)) / (f(x) - m(s)) on the full objective. The step is accepted if rho >= eta1;
sigma is divided by gamma when rho >= eta2, kept when successful, multiplied by gamma otherwise
(their code's rule, that of ``cubic_reg``). The subproblem is ``cubic_reg``'s: Lanczos in
K_k(B_S, g_S) and the exact small cubic solver (``arc.arc_trial_step``, shared, not copied).

Sample sizes (the paper's Theorems 5-6: the gradient error must stay below M|s|^2 and the
Hessian error below K|s|, so |S_g| ~ 1/|s|^4 and |S_H| ~ 1/|s|^2; made practical as in the
authors' code, ``sampling_scheme='adaptive'``):

* step 0: |S_H| = floor(hessian_fraction n), |S_g| = floor(grad_fraction n) (the authors'
  defaults: the Hessian sampled from 0.025 n, the gradient full, ``sample_gradient=False``; with
  it, sampled from 0.25 n);
* after an unsuccessful step: |S| <- min(n, floor(sample_growth |S|)) (more samples, a more
  accurate model, before sigma grows further);
* after a successful step with |s_0| the first step's length and |s| the last one's:
  |S_H| = min(n, floor(max(hessian_fraction n |s_0|^2 / |s|^2, hessian_fraction n))),
  |S_g| = min(n, floor(max(grad_fraction n |s_0|^4 / |s|^4, grad_fraction n)))
  (their constant c = fraction n |s_0|^2 / log d makes the first step's size the initial one;
  the log d cancels).

A requested size is drawn at the smallest ladder size >= it (n, ceil(n/2), ..., ceil(n/2^ladder_depth),
``optimizers.subsample``), without replacement; at the size n the sample is the whole data set
in its order. Without sampling (``sample_hessian=sample_gradient=False``) the method is ARC on
the full objective: bit for bit
``cubic_reg`` when the step's ``value_fn`` is the full objective (the same code runs, with the
runner's value and gradient), and to float32 round-off otherwise (the full objective is then
evaluated as ``sample_loss.fn(x, arange(n))``, a gather that XLA may fuse differently from the
problem's own full loss). With sampling on and both fractions 1 every step draws the full size too,
through the ``lax.switch`` over the ladder, which XLA compiles apart: ARC to float32 round-off.

Inputs: the finite sum comes as the ``sample_loss`` extra argument (``optimizers.SampleLoss``;
the runner passes it for problems with a data set: the MLP and the deep linear network). Without
it ``value_fn`` is the only sample and the method is ``cubic_reg`` exactly. The gradient passed
as ``updates`` is used only where the gradient sample is the full objective and that is
``value_fn``; otherwise the runner's mini-batch gradient is not used (but was computed and is
counted by the runner).

Oracle counts (``optimizers.subsample.ExampleCounter``): calls on a sample of m of n samples are
counted as m / unit calls of the step's oracle, summed exactly and reported in whole units
(``unit`` = samples per ``value_fn`` call): the gradient on S_g, one HVP per Lanczos step on
S_H, and two full values f(x), f(x + s) (n / unit each; f(x) is reused when the point has not
moved since it was computed, checked by comparing the parameters). So the cost column
(gradient-equivalents, ``bench.cost``) charges a sub-sampled HVP its share of a full one. Without
``sample_loss`` the counts are ``cubic_reg``'s.

References:
  J. M. Kohler and A. Lucchi, "Sub-sampled Cubic Regularization for Non-convex Optimization",
  ICML 2017 (arXiv:1705.05933); code: github.com/dalab/subsampled_cubic_regularization.
  C. Cartis, N. I. M. Gould and Ph. L. Toint, Math. Program. 127 (2011) 245-295.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from optimizers import subsample
from optimizers.arc import arc_trial_step
from optimizers.base import CachedValueGrad, refuse_complex, require_update_args, warn_no_key
from optimizers.linalg import working_dtype


class SubsampledCubicState(NamedTuple):
    """State of ``scale_by_subsampled_cubic``.

    Attributes:
      sigma_scale: current sigma / the hyperparameter ``sigma`` (as in ``CubicRegState``).
      adaptive_sigma: the sigma the next step uses.
      hessian_samples: |S_H| requested for the next step (int32; drawn at the ladder size >= it).
      grad_samples: |S_g| requested for the next step (int32).
      last_hessian_samples, last_grad_samples: the sample sizes the last step drew (int32).
      first_step_norm: |s_0|, the first step's length (the constant of the adaptive rule).
      last_step_norm: |s| of the last step.
      num_steps: updates so far (int32).
      num_rejected: unsuccessful steps so far (int32).
      last_rho: the ratio rho of the last step.
      last_accepted: whether the last step was accepted.
      full_value: f(x) on the full objective at ``full_at`` (reused while the point does not move).
      full_at: the flat point where ``full_value`` was computed (NaN before the first update).
      counter: the oracle calls (``ExampleCounter``: whole units, and the samples carried).
      cache: as ``CubicRegState.cache`` where ``value_fn`` is the full objective (else empty).
    """

    sigma_scale: jax.Array
    adaptive_sigma: jax.Array
    hessian_samples: jax.Array
    grad_samples: jax.Array
    last_hessian_samples: jax.Array
    last_grad_samples: jax.Array
    first_step_norm: jax.Array
    last_step_norm: jax.Array
    num_steps: jax.Array
    num_rejected: jax.Array
    last_rho: jax.Array
    last_accepted: jax.Array
    full_value: jax.Array
    full_at: jax.Array
    counter: subsample.ExampleCounter
    cache: CachedValueGrad


def next_sample_size(size, n, fraction, growth, accepted, first_norm, step_norm, power: int):
    """The authors' adaptive rule for the next sample size (see the module docstring); int32.

    ``size``: the sample size this step drew (the ladder size); ``growth``: the factor after an
    unsuccessful step; ``accepted``: whether this step was successful; ``first_norm``/``step_norm``:
    |s_0| and this step's |s|; ``power``: 2 for the Hessian, 4 for the gradient.
    """
    n_f = jnp.float32(n)
    base = jnp.asarray(fraction, jnp.float32) * n_f
    grown = jnp.minimum(n_f, jnp.floor(size.astype(jnp.float32) * jnp.asarray(growth, jnp.float32)))
    ratio = (first_norm / step_norm) ** power
    adaptive = jnp.where(step_norm > 0, jnp.maximum(base * ratio, base), n_f)
    adaptive = jnp.minimum(n_f, jnp.floor(jnp.where(jnp.isfinite(adaptive), adaptive, n_f)))
    return jnp.where(accepted, adaptive, grown).astype(jnp.int32)


def scale_by_subsampled_cubic(
    *,
    sigma: float,
    learning_rate: float,
    sigma_min: float,
    eta1: float,
    eta2: float,
    gamma: float,
    sample_growth: float,
    hessian_fraction: float,
    grad_fraction: float,
    krylov_dim: int,
    sample_hessian: bool,
    sample_gradient: bool,
    ladder_depth: int,
) -> optax.GradientTransformationExtraArgs:
    """Sub-sampled cubic regularization step (Kohler and Lucchi 2017); returns the update ``+s``.

    ``update`` needs ``params``, ``value_fn`` and ``key`` (the samples); a finite sum comes as
    ``sample_loss=optimizers.SampleLoss(fn, n, unit)``. See the module docstring.

    Args:
      sigma, learning_rate, sigma_min, eta1, eta2, gamma, krylov_dim: as ``scale_by_cubic_reg``.
      sample_growth: factor of the sample sizes after an unsuccessful step (the authors' 1.5).
      hessian_fraction: |S_H| / n at the first step and its floor.
      grad_fraction: |S_g| / n at the first step and its floor.
      sample_hessian: sub-sample the Hessian (static; False: the full objective's HVPs).
      sample_gradient: sub-sample the gradient (static; False, the authors' default: the full gradient).
      ladder_depth: the sample sizes drawn are n, ceil(n/2), ..., ceil(n/2^ladder_depth) (static).
    """
    k = int(krylov_dim)
    depth = int(ladder_depth)
    h_frac, g_frac = hessian_fraction, grad_fraction

    def init_fn(params):
        refuse_complex("subsampled_cubic", params)
        x, _ = ravel_pytree(params)
        f32, i32 = jnp.float32, jnp.int32
        zero_i = jnp.zeros([], i32)
        return SubsampledCubicState(
            sigma_scale=jnp.ones([], f32),
            adaptive_sigma=jnp.maximum(jnp.asarray(sigma, f32), jnp.asarray(sigma_min, f32)),
            hessian_samples=zero_i, grad_samples=zero_i, last_hessian_samples=zero_i, last_grad_samples=zero_i,
            first_step_norm=jnp.zeros([], f32), last_step_norm=jnp.zeros([], f32),
            num_steps=zero_i, num_rejected=zero_i, last_rho=jnp.zeros([], f32), last_accepted=jnp.zeros([], bool),
            full_value=jnp.zeros([], x.dtype), full_at=jnp.full(x.shape, jnp.nan, x.dtype),
            counter=subsample.ExampleCounter.zeros(), cache=CachedValueGrad.empty(params),
        )

    def update_fn(updates, state, params=None, *, value=None, value_fn=None, key=None, sample_loss=None,
                  **extra):
        del extra
        require_update_args("subsampled_cubic", "Hessian-vector products and the trial value f(x + s)",
                            params=params, value_fn=value_fn)
        subsample.check_sample_loss("subsampled_cubic", sample_loss)
        x, unravel = ravel_pytree(params)
        dtype = working_dtype(x.dtype)
        n = 1 if sample_loss is None else sample_loss.n
        unit = 1 if sample_loss is None else sample_loss.unit
        full_fn, full_is_value_fn = subsample.full_objective(sample_loss, value_fn)
        counter = state.counter

        # the sample sizes: the first step's from the fractions, then the adaptive rule's
        first = state.num_steps == 0
        def initial(frac):
            return jnp.floor(jnp.asarray(frac, jnp.float32) * n).astype(jnp.int32)

        want_h = jnp.where(first, initial(h_frac), state.hessian_samples)
        want_g = jnp.where(first, initial(g_frac), state.grad_samples)
        if sample_loss is not None:
            if key is None:
                warn_no_key("subsampled_cubic")
                key = jax.random.fold_in(jax.random.key(0), state.num_steps)
            k_g, k_h = jax.random.split(key)
            sizes_h = subsample.ladder(n, depth if sample_hessian else 0)
            sizes_g = subsample.ladder(n, depth if sample_gradient else 0)
        else:
            k_g = k_h = None
            sizes_h = sizes_g = (1,)
        j_h, j_g = subsample.bucket(sizes_h, want_h), subsample.bucket(sizes_g, want_g)
        m_h = jnp.asarray(sizes_h, jnp.int32)[j_h]
        m_g = jnp.asarray(sizes_g, jnp.int32)[j_g]
        perm_h = subsample.permutation(k_h, sample_loss)
        hess_fn = subsample.SampleFunctions(full_fn, sample_loss, sizes_h, perm_h).fn(j_h)
        grad_fns = subsample.SampleFunctions(full_fn, sample_loss, sizes_g, subsample.permutation(k_g, sample_loss))

        # f(x) on the full objective: the runner's value where value_fn is it, else computed or reused
        if full_is_value_fn:
            if value is None:
                value = value_fn(params)
                counter = counter.add(unit, values=unit)
            f0 = jnp.asarray(value, dtype)
        else:
            same = jnp.all(x == state.full_at)
            f0 = jax.lax.cond(same, lambda: state.full_value, lambda: full_fn(params).astype(x.dtype)).astype(dtype)
            counter = counter.add(unit, values=jnp.where(same, 0, n))
        # the gradient on S_g: the runner's where S_g is everything and value_fn is the full objective
        if full_is_value_fn and len(sizes_g) == 1:
            g_tree = updates
        elif full_is_value_fn:
            g_tree = jax.lax.switch(j_g, [lambda: updates] + [lambda f=f: jax.grad(f)(params)
                                                             for f in grad_fns.branches[1:]])
            counter = counter.add(unit, grads=jnp.where(j_g == 0, 0, m_g))
        else:
            g_tree = jax.grad(grad_fns.fn(j_g))(params)
            counter = counter.add(unit, grads=m_g)
        g_tree = optax.tree.cast_like(g_tree, other_tree=updates)

        sig0 = jnp.asarray(sigma, dtype)
        smin = jnp.asarray(sigma_min, dtype)
        cur_sigma = jnp.maximum(sig0 * state.sigma_scale.astype(dtype), smin)
        tr = arc_trial_step(hess_fn, full_fn, params, g_tree, f0, cur_sigma, sig0, smin, learning_rate, eta1,
                            eta2, gamma, k)
        counter = counter.add(unit, values=n, hvps=tr.hvps * m_h)

        step_norm = jnp.linalg.norm(tr.step).astype(jnp.float32)
        first_norm = jnp.where(first, step_norm, state.first_step_norm)
        next_h = next_sample_size(m_h, n, h_frac, sample_growth, tr.accepted, first_norm, step_norm, 2)
        next_g = next_sample_size(m_g, n, g_frac, sample_growth, tr.accepted, first_norm, step_norm, 4)
        x_new = x + jnp.where(tr.accepted, tr.step, jnp.zeros_like(tr.step)).astype(x.dtype)
        out = unravel(jnp.where(tr.accepted, tr.step, jnp.zeros_like(tr.step)).astype(x.dtype))
        new_state = SubsampledCubicState(
            sigma_scale=tr.scale.astype(jnp.float32),
            adaptive_sigma=jnp.maximum(sig0 * tr.scale, smin).astype(jnp.float32),
            hessian_samples=next_h, grad_samples=next_g,
            last_hessian_samples=m_h, last_grad_samples=m_g,
            first_step_norm=first_norm, last_step_norm=step_norm,
            num_steps=state.num_steps + 1,
            num_rejected=state.num_rejected + (~tr.accepted).astype(jnp.int32),
            last_rho=tr.rho.astype(jnp.float32), last_accepted=tr.accepted,
            full_value=jnp.where(tr.accepted, tr.f_new, f0).astype(x.dtype),
            full_at=x_new,
            counter=counter,
            # what the step leaves known of value_fn at the point it returns (as cubic_reg's cache)
            cache=state.cache.after_trial(tr.accepted, tr.f_new, f0, updates, full_is_value_fn),
        )
        return out, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def subsampled_cubic(
    learning_rate: float = 1.0,
    sigma: float = 1.0,
    sigma_min: float = 1e-8,
    eta1: float = 0.1,
    eta2: float = 0.9,
    gamma: float = 2.0,
    sample_growth: float = 1.5,
    hessian_fraction: float = 0.025,
    grad_fraction: float = 0.25,
    krylov_dim: int = 10,
    sample_hessian: bool = True,
    sample_gradient: bool = False,
    ladder_depth: int = 6,
) -> optax.GradientTransformationExtraArgs:
    """Sub-sampled cubic regularization (Kohler and Lucchi 2017): ARC with sub-sampled gradient and Hessian.

    Each step samples |S_g| gradients and |S_H| Hessians of the data set (``sample_loss``), solves
    ``cubic_reg``'s Krylov cubic subproblem on them, tests the step on the full objective and
    grows the samples after unsuccessful steps (the authors' adaptive rule). Without
    ``sample_loss`` it is ``cubic_reg``. See ``scale_by_subsampled_cubic``.
    """
    return scale_by_subsampled_cubic(
        sigma=sigma, learning_rate=learning_rate, sigma_min=sigma_min, eta1=eta1, eta2=eta2, gamma=gamma,
        sample_growth=sample_growth, hessian_fraction=hessian_fraction, grad_fraction=grad_fraction,
        krylov_dim=krylov_dim, sample_hessian=sample_hessian, sample_gradient=sample_gradient,
        ladder_depth=ladder_depth,
    )
