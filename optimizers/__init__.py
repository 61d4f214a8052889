"""Registry of optimizer variants, each an ``optax.GradientTransformationExtraArgs``.

    import optimizers
    optimizers.names()
    tx = optimizers.get("adam", learning_rate=3e-3)
    optimizers.spec("adam").search_space
    tx.update(grads, state, params, value=v, value_fn=f, key=k)
    optimizers.oracle_counts(state)

Adding an optimizer: write one file with ``scale_by_<name>`` and a factory chaining it, and
add one ``register`` line below; the shared tests in ``tests/optimizers`` then check it.
"""

from optimizers import classics
from optimizers.base import OracleCounts, Range, Spec, check_hparams, get, names, oracle_counts, register, spec

classics.register_all()

# --- first-order saddle escapers and quasi-Newton (noise, perturbation, L-BFGS) ---

# --- cubic regularization family ---

# --- Krylov second-order methods (Newton, saddle-free Newton, negative curvature) ---

__all__ = [
    "OracleCounts", "Range", "Spec", "check_hparams", "get", "names", "oracle_counts", "register", "spec",
]
