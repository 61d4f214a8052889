"""Exact oracle accounting: the counts a run records are the oracle calls it makes.

Every registered optimizer runs a few steps of the runner's own step (``bench.program.make_step``,
the function ``build_program`` scans) on one run, eagerly (``jax.disable_jit``: every
``lax.while_loop``, ``lax.cond`` and ``lax.scan`` runs as Python control flow, so only what one
run computes is executed). The problem's loss is wrapped so that each evaluation is counted and
classified by how deep it sits in autodiff: called on concrete arrays it is a value; under one
level of differentiation (``jax.grad``, ``jax.value_and_grad``) a gradient; under two
(``jax.jvp(jax.grad(f))``) a Hessian-vector product. A gradient taken through
``jax.value_and_grad`` also counts as a value (the convention of ``optimizers.OracleCounts``).
After every step the counts the runner records (``program.counts``: its own values and
gradients, less those reused from a ``CachedValueGrad``, plus the optimizer's ``OracleCounts``)
must equal the calls made.

Problems: ``rosenbrock(dim=3)`` (deterministic, no retraction: the runner reuses cached values
and gradients; n = 3 < k, so Lanczos stops early), ``relu_teacher(k=2,batch_size=8)``
(mini-batches: nothing is reused) and ``spin_glass(p=3,n=5)`` (retracted: nothing is reused).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optimizers
import problems
from bench import program

PROBLEMS = ["rosenbrock(dim=3)", "relu_teacher(k=2,batch_size=8)", "spin_glass(p=3,n=5)"]
STEPS = 4

# hyperparameters that make every branch that spends oracle calls run within a few steps
HPARAMS = {
    "nc_descent": {"grad_threshold": 1e3},  # always the Lanczos branch
    "perturbed_gd": {"g_thres": 1e3, "t_thres": 1.0},  # perturbs every other step
    "stochastic_cubic": {"T_sub": 3, "T_final": 4},
    "cubic_reg": {"sigma": 1e-3},  # long first steps: rejections, then acceptances
}


def _depth(x) -> int | None:
    """Levels of autodiff tracers around a concrete array; None while only tracing (eval_shape)."""
    depth = 0
    while isinstance(x, jax.core.Tracer):
        if not hasattr(x, "primal"):
            return None
        x, depth = x.primal, depth + 1
    return depth


class Calls:
    """Oracle calls made through the wrapped loss."""

    def __init__(self):
        self.values = self.grads = self.hvps = 0
        self.in_value_and_grad = 0

    def wrap(self, problem: problems.Problem) -> problems.Problem:
        loss = problem.loss

        def counted(params, key):
            depth = _depth(jax.tree_util.tree_leaves(params)[0])
            if depth == 0:
                self.values += 1
            elif depth == 1:
                self.grads += 1
                self.values += self.in_value_and_grad > 0
            elif depth == 2:
                self.hvps += 1
            elif depth is not None:
                raise AssertionError(f"an oracle call under {depth} levels of autodiff")
            return loss(params, key)

        return dataclasses.replace(problem, loss=counted)

    def tuple(self):
        return self.values, self.grads, self.hvps


@pytest.fixture
def calls(monkeypatch):
    c = Calls()
    value_and_grad = jax.value_and_grad

    def counting_value_and_grad(fun, *args, **kwargs):
        inner = value_and_grad(fun, *args, **kwargs)

        def call(*a, **k):
            c.in_value_and_grad += 1
            try:
                return inner(*a, **k)
            finally:
                c.in_value_and_grad -= 1

        return call

    monkeypatch.setattr(jax, "value_and_grad", counting_value_and_grad)
    return c


def _run(problem: problems.Problem, name: str, calls: Calls, steps: int = STEPS):
    """``steps`` runner steps of one run, eagerly; yields (recorded counts, calls made, state) per step."""
    tx = optimizers.get(name, **HPARAMS.get(name, {}))
    wrapped = calls.wrap(problem)
    step = program.make_step(wrapped, tx, float(problem.reference.f_target))
    with jax.disable_jit():
        k_init, k_run = jax.random.split(jax.random.key(3))
        params = problem.init(k_init)
        state = tx.init(params)
        track = program.Tracker.start(jnp.float32)._replace(blowup=jnp.float32(jnp.inf))
        carry = (params, state, track)
        for t in range(steps):
            carry = step(carry, jnp.int32(t), k_run)
            _, state, track = carry
            yield tuple(int(c) for c in program.counts(state, track)), calls.tuple(), state


# A first-order optimizer (no value_fn, no HVPs) cannot call the loss: what the runner records for
# it is its own value and gradient per step, one code path whatever the optimizer, provided its
# state holds no OracleCounts and no CachedValueGrad. That path is checked on a representative, on
# every problem; every other first-order optimizer is checked to have such a state
# (``test_first_order_optimizers_leave_the_counting_to_the_runner``).
REPRESENTATIVE = "adam"
FIRST_ORDER = [n for n in optimizers.names() if n != REPRESENTATIVE
               and not (optimizers.spec(n).needs_value_fn or optimizers.spec(n).needs_hvp)]
# The spherical spin glass is here for its retraction, which turns the runner's reuse of cached
# values off; for an optimizer that caches nothing it runs exactly what rosenbrock runs.
RETRACTED = "spin_glass(p=3,n=5)"


def _state_shape(name):
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    return jax.eval_shape(optimizers.get(name, **HPARAMS.get(name, {})).init, params)


def _nodes(state, kind):
    return [x for x in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, kind)) if isinstance(x, kind)]


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("name", [n for n in optimizers.names() if n not in FIRST_ORDER])
def test_recorded_counts_are_the_calls_made(name, problem, calls):
    if problem == RETRACTED and not _nodes(_state_shape(name), optimizers.CachedValueGrad):
        pytest.skip(f"{name} caches no value or gradient: the retraction changes nothing it counts")
    if name == "subsampled_cubic":  # these problems have no data set, so no sample_loss reaches it
        pytest.skip("without a sample_loss subsampled_cubic is cubic_reg bit for bit (tests/optimizers/"
                    "test_subsampled.py); its sub-sampled counts: test_subsampled_cubic_counts_samples_in_units")
    p = problems.get(problem)
    history = []
    for t, (recorded, made, state) in enumerate(_run(p, name, calls)):
        assert recorded == made, f"{name} on {problem}, after step {t}: recorded {recorded}, made {made}"
        history.append((made, state))
    sp = optimizers.spec(name)
    values, grads, hvps = history[-1][0]
    assert (hvps > 0) == sp.needs_hvp
    if not (sp.needs_value_fn or sp.needs_hvp):  # first-order: the runner's value and gradient, every step
        assert (values, grads) == (STEPS, STEPS)


@pytest.mark.parametrize("name", FIRST_ORDER)
def test_first_order_optimizers_leave_the_counting_to_the_runner(name):
    """No OracleCounts, no CachedValueGrad: the recorded counts are the runner's, one value and gradient a step."""
    state = _state_shape(name)
    assert not _nodes(state, optimizers.OracleCounts) and not _nodes(state, optimizers.CachedValueGrad)


