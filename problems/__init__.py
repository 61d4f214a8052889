"""Registry of JIT-compilable test problems with known reference values.

    import problems
    problems.names()                                   # registered families
    p = problems.get("spin_glass", p=3, n=100, instance=0)
    p.full_loss(p.init(jax.random.key(0)))

Cheap look-ups that build nothing (no data set, coupling tensor or reference value):

    problems.canonical_name("spin_glass", n=300)       # == problems.get("spin_glass", n=300).name
    problems.family("spin_glass").defaults             # {"p": 3, "n": 100, "instance": 0}
    problems.family("spin_glass").description          # one line, from the factory's docstring

Adding a problem: write one file with a factory returning ``problems.base.make(...)`` and add
one ``register`` line below; the shared tests in ``tests/problems`` then check it.
"""

from problems.base import (
    Family,
    Problem,
    Reference,
    Saddle,
    canonical_name,
    family,
    get,
    names,
    parse_name,
    register,
)
from problems.rosenbrock import rosenbrock
from problems.strict_saddle import strict_saddle

register("strict_saddle", strict_saddle)
register("rosenbrock", rosenbrock)

# --- saddle functions, matrix factorization, deep linear networks ---
from problems.chained_saddle import chained_saddle  # noqa: E402
from problems.deep_linear import deep_linear  # noqa: E402
from problems.degenerate_saddle import degenerate_saddle  # noqa: E402
from problems.matrix_factorization import matrix_factorization  # noqa: E402
from problems.monkey_saddle import monkey_saddle  # noqa: E402
from problems.saddle_nd import saddle_nd  # noqa: E402

register("saddle_nd", saddle_nd)
register("monkey_saddle", monkey_saddle)
register("degenerate_saddle", degenerate_saddle)
register("chained_saddle", chained_saddle)
register("matrix_factorization", matrix_factorization)
register("deep_linear", deep_linear)

# --- ReLU networks and spherical spin glasses ---
from problems.relu_mlp import relu_mlp  # noqa: E402
from problems.relu_teacher import relu_teacher  # noqa: E402
from problems.spin_glass import spin_glass, spin_glass_generated  # noqa: E402

register("relu_teacher", relu_teacher)
register("relu_mlp", relu_mlp)
register("spin_glass", spin_glass)
register("spin_glass_generated", spin_glass_generated)

__all__ = [
    "Family",
    "Problem",
    "Reference",
    "Saddle",
    "canonical_name",
    "family",
    "get",
    "names",
    "parse_name",
    "register",
]
