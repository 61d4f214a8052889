"""Registry of optimizer variants, each an ``optax.GradientTransformationExtraArgs``.

    import optimizers
    optimizers.names()
    tx = optimizers.get("adam", learning_rate=3e-3)
    tx = optimizers.cubic_reg(learning_rate=0.5)   # the same, called like an optax alias
    tx = optimizers.newton(learning_rate=optax.linear_schedule(0.1, 1.0, 100))  # schedules too
    optimizers.spec("adam").search_space
    state = optimizers.set_hparams(tx.init(params), learning_rate=jnp.float32(1e-3))  # traced, no recompile
    tx.update(grads, state, params, value=v, value_fn=f, key=k)
    optimizers.oracle_counts(state)
    optimizers.cached_value_and_grad(state)  # value/grad at the point the update leads to, or None

``optimizers.<name>`` is, for every registered name, the factory as a user calls it:
``optimizers.<name>(**hparams)`` is ``optimizers.get(name, **hparams)`` (traced float32
hyperparameters, schedules accepted, updates in the gradients' dtype). The modules that define
them are named apart (``optimizers.arc`` holds ``scale_by_cubic_reg`` and the raw
``cubic_reg`` factory the registry reads its defaults from), and the ``scale_by_<name>``
transformations and their states are exported here as well.

Adding an optimizer: write one file with ``scale_by_<name>`` and a factory chaining it (the
factory's keyword defaults are the optimizer's defaults) and add one ``register`` line below;
``optimizers.<name>`` then exists (for a name registered later, through the module's
``__getattr__``), and the shared tests in ``tests/optimizers`` check it.
"""

import functools
import inspect