def test_reuse_only_where_the_next_objective_and_point_are_the_same():
    assert program.reuses_cache(problems.get("rosenbrock(dim=3)"))
    assert not program.reuses_cache(problems.get("relu_teacher(k=2,batch_size=8)"))  # a new mini-batch
    assert not program.reuses_cache(problems.get("spin_glass(p=3,n=5)"))  # retracted after the step


def test_lbfgs_spends_no_runner_oracle_after_its_first_step(calls):
    """L-BFGS's line search ends at the accepted point with its value and gradient: reused."""
    counts = [(recorded, state) for recorded, _, state in _run(problems.get("rosenbrock(dim=3)"), "lbfgs", calls)]
    for (before, _), (after, state) in zip(counts, counts[1:], strict=False):
        n = int(optimizers.oracle_counts(state)["values"])
        assert after[0] - before[0] == after[1] - before[1] >= 1  # the line search's, nothing else
    assert n == counts[-1][0][0] - 1  # the runner's own: one value, at step 0


def test_cubic_reg_counts_lanczos_steps_run_and_reuses_its_values(calls):
    """On a 3-D problem Lanczos (k = 10) stops after 3 HVPs; accepted steps leave f(x + s) known,
    rejected ones f(x) and g: the runner computes only the gradient after an acceptance."""
    rows = list(_run(problems.get("rosenbrock(dim=3)"), "cubic_reg", calls, steps=8))
    accepted = [bool(state.inner_state.last_accepted) for _, _, state in rows]
    assert any(accepted) and not all(accepted)
    prev = (1, 1, 0)  # step 0: the runner's value and gradient, Lanczos, the trial value
    for t, ((v, g, h), _, _) in enumerate(rows):
        if t == 0:
            assert (v, g, h) == (2, 1, 3)
        else:
            dv, dg, dh = v - prev[0], g - prev[1], h - prev[2]
            assert (dv, dh) == (1, 3)  # the trial value; 3 Lanczos HVPs
            assert dg == int(accepted[t - 1])  # a gradient only where the point moved
        prev = (v, g, h)
    assert np.isfinite(float(rows[-1][2].inner_state.last_sigma))
