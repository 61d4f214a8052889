"""Sub-sampling of a finite-sum objective, for the sub-sampled second-order methods.

A finite-sum objective f(x) = (1/n) sum_{i=1}^n f_i(x) reaches an optimizer as the ``update``
extra argument ``sample_loss``, a ``SampleLoss``: ``fn(params, idx)`` is the mean of f_i over the
int32 indices ``idx`` (any length m <= n), ``n`` the number of samples and ``unit`` the number of
samples one call of the step's ``value_fn`` averages over (the batch size of a mini-batch problem,
n for a deterministic finite sum). ``bench.program`` builds it from a problem's ``sample_loss``,
``n_samples`` and ``batch_samples`` (``problems.Problem``); ``optimizers`` never imports
``problems``. Without it a sub-sampling optimizer treats ``value_fn`` as its only sample (n = 1).

Sizes that change from step to step cannot change array shapes under ``jit``, so a sample of m
requested indices is drawn at the smallest size of a static ladder n, ceil(n/2), ...,
ceil(n/2^depth) that is >= m (the smallest size where m is below it; ``ladder``, ``bucket``), and
the function of the sample is a ``lax.switch`` over the ladder (``SampleFunctions``): each
branch computes its own sample size exactly. The indices
are a prefix of one random permutation of the n samples (without replacement); the full size
n uses all samples in their order (no permutation), so it is exactly the full objective.

Oracle counting (``ExampleCounter``): a call on m samples costs m / unit of the step's oracle
(per-sample losses cost the same flops each, so a gradient on m samples is m / unit of the
gradient ``bench.cost`` weighs). The samples each kind of call (value, gradient, HVP) touched
are summed exactly in int32 and reported in ``OracleCounts`` as whole units, the remainder
(< unit samples) carried: the recorded counts are floor(samples / unit), never more than one
unit below the exact fraction, and the cost column in gradient-equivalents stays honest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optimizers.base import OracleCounts


class SampleLoss(NamedTuple):
    """A finite-sum objective for sub-sampling optimizers (the ``sample_loss`` extra argument).

    Attributes:
      fn: ``(params, idx) -> scalar``, the mean of the per-sample losses f_i over ``idx`` (int32, (m,)).
      n: the number of samples (a Python int).
      unit: samples per call of the step's ``value_fn`` (a Python int, 1 <= unit <= n): the unit
        the sub-sampled calls are counted in.
    """

    fn: Callable[[Any, jax.Array], jax.Array]
    n: int
    unit: int


def check_sample_loss(optimizer: str, sample_loss: Any) -> None:
    """Raise a one-line error for a malformed ``sample_loss`` extra argument (at trace time)."""
    if sample_loss is None:
        return
    if not isinstance(sample_loss, SampleLoss):
        raise TypeError(f"{optimizer}: sample_loss must be an optimizers.SampleLoss(fn, n, unit), "
                        f"got {type(sample_loss).__name__}")
    n, unit = sample_loss.n, sample_loss.unit
    if not (isinstance(n, int) and isinstance(unit, int) and 1 <= unit <= n):
        raise ValueError(f"{optimizer}: sample_loss needs integers 1 <= unit <= n, got n={n!r}, unit={unit!r}")


def ladder(n: int, depth: int) -> tuple[int, ...]:
    """Static sample sizes ceil(n / 2^j), j = 0..depth (fewer where they reach 1), descending."""
    if depth < 0:
        raise ValueError(f"sample ladder depth must be >= 0, got {depth}")
    sizes = [n]
    for _ in range(depth):
        if sizes[-1] == 1:
            break
        sizes.append(-(-sizes[-1] // 2))
    return tuple(sizes)


def bucket(sizes: tuple[int, ...], requested: jax.Array) -> jax.Array:
    """Index of the smallest size of the (descending) ``sizes`` that is >= ``requested`` (int32)."""
    ge = jnp.asarray(sizes, jnp.int32) >= requested
    return (jnp.sum(ge.astype(jnp.int32)) - 1).clip(0, len(sizes) - 1)


class SampleFunctions:
    """The objective on a sample drawn at one ladder size, as ``lax.switch`` branches.

    ``full`` is the objective on all samples (the step's ``value_fn`` itself when that is the
    full objective, ``unit == n``); the other branches evaluate ``sample_loss.fn`` on the first
    ``sizes[j]`` entries of ``perm``.
    """

    def __init__(self, full: Callable, sample_loss: SampleLoss | None, sizes: tuple[int, ...], perm):
        self.sizes = sizes
        self.branches = [full]
        for m in sizes[1:]:
            self.branches.append(lambda p, m=m: sample_loss.fn(p, perm[:m]))

    def fn(self, j: jax.Array) -> Callable:
        """``params -> loss`` on the sample of ladder index ``j`` (a single branch when the ladder has one size)."""
        if len(self.branches) == 1:
            return self.branches[0]
        return lambda p: jax.lax.switch(j, self.branches, p)


def full_objective(sample_loss: SampleLoss | None, value_fn: Callable) -> tuple[Callable, bool]:
    """(the full objective, whether it is ``value_fn`` itself)."""
    if sample_loss is None or sample_loss.unit == sample_loss.n:
        return value_fn, True
    idx = jnp.arange(sample_loss.n, dtype=jnp.int32)
    return (lambda p: sample_loss.fn(p, idx)), False


def permutation(key: jax.Array, sample_loss: SampleLoss | None) -> jax.Array | None:
    """A random permutation of the samples (None without a ``sample_loss``)."""
    if sample_loss is None:
        return None
    return jax.random.permutation(key, sample_loss.n).astype(jnp.int32)


class ExampleCounter(NamedTuple):
    """Oracle calls on sub-samples, in whole units of ``value_fn`` calls (see the module docstring).

    ``counts`` is the ``OracleCounts`` the optimizer reports; ``carry`` the samples (values,
    gradients, HVPs) not yet making up a whole unit, int32 (3,).
    """

    counts: OracleCounts
    carry: jax.Array

    @staticmethod
    def zeros() -> ExampleCounter:
        return ExampleCounter(OracleCounts.zeros(), jnp.zeros(3, jnp.int32))

    def add(self, unit: int, values=0, grads=0, hvps=0) -> ExampleCounter:
        """Add calls measured in samples (each a product calls x samples per call)."""
        total = self.carry + jnp.stack([jnp.asarray(a, jnp.int32) for a in (values, grads, hvps)])
        whole = total // unit
        return ExampleCounter(self.counts.add(whole[0], whole[1], whole[2]), total - whole * unit)
