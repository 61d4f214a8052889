"""L-BFGS with a zoom (strong Wolfe) line search: ``optax.lbfgs`` adapted to the runner's call.

optax's L-BFGS wants ``update(grad, state, params, value=..., grad=..., value_fn=...)``: its
zoom line search needs the gradient as a keyword and hands every other extra keyword to
``value_fn``. The runner calls ``update(grads, state, params, value=v, value_fn=f, key=k)``,
with the gradient only as the first argument and a ``key`` that ``f`` does not take. This
module passes ``grad=grads``, drops ``key`` (L-BFGS draws no noise), counts what the line
search spends, and exposes the value and gradient the line search ends with (at the point the
update leads to) as a ``CachedValueGrad``, so that the runner does not compute them again.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax._src import linesearch as _optax_linesearch  # zoom_linesearch: optax's zoom iterations

from optimizers.base import CachedValueGrad, OracleCounts, require_update_args


def _strong(tree):
    return jax.tree.map(
        lambda a: jax.lax.convert_element_type(a, a.dtype) if getattr(a, "weak_type", False) else a, tree
    )


class LbfgsState(NamedTuple):
    """State of ``scale_by_lbfgs``.

    Attributes:
      inner: optax's L-BFGS + zoom line-search state.
      oracle: the line search's values and gradients.
      cache: value and gradient at the accepted point (both valid after the first update).
    """

    inner: Any
    oracle: OracleCounts
    cache: CachedValueGrad


def scale_by_capped_zoom_linesearch(*, max_linesearch_steps: int, slope_rtol: float, curv_rtol: float
                                    ) -> optax.GradientTransformationExtraArgs:
    """``optax.scale_by_zoom_linesearch`` (initial guess 1) whose loop stops after ``max_linesearch_steps``.

    The zoom iterations are optax's own (``zoom_linesearch``'s init, step and stop rule); this
    transform only adds ``count < max_linesearch_steps`` to the loop's condition. optax's stop
    rule already means that, through its ``failed`` flag, but on jaxlib 0.10.2's CPU backend at
    the default XLA optimization level, inside the runner's scan, the flag stayed False and the
    loop ran forever (L-BFGS on ``spin_glass(p=3,n=30)``, seed 9, after ~110 steps: ``count``
    passed 20 with ``done`` and ``failed`` both False; the same step jitted alone, or compiled
    at optimization level 0 or 1, stops at 20). A loop cut by the cap ends as optax's failed
    searches do: at the safe step (sufficient decrease) when one was found, else at the last
    trial step.
    """
    init_ls, step_ls, cond_ls = _optax_linesearch.zoom_linesearch(
        max_linesearch_steps=max_linesearch_steps, slope_rtol=slope_rtol, curv_rtol=curv_rtol
    )
    reference = optax.scale_by_zoom_linesearch(max_linesearch_steps)

    def update_fn(updates, state, params, *, value, grad, value_fn, **extra_args):
        s0 = init_ls(updates, params, value=value, grad=grad, prev_stepsize=state.learning_rate,
                     initial_guess_strategy="one")
        final = jax.lax.while_loop(
            lambda s: cond_ls(s) & (s.count < max_linesearch_steps),
            functools.partial(step_ls, value_and_grad_fn=jax.value_and_grad(value_fn), fn_kwargs=extra_args),
            s0,
        )
        # optax's fallback for a failed search: the safe step if one was found (or if the last
        # trial left the domain: then the safe step is 0), else the last trial step
        outside = jnp.isinf(final.decrease_error)
        cut = ~(final.done | final.failed) & ((final.safe_stepsize > 0.0) | outside)
        stepsize, value, grad = optax.tree.where(
            cut, [final.safe_stepsize, final.safe_value, final.safe_grad], [final.stepsize, final.value, final.grad]
        )
        info = optax.ZoomLinesearchInfo(num_linesearch_steps=final.count, decrease_error=final.decrease_error,
                                        curvature_error=final.curvature_error)
        new_state = optax.ScaleByZoomLinesearchState(learning_rate=stepsize, value=value, grad=grad, info=info)
        return optax.tree.scale(stepsize, updates), optax.tree.cast_like(new_state, other_tree=state)

    return optax.GradientTransformationExtraArgs(reference.init, update_fn)


def scale_by_lbfgs(*, memory_size: int, max_linesearch_steps: int, slope_rtol: float, curv_rtol: float
                   ) -> optax.GradientTransformationExtraArgs:
    """``optax.lbfgs`` with a zoom line search, taking the gradient as its first argument.

    Returns the final update (the line search's step times the L-BFGS direction, already
    negated). Each line-search iteration evaluates ``jax.value_and_grad(value_fn)`` once, so
    the state's ``OracleCounts`` gains ``num_linesearch_steps`` values and as many gradients
    per step. The search ends with the value and gradient at the accepted point
    ``params + updates`` (the safe or last trial point when it fails or is cut: optax keeps
    ``value`` and ``grad`` in step with ``stepsize``); they go in the state's ``CachedValueGrad``
    (valid after the first update), which a caller with the same ``value_fn`` at the next step
    reuses instead of recomputing (optax's ``value_and_grad_from_state``). The runner does so on
    deterministic problems, where it then spends no value or gradient of its own.
    """
    inner = optax.lbfgs(
        memory_size=memory_size,
        linesearch=scale_by_capped_zoom_linesearch(
            max_linesearch_steps=max_linesearch_steps, slope_rtol=slope_rtol, curv_rtol=curv_rtol
        ),
    )

    def init_fn(params):
        # optax initialises some line-search diagnostics as weak-typed scalars and returns them
        # strongly typed after an update; made strong here so that the second update does not
        # retrace a jitted step
        return LbfgsState(inner=_strong(inner.init(params)), oracle=OracleCounts.zeros(),
                          cache=CachedValueGrad.empty(params))

    def update_fn(updates, state, params=None, *, value=None, value_fn=None, grad=None, key=None,
                  **extra_args):
        del key  # L-BFGS is deterministic
        # the runner's extra arguments for other optimizers (the sub-sampled methods' finite sum, the batch
        # axes of batch_cond) are not keyword arguments of value_fn, which optax's line search would pass
        # them to
        extra_args.pop("sample_loss", None)
        extra_args.pop("axis_name", None)
        require_update_args("lbfgs", "its line search evaluates value_fn", params=params, value=value,
                            value_fn=value_fn)
        grad = updates if grad is None else grad
        new_updates, inner_state = inner.update(
            updates, state.inner, params, value=value, grad=grad, value_fn=value_fn, **extra_args
        )
        info = optax.tree.get(inner_state, "info")
        n = info.num_linesearch_steps
        yes = jnp.ones([], bool)
        cache = CachedValueGrad(
            value=optax.tree.get(inner_state, "value").astype(state.cache.value.dtype),
            grad=optax.tree.cast_like(optax.tree.get(inner_state, "grad"), other_tree=state.cache.grad),
            valid_value=yes, valid_grad=yes)
        return new_updates, LbfgsState(inner=inner_state, oracle=state.oracle.add(values=n, grads=n), cache=cache)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lbfgs(memory_size: int = 10, max_linesearch_steps: int = 20, slope_rtol: float = 1e-4,
          curv_rtol: float = 0.188) -> optax.GradientTransformationExtraArgs:
    r"""L-BFGS (Liu and Nocedal 1989) with a zoom line search (Nocedal and Wright, Alg. 3.5-3.6).

    Direction p_k = -H_k g_k, H_k the two-loop-recursion inverse-Hessian estimate from the last
    m = ``memory_size`` pairs (s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i), H_k^0 = gamma_k I with
    gamma_k = s^T y / y^T y (first step: a capped 1/|g|, optax's choice). Step x <- x + a p_k
    with a satisfying the strong Wolfe conditions
        f(x + a p) <= f(x) + c1 a g^T p,    |grad f(x + a p)^T p| <= c2 |g^T p|,
    found by optax's zoom line search from the initial guess a = 1.

    Args:
      memory_size: m, the number of (s, y) pairs (static: it fixes the state's shapes).
        Default 10, optax's.
      max_linesearch_steps: cap on line-search iterations per step (static). Default 20,
        optax's.
      slope_rtol: c1 of the sufficient-decrease (Armijo) condition. Default 1e-4.
      curv_rtol: c2 of the curvature condition. Default 0.188 (chosen on the quick suite, docs/DEFAULTS.md);
        0.9 is the usual quasi-Newton value (scored 0.534 against 0.537, one problem fewer solved).

    Oracle cost per step: one value and one gradient of ``value_fn`` per line-search iteration
    run (counted in the state's ``OracleCounts``). The runner's own value and gradient are
    spent on the first step only, on deterministic problems: later steps reuse the line
    search's value and gradient at the accepted point (the state's ``CachedValueGrad``).

    References: D. C. Liu, J. Nocedal, "On the limited memory BFGS method for large scale
    optimization", Math. Programming 45 (1989); J. Nocedal, S. J. Wright, Numerical
    Optimization (2006), Alg. 7.4-7.5 and 3.5-3.6; ``optax.lbfgs``.
    """
    return scale_by_lbfgs(memory_size=memory_size, max_linesearch_steps=max_linesearch_steps,
                          slope_rtol=slope_rtol, curv_rtol=curv_rtol)