from optimizers import classics
from optimizers.base import (
    CachedValueGrad,
    OracleCounts,
    Range,
    Spec,
    batch_cond,
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

# Search spaces reach down to the tight relative targets (1e-5 of the way from the start to f*):
# a method whose noise or tolerance sets a loss floor searches that knob down to where the floor is
# below them. Noise radius r at rate eta on curvature lambda leaves E|x - x*|^2 ~ eta r^2 / (2 lambda),
# so r = 1e-4 (sphere_noise_sgd) and a gradient-noise variance eta = 1e-6 (noisy_sgd) put it orders
# below 1e-5; stochastic cubic regularization stops refining at its accuracy eps, searched down to 1e-6.
# --- first-order saddle escapers and quasi-Newton (noise, perturbation, L-BFGS) ---
from optimizers import annealed_noise, lbfgs_zoom, perturbed, sphere_noise  # noqa: E402

register("noisy_sgd", annealed_noise.noisy_sgd, {"learning_rate": Range(1e-4, 1.0), "eta": Range(1e-6, 1.0)},
         uses_key=True, reference="Neelakantan et al. 2015 (optax.noisy_sgd)", family="noise-injecting")
register("sphere_noise_sgd", sphere_noise.sphere_noise_sgd,
         {"learning_rate": Range(1e-4, 1.0), "noise_radius": Range(1e-4, 10.0)}, uses_key=True,
         reference="Ge, Huang, Jin and Yuan 2015", family="noise-injecting")
register("perturbed_gd", perturbed.perturbed_gd,
         {"learning_rate": Range(1e-4, 1.0), "radius": Range(1e-6, 1.0), "g_thres": Range(1e-6, 1e-1),
          "t_thres": Range(10.0, 1e4)}, uses_key=True,
         reference="Jin, Ge, Netrapalli, Kakade and Jordan 2017, Algorithm 2", family="noise-injecting")
register("lbfgs", lbfgs_zoom.lbfgs, {"curv_rtol": Range(0.1, 0.99, log=False)},
         static=("memory_size", "max_linesearch_steps"), needs_value_fn=True,
         reference="Liu and Nocedal 1989; optax.lbfgs with zoom line search", family="quasi-Newton")

# --- cubic regularization family ---
from optimizers import arc, stochastic_cubic_reg  # noqa: E402

register("cubic_reg", arc.cubic_reg, {"sigma": Range(1e-3, 1e3), "learning_rate": Range(0.1, 1.0)},
         static=("krylov_dim",), needs_value_fn=True, needs_hvp=True,
         reference="Nesterov and Polyak 2006; Cartis, Gould and Toint 2011 (ARC, Lanczos subproblem)",
         family="Hessian-vector")
register("stochastic_cubic", stochastic_cubic_reg.stochastic_cubic,
         {"learning_rate": Range(1e-4, 0.5), "l": Range(0.1, 1e3), "rho": Range(0.1, 1e3), "eps": Range(1e-6, 1e-1)},
         static=("T_sub", "T_final"), needs_value_fn=True, needs_hvp=True, uses_key=True,
         reference="Tripuraneni, Stern, Jin, Regier and Jordan 2018, Algorithms 1-3", family="Hessian-vector")

# --- Krylov second-order methods (Newton, saddle-free Newton, negative curvature) ---
from optimizers import negative_curvature, newton_cg, saddle_free  # noqa: E402

register("newton", newton_cg.newton, {"learning_rate": Range(1e-2, 1.0), "damping": Range(1e-6, 1.0)},
         static=("cg_iters",), needs_hvp=True,
         reference="Newton-CG (Hessian-free): Dembo, Eisenstat, Steihaug 1982; Martens 2010", family="Hessian-vector")
register("saddle_free_newton", saddle_free.saddle_free_newton,
         {"learning_rate": Range(1e-2, 1.0), "damping": Range(1e-6, 1.0)}, static=("k", "damping_search"),
         needs_value_fn=True, needs_hvp=True, reference="Dauphin et al. 2014, arXiv:1406.2572",
         family="Hessian-vector")
register("nc_descent", negative_curvature.nc_descent,
         {"learning_rate": Range(1e-4, 1.0), "grad_threshold": Range(1e-5, 1e-1),
          "curvature_threshold": Range(1e-5, 1e-1), "hessian_lipschitz": Range(1e-2, 1e2)},
         static=("k",), needs_hvp=True, uses_key=True,
         reference="Carmon, Duchi, Hinder and Sidford 2018; Curtis and Robinson 2019", family="Hessian-vector")

# --- practical curvature-aware methods (Hutchinson Hessian diagonal) and SAM ---
from optimizers import ada_hessian, sharpness_aware, sophia_h  # noqa: E402

register("adahessian", ada_hessian.adahessian,
         {"learning_rate": Range(1e-3, 1.0), "hessian_power": Range(0.5, 1.0, log=False)},
         needs_hvp=True, uses_key=True, family="Hessian-vector",
         reference="Yao et al. 2021, arXiv:2006.00719 (Hutchinson diagonal, Algorithm 1)")
register("sophia", sophia_h.sophia, {"learning_rate": Range(1e-5, 1.0), "gamma": Range(1e-3, 1.0)},
         static=("update_interval",), needs_hvp=True, uses_key=True, family="Hessian-vector",
         reference="Liu, Li, Hall, Liang and Ma 2023, arXiv:2305.14342 (Sophia-H; optax.contrib.sophia's update)")
register("sam", sharpness_aware.sam, {"learning_rate": Range(1e-4, 1.0), "rho": Range(1e-4, 0.5)},
         needs_value_fn=True, family="first-order",
         reference="Foret, Kleiner, Mobahi and Neyshabur 2021, arXiv:2010.01412 (optax.contrib.sam)")

# --- sub-sampled second-order methods (the finite sum reaches them as the extra argument sample_loss) ---
# (uses_key stays False: they draw their samples from the step's key only where a sample_loss is given,
# and are deterministic on everything else)
from optimizers import subsampled_cubic, subsampled_newton  # noqa: E402
from optimizers.subsample import SampleLoss  # noqa: E402, F401  (the sample_loss extra argument)

register("subsampled_cubic", subsampled_cubic.subsampled_cubic,
         {"sigma": Range(1e-3, 1e3), "learning_rate": Range(0.1, 1.0), "sample_growth": Range(1.1, 4.0),
          "hessian_fraction": Range(0.01, 1.0)},
         static=("krylov_dim", "sample_hessian", "sample_gradient", "ladder_depth"), needs_value_fn=True,
         needs_hvp=True,
         family="sub-sampled",
         reference="Kohler and Lucchi 2017, arXiv:1705.05933 (SCR, adaptive sample sizes of their code)")
register("subsampled_newton", subsampled_newton.subsampled_newton,
         {"learning_rate": Range(0.1, 1.0), "damping": Range(1e-6, 1.0), "hessian_fraction": Range(0.01, 1.0)},
         static=("cg_iters", "ls_steps", "ladder_depth"), needs_value_fn=True, needs_hvp=True,
         family="sub-sampled",
         reference="Roosta-Khorasani and Mahoney 2019, Algorithm 3; Xu, Roosta-Khorasani and Mahoney 2020")

# --- first-order negative-curvature search (Neon2: gradient differences, no HVPs) ---
from optimizers import natasha2, neon2  # noqa: E402

register("neon2_sgd", neon2.neon2_sgd,
         {"learning_rate": Range(1e-4, 1.0), "grad_threshold": Range(1e-5, 1e-1), "delta": Range(1e-2, 1.0),
          "neon_lr": Range(1e-3, 0.5)},
         static=("neon_iters",), needs_value_fn=True, uses_key=True, family="noise-injecting",
         reference="Allen-Zhu and Li 2018, arXiv:1711.06673 (Neon2^online, SGD + Neon2)")
register("natasha2", natasha2.natasha2,
         {"learning_rate": Range(1e-4, 1.0), "grad_threshold": Range(1e-5, 1e-1), "delta": Range(1e-2, 1.0),
          "neon_lr": Range(1e-3, 0.5)},
         static=("neon_iters", "inner_steps"), needs_value_fn=True, uses_key=True, family="noise-injecting",
         reference="Allen-Zhu 2018, arXiv:1708.08694, first-order with Neon2; simplified: no SVRG (Natasha1.5)")

# --- the transformations and their states, as optax exports its scale_by_* ---
from optimizers.ada_hessian import AdaHessianState, scale_by_adahessian  # noqa: E402
from optimizers.annealed_noise import AddAnnealedNoiseState, scale_by_noisy_sgd  # noqa: E402
from optimizers.arc import CubicRegState, scale_by_cubic_reg  # noqa: E402
from optimizers.hutchinson import HutchinsonDiagonalState, scale_by_hutchinson_diagonal  # noqa: E402
from optimizers.lbfgs_zoom import LbfgsState, scale_by_lbfgs  # noqa: E402
from optimizers.negative_curvature import NcDescentState, scale_by_nc_descent  # noqa: E402
from optimizers.newton_cg import ScaleByNewtonState, scale_by_newton  # noqa: E402
from optimizers.perturbed import PerturbedGDState, perturbed_gd_params, scale_by_perturbed_gd  # noqa: E402
from optimizers.saddle_free import ScaleBySaddleFreeNewtonState, scale_by_saddle_free_newton  # noqa: E402
from optimizers.sharpness_aware import SamState  # noqa: E402
from optimizers.sophia_h import SophiaState, scale_by_sophia  # noqa: E402
from optimizers.sphere_noise import SphereNoiseState, scale_by_sphere_noise  # noqa: E402
from optimizers.stochastic_cubic_reg import StochasticCubicState, scale_by_stochastic_cubic  # noqa: E402


def _alias(name: str):
    """``optimizers.<name>``: the registered factory's signature and docstring, built by ``get``."""
    factory = get.__globals__["_REGISTRY"][name][1]
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args, **hparams):
        return get(name, **signature.bind(*args, **hparams).arguments)

    build.__doc__ = (factory.__doc__ or "").rstrip() + (
        f"\n\n    Built by ``optimizers.get({name!r}, ...)``: traced float32 hyperparameters (a schedule is "
        "accepted\n    for any of them), updates in the gradients' dtype.\n")
    return build


