"""Oracle cost in gradient-equivalents: one unit per problem, from XLA's cost analysis.

A step of a second-order method spends Hessian-vector products, a line search spends function
values; counting either like a gradient makes a table lie. Per problem, the optimizer's three
oracles on the step's objective ``loss(params, key)`` (what ``value_fn`` is) are lowered to XLA:

* value: ``loss``;
* gradient: ``jax.value_and_grad(loss)`` (reverse mode evaluates the loss on its way, so the
  value comes with every gradient);
* HVP: ``jax.jvp(jax.grad(loss), (x,), (v,))`` (forward over reverse, as the optimizers take it).

Their weights are the floating-point operation counts of the lowered, unoptimized programs
(``jax.stages.Lowered.cost_analysis()["flops"]``) relative to the gradient's: deterministic,
the same on every device and backend, and independent of timing noise. The cost of a run is
then

    cost = n_grads + w_value * max(n_values - n_grads, 0) + w_hvp * n_hvps,

charging function values only beyond those that came with a gradient. Flop counts ignore
memory traffic and launch overhead, which dominate tiny problems (a 2-D saddle's gradient is a
few flops), so seconds are reported beside this cost, never replaced by it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

import problems


@dataclasses.dataclass(frozen=True)
class Weights:
    """Costs of a problem's oracles in gradients (a gradient is 1 by definition)."""

    value: float
    hvp: float
    grad_flops: float  # flops of one gradient (with its value), the unit


def _flops(fn, *args) -> float:
    analysis = jax.jit(fn).lower(*args).cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returned one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


@functools.lru_cache(maxsize=128)
def weights(problem_name: str) -> Weights:
    """The oracle weights of a problem (by canonical name), from the flops of its lowered oracles."""
    p = problems.get(problem_name)
    # the oracles are lowered at the shapes and dtypes of a start point and a key, not their values
    # (tracing only: computing an init compiled and ran it, most of the weights' time)
    try:
        x, key = jax.eval_shape(lambda: (p.init(jax.random.key(0)), jax.random.key(1)))
    except Exception:  # an init that needs concrete values (a plug-in's own code): computed
        x, key = p.init(jax.random.key(0)), jax.random.key(1)

    def value(x, key):
        return p.loss(x, key)

    def value_and_grad(x, key):
        return jax.value_and_grad(p.loss)(x, key)

    def hvp(x, v, key):
        return jax.jvp(lambda y: jax.grad(p.loss)(y, key), (x,), (v,))[1]

    f_value = _flops(value, x, key)
    f_grad = _flops(value_and_grad, x, key)
    f_hvp = _flops(hvp, x, x, key)
    if not f_grad > 0:  # no analysis on this backend: fall back to counting every call as a gradient
        return Weights(value=1.0, hvp=1.0, grad_flops=float("nan"))
    return Weights(value=f_value / f_grad, hvp=f_hvp / f_grad, grad_flops=f_grad)


def gradient_equivalents(n_values, n_grads, n_hvps, w: Weights):
    """Cost of oracle counts (scalars or arrays) in gradient-equivalents (see the module docstring)."""
    n_values, n_grads, n_hvps = (np.asarray(a, np.float64) for a in (n_values, n_grads, n_hvps))
    return n_grads + w.value * np.maximum(n_values - n_grads, 0.0) + w.hvp * n_hvps
