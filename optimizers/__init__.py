"""Registry of optimizer variants, each an ``optax.GradientTransformationExtraArgs``.

    import optimizers
    optimizers.names()
    tx = optimizers.get("adam", learning_rate=3e-3)
    optimizers.spec("adam").search_space
    state = optimizers.set_hparams(tx.init(params), learning_rate=jnp.float32(1e-3))  # traced, no recompile
    tx.update(grads, state, params, value=v, value_fn=f, key=k)
    optimizers.oracle_counts(state)
    optimizers.cached_value_and_grad(state)  # value/grad at the point the update leads to, or None

Adding an optimizer: write one file with ``scale_by_<name>`` and a factory chaining it (the
factory's keyword defaults are the optimizer's defaults), and add one ``register`` line below;
the shared tests in ``tests/optimizers`` then check it.
"""

from optimizers import classics
from optimizers.base import (
    CachedValueGrad,
    OracleCounts,
    Range,
    Spec,
    cached_value_and_grad,
    check_hparams,
    get,
    names,
    oracle_counts,
    register,
    set_hparams,
    spec,
)

classics.register_all()

# --- first-order saddle escapers and quasi-Newton (noise, perturbation, L-BFGS) ---
from optimizers import lbfgs, noisy_sgd, perturbed_gd, sphere_noise_sgd  # noqa: E402

register("noisy_sgd", noisy_sgd.noisy_sgd, {"learning_rate": Range(1e-4, 1.0), "eta": Range(1e-4, 1.0)},
         uses_key=True, reference="Neelakantan et al. 2015 (optax.noisy_sgd)")
register("sphere_noise_sgd", sphere_noise_sgd.sphere_noise_sgd,
         {"learning_rate": Range(1e-4, 1.0), "noise_radius": Range(1e-3, 10.0)}, uses_key=True,
         reference="Ge, Huang, Jin and Yuan 2015")
register("perturbed_gd", perturbed_gd.perturbed_gd,
         {"learning_rate": Range(1e-4, 1.0), "radius": Range(1e-6, 1.0), "g_thres": Range(1e-6, 1e-1),
          "t_thres": Range(10.0, 1e4)}, uses_key=True,
         reference="Jin, Ge, Netrapalli, Kakade and Jordan 2017, Algorithm 2")
register("lbfgs", lbfgs.lbfgs, {"curv_rtol": Range(0.1, 0.99, log=False)},
         static=("memory_size", "max_linesearch_steps"), needs_value_fn=True,
         reference="Liu and Nocedal 1989; optax.lbfgs with zoom line search")

# --- cubic regularization family ---
from optimizers import cubic_reg, stochastic_cubic  # noqa: E402

register("cubic_reg", cubic_reg.cubic_reg, {"sigma": Range(1e-3, 1e3), "learning_rate": Range(0.1, 1.0)},
         static=("krylov_dim",), needs_value_fn=True, needs_hvp=True,
         reference="Nesterov and Polyak 2006; Cartis, Gould and Toint 2011 (ARC, Lanczos subproblem)")
register("stochastic_cubic", stochastic_cubic.stochastic_cubic,
         {"learning_rate": Range(1e-4, 0.5), "l": Range(0.1, 1e3), "rho": Range(0.1, 1e3)},
         static=("T_sub", "T_final"), needs_value_fn=True, needs_hvp=True, uses_key=True,
         reference="Tripuraneni, Stern, Jin, Regier and Jordan 2018, Algorithms 1-3")

# --- Krylov second-order methods (Newton, saddle-free Newton, negative curvature) ---
from optimizers import nc_descent, newton, saddle_free_newton  # noqa: E402

register("newton", newton.newton, {"learning_rate": Range(1e-2, 1.0), "damping": Range(1e-6, 1.0)},
         static=("cg_iters",), needs_hvp=True,
         reference="Newton-CG (Hessian-free): Dembo, Eisenstat, Steihaug 1982; Martens 2010")
register("saddle_free_newton", saddle_free_newton.saddle_free_newton,
         {"learning_rate": Range(1e-2, 1.0), "damping": Range(1e-6, 1.0)}, static=("k",),
         needs_hvp=True, reference="Dauphin et al. 2014, arXiv:1406.2572")
register("nc_descent", nc_descent.nc_descent,
         {"learning_rate": Range(1e-4, 1.0), "grad_threshold": Range(1e-5, 1e-1),
          "curvature_threshold": Range(1e-5, 1e-1), "hessian_lipschitz": Range(1e-2, 1e2)},
         static=("k",), needs_hvp=True, uses_key=True,
         reference="Carmon, Duchi, Hinder and Sidford 2018; Curtis and Robinson 2019")

__all__ = [
    "CachedValueGrad", "OracleCounts", "Range", "Spec", "cached_value_and_grad", "check_hparams", "get", "names",
    "oracle_counts", "register", "set_hparams", "spec",
]
