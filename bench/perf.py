"""``python -m bench perf``: what the one-program runner buys, and what its bookkeeping costs.

On the same problem, optimizer and step count it times, per run (one seed's trajectory):

* ``hand``: the loop users write by hand: a ``jax.jit``-ed optax step called from a Python loop,
  one seed at a time (the runs of S seeds are S such loops, one after the other);
* ``runner``: ``bench.run_cell`` end to end with its program already compiled (logging every
  ``log_every`` steps, oracle counts, target tracking, end-point Hessian eigenvalues, DataFrame);
  ``program`` is the same without the Python around it (the compiled call alone);
* ``floor``: a minimal ``jit(vmap(scan))`` of the optax step with no logging at all, compiled
  as users compile it (``jax.jit``, XLA's default options, no unrolling);
* ``tuned floor``: the same program with the runner's two tunings (``program.step_unroll`` steps
  per loop iteration, ``program.compiler_options("adam")``), so ``runner / tuned floor`` is what the
  logging and bookkeeping alone cost.

Every figure is the best of ``repeats`` timed calls after a warm-up call, so compile time is
excluded everywhere (it is reported apart). Ratios: hand/runner (the speed-up users get) and
runner/floor (the cost of logging and bookkeeping).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

import problems
from bench import program, runner, schema


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: compiles, fills caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def hand_loop(problem, learning_rate: float, steps: int, seeds: list[int]):
    """The per-step jitted loop: returns a callable that runs every seed one after the other."""
    tx = optax.adam(learning_rate)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(problem.full_loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    def run():
        out = []
        for s in seeds:
            params = problem.init(jax.random.split(jax.random.key(s))[0])
            state = tx.init(params)
            for _ in range(steps):
                params, state, loss = step(params, state)
            out.append(jax.block_until_ready(params))
        return out

    return run


def floor_program(problem, learning_rate: float, steps: int, seeds: list[int], tuned: bool = False):
    """Minimal ``jit(vmap(scan))``: the fastest this computation runs with nothing logged.

    ``tuned``: unroll and compile it as the runner does its own programs.
    """
    tx = optax.adam(learning_rate)

    def one(key):
        params = problem.init(jax.random.split(key)[0])
        state = tx.init(params)

        def step(carry, _):
            params, state = carry
            grads = jax.grad(problem.full_loss)(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        unroll = program.step_unroll("adam") if tuned else 1
        (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps, unroll=unroll)
        return params

    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    compiled = jax.jit(jax.vmap(one)).lower(keys).compile(program.compiler_options("adam") if tuned else None)
    return lambda: jax.block_until_ready(compiled(keys))


def measure(seeds: int, steps: int = 2000, dim: int = 20, repeats: int = 3, log_every: int = 10,
            learning_rate: float = 1e-2) -> dict:
    problem = problems.get("rosenbrock", dim=dim)
    seed_list = list(range(seeds))
    hp = {"learning_rate": learning_rate}

    t0 = time.perf_counter()
    df = runner.run_cell(problem, "adam", hparams=hp, seeds=seed_list, steps=steps, log_every=log_every)
    first_call = time.perf_counter() - t0
    compile_s = float(df[schema.COMPILE_S].iloc[0])

    program_times = []

    def run_runner():
        d = runner.run_cell(problem, "adam", hparams=hp, seeds=seed_list, steps=steps, log_every=log_every)
        program_times.append(float(d[schema.CELL_RUN_S].iloc[0]))

    t_runner = _best(run_runner, repeats)
    t_program = min(program_times[1:])
    t_hand = _best(hand_loop(problem, learning_rate, steps, seed_list), max(1, repeats - 1))
    t_floor = _best(floor_program(problem, learning_rate, steps, seed_list), repeats)
    t_tuned = _best(floor_program(problem, learning_rate, steps, seed_list, tuned=True), repeats)
    return {
        "seeds": seeds,
        "hand_per_run_s": t_hand / seeds,
        "runner_per_run_s": t_runner / seeds,
        "program_per_run_s": t_program / seeds,
        "floor_per_run_s": t_floor / seeds,
        "tuned_floor_per_run_s": t_tuned / seeds,
        "hand_over_runner": t_hand / t_runner,
        "runner_over_floor": t_runner / t_floor,
        "program_over_floor": t_program / t_floor,
        "runner_over_tuned_floor": t_runner / t_tuned,
        "runner_compile_s": compile_s,
        "runner_first_call_s": first_call,
    }


def main(seeds=(1, 8, 32), steps: int = 2000, dim: int = 20, repeats: int = 3) -> list[dict]:
    dev = jax.devices()[0]
    print(f"Adam (lr 1e-2) on rosenbrock(dim={dim}), {steps} steps, log_every 10; "
          f"backend {jax.default_backend()} ({dev.device_kind}), jax {jax.__version__}; best of {repeats}.")
    print()
    print("| seeds | hand loop s/run | runner s/run | program s/run | floor s/run | tuned floor s/run "
          "| hand / runner | runner / floor | program / floor | runner / tuned floor | runner compile s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for s in seeds:
        r = measure(s, steps=steps, dim=dim, repeats=repeats)
        rows.append(r)
        print(f"| {s} | {r['hand_per_run_s']:.4g} | {r['runner_per_run_s']:.3g} | {r['program_per_run_s']:.3g} "
              f"| {r['floor_per_run_s']:.3g} | {r['tuned_floor_per_run_s']:.3g} | {r['hand_over_runner']:.0f}x "
              f"| {r['runner_over_floor']:.2f}x | {r['program_over_floor']:.2f}x "
              f"| {r['runner_over_tuned_floor']:.2f}x | {r['runner_compile_s']:.2f} |", flush=True)
    return rows


def oracle_times(problem_name: str, batch: int = 32, repeats: int = 5) -> dict:
    """Measured seconds of a gradient (with its value) and of an HVP of ``problem.loss``, each
    vmapped over ``batch`` points (as the runner runs them), and their ratio beside the flop
    weight ``bench.cost.weights`` charges: the weights are device-independent, the times are not."""
    from bench import cost

    p = problems.get(problem_name)
    keys = jax.random.split(jax.random.key(0), batch)
    xs = jax.vmap(p.init)(keys)
    k = jax.random.key(1)
    grad = jax.jit(jax.vmap(lambda x: jax.value_and_grad(p.loss)(x, k)))
    hvp = jax.jit(jax.vmap(lambda x, v: jax.jvp(lambda y: jax.grad(p.loss)(y, k), (x,), (v,))[1]))
    t_grad = _best(lambda: jax.block_until_ready(grad(xs)), repeats)
    t_hvp = _best(lambda: jax.block_until_ready(hvp(xs, xs)), repeats)
    w = cost.weights(p.name)
    return {"problem": p.name, "dim": p.dim, "grad_s": t_grad / batch, "hvp_s": t_hvp / batch,
            "hvp_over_grad_time": t_hvp / t_grad, "hvp_weight_flops": w.hvp}


def curvature_cost(problem_name: str, optimizer: str = "adam", seeds: int = 16, steps: int = 200,
                   log_every: int = 10, repeats: int = 3) -> dict:
    """Run seconds of a cell with and without the ``curvature`` flag (compiled programs, best of
    ``repeats``): what recording lambda_min, lambda_max and the index at every logged step costs."""
    p = problems.get(problem_name)
    out = {"problem": p.name, "optimizer": optimizer, "seeds": seeds, "steps": steps, "log_every": log_every}
    for flag in (False, True):
        def run(flag=flag):
            return runner.run_cell(p, optimizer, seeds=seeds, steps=steps, log_every=log_every, curvature=flag)

        df = run()
        out["compile_s" + ("_curvature" if flag else "")] = float(df[schema.COMPILE_S].iloc[0])
        best = min(float(run()[schema.CELL_RUN_S].iloc[0]) for _ in range(repeats))
        out["run_s" + ("_curvature" if flag else "")] = best
    out["curvature_over_plain"] = out["run_s_curvature"] / out["run_s"]
    return out


def landscape_costs(problem_names, repeats: int = 5) -> tuple[list[dict], list[dict]]:
    """Print and return ``oracle_times`` and ``curvature_cost`` for each problem."""
    print()
    print("| problem | dim | gradient s | HVP s | HVP / gradient time | HVP weight (flops) |")
    print("|---|---:|---:|---:|---:|---:|")
    times = []
    for name in problem_names:
        r = oracle_times(name, repeats=repeats)
        times.append(r)
        print(f"| {r['problem']} | {r['dim']} | {r['grad_s']:.3g} | {r['hvp_s']:.3g} | "
              f"{r['hvp_over_grad_time']:.2f} | {r['hvp_weight_flops']:.2f} |", flush=True)
    print()
    print("| problem | plain run s | with --curvature run s | ratio | compile s (plain / curvature) |")
    print("|---|---:|---:|---:|---:|")
    flags = []
    for name in problem_names:
        r = curvature_cost(name, repeats=max(1, repeats // 2))
        flags.append(r)
        print(f"| {r['problem']} | {r['run_s']:.3g} | {r['run_s_curvature']:.3g} | {r['curvature_over_plain']:.2f}x | "
              f"{r['compile_s']:.1f} / {r['compile_s_curvature']:.1f} |", flush=True)
    return times, flags


def spin_glass_compile(ns=(30, 200, 300), p: int = 3, optimizer: str = "adam", seeds: int = 8, steps: int = 100,
                       log_every: int = 10) -> list[dict]:
    """Compile seconds and program size of a spin-glass cell at each n: the coupling tensor passed as
    an argument (``Problem.constants``, what the runner does) against captured as a constant (the
    problem with its constants dropped, so ``jit`` embeds the tensor, as before)."""
    import dataclasses

    from bench import grid as grids

    g = grids.expand(optimizer, None)
    rows = []
    print("| n | n^p floats | compile s (argument) | compile s (embedded) | HLO chars (argument) "
          "| HLO chars (embedded) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in ns:
        prob = problems.get("spin_glass", p=p, n=n, instance=0)
        embedded = dataclasses.replace(prob, constants=None, bind_constants=None)
        row = {"n": n, "entries": n**p}
        for label, pr in (("argument", prob), ("embedded", embedded)):
            program.clear_caches()
            _, compile_s, _ = program.compile_cell(pr, g, steps, log_every, "float32", seeds, devices=1)
            row[f"compile_s_{label}"] = compile_s
            # the size of the program handed to XLA (its StableHLO text; the compiled text elides constants)
            args = ({k: jax.ShapeDtypeStruct((len(g),), jnp.float32) for k in g.traced_names},
                    jax.ShapeDtypeStruct((seeds,), jnp.uint32))
            args += () if pr.constants is None else (pr.constants,)
            lowered = jax.jit(program.build_program(pr, optimizer, g.static, steps, log_every)).lower(*args)
            row[f"hlo_chars_{label}"] = len(lowered.as_text())
        rows.append(row)
        print(f"| {n} | {n**p:.3g} | {row['compile_s_argument']:.2f} | {row['compile_s_embedded']:.2f} "
              f"| {row['hlo_chars_argument']} | {row['hlo_chars_embedded']} |", flush=True)
    return rows


def matmul_gflops(shape=(2048, 2048, 2048), repeats: int = 10) -> float:
    """This machine's dense float32 matmul rate: an (m, k) by (k, n) ``jnp.dot``, 2 m k n flops."""
    m, k, n = shape
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    f = jax.jit(jnp.dot)
    t = _best(lambda: jax.block_until_ready(f(a, b)), repeats)
    return 2 * m * k * n / t / 1e9