adagrad = _alias("adagrad")
adam = _alias("adam")
cubic_reg = _alias("cubic_reg")
lbfgs = _alias("lbfgs")
momentum = _alias("momentum")
nc_descent = _alias("nc_descent")
nesterov = _alias("nesterov")
newton = _alias("newton")
noisy_sgd = _alias("noisy_sgd")
perturbed_gd = _alias("perturbed_gd")
rmsprop = _alias("rmsprop")
saddle_free_newton = _alias("saddle_free_newton")
sgd = _alias("sgd")
sphere_noise_sgd = _alias("sphere_noise_sgd")
stochastic_cubic = _alias("stochastic_cubic")
natasha2 = _alias("natasha2")  # the factories, not the modules of the same name
subsampled_cubic = _alias("subsampled_cubic")
subsampled_newton = _alias("subsampled_newton")



def __getattr__(name: str):
    """``optimizers.<name>`` for an optimizer registered after this module was imported."""
    if name in names():
        return _alias(name)
    raise AttributeError(f"module 'optimizers' has no attribute {name!r}")


__all__ = [
    "CachedValueGrad", "OracleCounts", "Range", "Spec", "batch_cond", "cached_value_and_grad", "check_hparams", "get",
    "names", "oracle_counts", "register", "set_hparams", "spec",
    # optimizers, one per registered name
    "adagrad", "adam", "cubic_reg", "lbfgs", "momentum", "nc_descent", "nesterov", "newton", "noisy_sgd",
    "perturbed_gd", "rmsprop", "saddle_free_newton", "sgd", "sphere_noise_sgd", "stochastic_cubic",
    # transformations and states
    "AddAnnealedNoiseState", "CubicRegState", "LbfgsState", "NcDescentState", "PerturbedGDState",
    "ScaleByNewtonState", "ScaleBySaddleFreeNewtonState", "SphereNoiseState", "StochasticCubicState",
    "perturbed_gd_params", "scale_by_cubic_reg", "scale_by_lbfgs", "scale_by_nc_descent", "scale_by_newton",
    "scale_by_noisy_sgd", "scale_by_perturbed_gd", "scale_by_saddle_free_newton", "scale_by_sphere_noise",
    "scale_by_stochastic_cubic",
    "AdaHessianState", "HutchinsonDiagonalState", "SamState", "SophiaState", "scale_by_adahessian",
    "scale_by_hutchinson_diagonal", "scale_by_sophia",
]
