"""Registry of JIT-compilable test problems with known reference values.

    import problems
    problems.names()                                   # registered families
    p = problems.get("spin_glass", p=3, n=100, instance=0)
    p.full_loss(p.init(jax.random.key(0)))

Adding a problem: write one file with a factory returning ``problems.base.make(...)`` and add
one ``register`` line below; the shared tests in ``tests/problems`` then check it.
"""

from problems.base import Family, Problem, Reference, Saddle, family, get, names, parse_name, register
from problems.rosenbrock import rosenbrock
from problems.strict_saddle import strict_saddle

register("strict_saddle", strict_saddle)
register("rosenbrock", rosenbrock)

# --- saddle functions, matrix factorization, deep linear networks ---

# --- ReLU networks and spherical spin glasses ---

__all__ = ["Family", "Problem", "Reference", "Saddle", "family", "get", "names", "parse_name", "register"]