def spin_glass_roofline(n: int = 200, p: int = 3, seeds=(1, 4, 16, 64, 256, 1024), repeats: int = 5) -> list[dict]:
    """Achieved GFLOP/s of the vmapped spin-glass gradient (and HVP) against ``matmul_gflops``.

    Flops counted as the program computes them: a gradient is the local field T.s^{p-1}, p - 1
    successive contractions of the symmetric tensor, sum_{k=1}^{p-1} 2 n^{p-k+1} flops per seed
    (the first, 2 n^p, dominates; under ``vmap`` it is one (n^{p-1} x n) by (n x S) matmul). The HVP
    (forward over reverse) is counted at twice the gradient's flops (the field and its tangent).
    """
    prob = problems.get("spin_glass", p=p, n=n, instance=0)
    peak = matmul_gflops()
    grad_flops = sum(2 * n ** (p - k + 1) for k in range(1, p))
    grad = jax.jit(jax.vmap(jax.grad(prob.full_loss)))
    hvp = jax.jit(jax.vmap(lambda w, v: jax.jvp(jax.grad(prob.full_loss), (w,), (v,))[1]))
    print(f"dense float32 matmul: {peak:.1f} GFLOP/s (2048^3, best of 10); spin_glass(p={p},n={n}), best of {repeats}; "
          f"backend {jax.default_backend()}, jax {jax.__version__}")
    print("| seeds | gradient ms | gradient GFLOP/s | % of matmul | same-shape matmul GFLOP/s | HVP ms "
          "| HVP / gradient time |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for s in seeds:
        w = jax.vmap(prob.init)(jax.random.split(jax.random.key(1), s))
        t_g = _best(lambda w=w: jax.block_until_ready(grad(w)), repeats)
        t_h = _best(lambda w=w: jax.block_until_ready(hvp(w, w)), repeats)
        rate = grad_flops * s / t_g / 1e9
        same = matmul_gflops((n ** (p - 1), n, s), repeats)  # the gradient's dominant contraction alone
        rows.append({"seeds": s, "grad_s": t_g, "gflops": rate, "fraction": rate / peak, "same_shape_gflops": same,
                     "hvp_s": t_h})
        print(f"| {s} | {1e3 * t_g:.3g} | {rate:.1f} | {100 * rate / peak:.0f}% | {same:.1f} | {1e3 * t_h:.3g} "
              f"| {t_h / t_g:.2f} |", flush=True)
    return rows


if __name__ == "__main__":  # python -m bench.perf spin-glass-compile | spin-glass-roofline
    import sys

    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "spin-glass-compile":
        spin_glass_compile()
    elif what == "spin-glass-roofline":
        spin_glass_roofline()
    else:
        sys.exit("usage: python -m bench.perf spin-glass-compile | spin-glass-roofline")
