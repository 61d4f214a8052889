"""``python -m bench perf``: the performance report (docs/PERFORMANCE.md), one Markdown table per section.

Sections (``--sections``, default all), each printed under the machine line (``machine_line``):

* ``runner``: on the same problem, optimizer and step count, per run (one seed's trajectory):

  - ``hand``: the loop users write by hand: a ``jax.jit``-ed optax step called from a Python loop,
    one seed at a time (the runs of S seeds are S such loops, one after the other);
  - ``runner``: ``bench.run_cell`` end to end with its program already compiled (logging every
    ``log_every`` steps, oracle counts, target tracking, end-point Hessian eigenvalues, DataFrame);
    ``program`` is the same without the Python around it (the compiled call alone);
  - ``floor``: a minimal ``jit(vmap(scan))`` of the optax step with no logging at all, compiled
    as users compile it (``jax.jit``, XLA's default options, no unrolling);
  - ``tuned floor``: the same program with the runner's two tunings (``program.step_unroll`` steps
    per loop iteration, ``program.compiler_options("adam")``), so ``runner / tuned floor`` is what the
    logging and bookkeeping alone cost.

* ``torch``: the same problem and optimizer in a PyTorch ``torch.optim.Adam`` loop (``torch_loop``;
  the optional extra ``pip install -e '.[torch]'``, imported only here), its final losses checked
  against the JAX floor's.
* ``roofline``: the vmapped spin-glass gradient and HVP against this machine's matmul rate
  (``spin_glass_roofline``).
* ``compile``: compile seconds per cell and their share of a stored suite's time (``compile_share``).

Every time is the best of ``repeats`` timed calls after a warm-up call, so compile time is
excluded everywhere (it is reported apart). Also ``python -m bench.perf spin-glass-compile |
spin-glass-roofline [chain | compare]`` for the spin-glass tables alone.
"""

from __future__ import annotations

import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import optax

import problems
from bench import program, runner, schema

SECTIONS = ("runner", "torch", "roofline", "compile")


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


def machine_line() -> str:
    """The machine a table was measured on: CPU model and cores, backend, device, jax, date, load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    dev = jax.devices()[0]
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"Machine: {cpu}, {os.cpu_count()} cores; backend {jax.default_backend()} ({dev.device_kind}); "
            f"jax {jax.__version__}; {time.strftime('%Y-%m-%d', time.gmtime())}; load average {load}.")


def runner_table(seeds=(1, 8, 32), steps: int = 2000, dim: int = 20, repeats: int = 3) -> list[dict]:
    """Section ``runner``: runner vs hand loop vs floor vs tuned floor (``measure``), printed."""
    print(f"Adam (lr 1e-2) on rosenbrock(dim={dim}), {steps} steps, log_every 10; best of {repeats}. "
          "Goals: hand / runner >= 100x and runner / tuned floor <= 1.5x at 32 seeds.")
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


main = runner_table  # the name ``bench perf`` called before it had sections


# -- the same loop in PyTorch ----------------------------------------------------------------------

TORCH_VERSION = "2.13.0"  # the optional extra's pin (pyproject.toml: torch)
TORCH_LOSS_RTOL = 1e-4  # final losses, torch vs the JAX floor (torch_table's docstring)


def torch_rosenbrock(x):
    """Rosenbrock of each row of ``x`` (a (seeds, dim) torch tensor), as ``problems.rosenbrock``:
    sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 (float32 in, float32 out, shape (seeds,))."""
    return (100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2).sum(dim=1)


def torch_loop(x0, learning_rate: float, steps: int):
    """Adam on Rosenbrock in a plain ``torch.optim`` loop, every seed at once, as users write it.

    ``x0``: the (seeds, dim) start points (numpy float32, the JAX floor's). The seeds form one
    (seeds, dim) parameter tensor: Rosenbrock is separable over rows, so the gradient of the summed
    loss is each row's own gradient, and ``torch.optim.Adam`` (betas 0.9, 0.999, eps 1e-8, optax's
    defaults) is elementwise, so each row follows the per-seed trajectory of ``optax.adam``.
    Returns ``run() -> final points (numpy (seeds, dim))``. Raises ImportError without torch.
    """
    import numpy as np
    import torch

    def run():
        x = torch.tensor(np.asarray(x0, np.float32), requires_grad=True)
        opt = torch.optim.Adam([x], lr=learning_rate)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            torch_rosenbrock(x).sum().backward()
            opt.step()
        return x.detach().numpy()

    return run


def floor_start_points(problem, seeds: list[int]):
    """The start points of ``floor_program``'s runs: ``problem.init(split(key(seed))[0])`` per seed."""
    starts = jax.jit(jax.vmap(lambda s: problem.init(jax.random.split(jax.random.key(s))[0])))
    return starts(jnp.asarray(seeds, jnp.uint32))


def torch_measure(seeds: int, steps: int = 2000, dim: int = 20, repeats: int = 3, learning_rate: float = 1e-2,
                  runner_per_run_s: float | None = None) -> dict:
    """One row of ``torch_table``: torch loop, JAX floor (and the runner, unless given) per run, and
    the largest relative difference of the final losses, torch against the JAX floor."""
    import numpy as np
    import torch

    problem = problems.get("rosenbrock", dim=dim)
    seed_list = list(range(seeds))
    x0 = np.array(floor_start_points(problem, seed_list))
    run_torch = torch_loop(x0, learning_rate, steps)
    t_torch = _best(run_torch, max(1, repeats // 2))
    f_torch = torch_rosenbrock(torch.from_numpy(run_torch())).numpy()
    floor = floor_program(problem, learning_rate, steps, seed_list)
    t_floor = _best(floor, repeats)
    f_jax = np.asarray(jax.vmap(problem.full_loss)(floor()))
    if runner_per_run_s is None:
        hp = {"learning_rate": learning_rate}
        t_runner = _best(lambda: runner.run_cell(problem, "adam", hparams=hp, seeds=seed_list, steps=steps), repeats)
        runner_per_run_s = t_runner / seeds
    rel = float(np.max(np.abs(f_torch.astype(np.float64) - f_jax) / np.maximum(np.abs(f_jax), 1e-30)))
    return {"seeds": seeds, "torch_per_run_s": t_torch / seeds, "floor_per_run_s": t_floor / seeds,
            "runner_per_run_s": runner_per_run_s, "torch_over_runner": t_torch / seeds / runner_per_run_s,
            "torch_over_floor": t_torch / t_floor, "loss_rel_diff": rel, "agree": rel <= TORCH_LOSS_RTOL,
            "torch_threads": torch.get_num_threads(), "torch_version": torch.__version__}


def torch_table(seeds=(1, 8, 32), steps: int = 2000, dim: int = 20, repeats: int = 3,
                runner_rows: list[dict] | None = None) -> list[dict] | None:
    """Section ``torch``: Adam on rosenbrock(dim) in ``torch.optim`` against the runner and the JAX floor.

    The torch loop starts from the floor's start points and runs the same steps at the same
    learning rate; its final losses must equal the floor's to ``TORCH_LOSS_RTOL`` relative: the
    two compute the same float32 iteration with other roundings (optax: m_hat/(sqrt(v_hat) + eps);
    torch: (m/bc1)/(sqrt(v)/sqrt(bc2) + eps)), which move the final losses by 1e-6 relative in
    2000 steps on this problem; a wrong update rule or start moves them by percents.
    Without torch, prints one skip line and returns None. ``runner_rows``: the runner section's rows,
    whose runner times are reused.
    """
    try:
        import torch  # noqa: F401  (the optional extra)
    except ImportError:
        print(f"torch section skipped: torch is not installed (pip install -e '.[torch]', torch=={TORCH_VERSION}).")
        return None
    done = {r["seeds"]: r["runner_per_run_s"] for r in runner_rows or []}
    rows = []
    for s in seeds:
        r = torch_measure(s, steps=steps, dim=dim, repeats=repeats, runner_per_run_s=done.get(s))
        if not rows:
            print(f"Adam (lr 1e-2) on rosenbrock(dim={dim}), {steps} steps: torch {r['torch_version']} "
                  f"`torch.optim.Adam` loop on a (seeds, {dim}) tensor ({r['torch_threads']} threads, eager) "
                  f"vs the runner and the JAX floor (`jit(vmap(scan))`); best of {repeats} (torch: "
                  f"{max(1, repeats // 2)}). Final losses: torch vs JAX floor, max relative difference "
                  f"(agree: <= {TORCH_LOSS_RTOL:g}).")
            print()
            print("| seeds | torch s/run | runner s/run | JAX floor s/run | torch / runner | torch / floor "
                  "| final losses: max rel. diff | agree |")
            print("|---:|---:|---:|---:|---:|---:|---:|---|")
        rows.append(r)
        print(f"| {s} | {r['torch_per_run_s']:.4g} | {r['runner_per_run_s']:.3g} | {r['floor_per_run_s']:.3g} "
              f"| {r['torch_over_runner']:.0f}x | {r['torch_over_floor']:.0f}x | {r['loss_rel_diff']:.1e} "
              f"| {'yes' if r['agree'] else 'NO'} |", flush=True)
    return rows


# -- compile time in a stored suite ----------------------------------------------------------------

COMPILE_COLUMNS = ["problem", "optimizer", "compile_s", "compile_cached", "cell_run_s", "landscape_s"]


def compile_share(results: str = "results"):
    """Per problem: the stored cells' compile seconds and their share of the suite's time.

    Reads the first row of each cell file of the store ``results`` (``<results>/cells/*.parquet``;
    only the timing columns, no checksums: a report, not a load) and sums per problem
    ``compile_s`` (0 for a cell whose program came from the in-process cache), ``cell_run_s`` (the
    program) and ``landscape_s`` (end-point eigenvalues and frame); share = compile / (compile + run
    + landscape). Seconds are summed over cells, so over the worker processes, not wall time.
    Returns (per-problem frame with a final "all" row, per-cell frame); None if no cells are stored.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    from bench.store import Store

    rows = []
    for path in Store(results).files():
        names = pq.read_schema(path).names
        t = pq.read_table(path, columns=COMPILE_COLUMNS + [c for c in ("utc_time",) if c in names])
        if t.num_rows:
            rows.append(t.slice(0, 1).to_pylist()[0])
    if not rows:
        return None
    cells = pd.DataFrame(rows)
    if "utc_time" not in cells:
        cells["utc_time"] = None
    cells["total_s"] = cells["compile_s"] + cells["cell_run_s"] + cells["landscape_s"]
    agg = {"cells": ("compile_s", "size"), "compile_s": ("compile_s", "sum"),
           "compile_median_s": ("compile_s", "median"), "compile_max_s": ("compile_s", "max"),
           "run_s": ("cell_run_s", "sum"), "landscape_s": ("landscape_s", "sum"), "total_s": ("total_s", "sum")}
    per = cells.groupby("problem", sort=True).agg(**agg).reset_index()
    total = cells.assign(problem="all").groupby("problem").agg(**agg).reset_index()
    per = pd.concat([per, total], ignore_index=True)
    per["compile_share"] = per["compile_s"] / per["total_s"]
    return per, cells


def compile_table(results: str = "results"):
    """Section ``compile``: ``compile_share`` of the store ``results``, printed; None if it holds no cells."""
    import pandas as pd

    out = compile_share(results)
    if out is None:
        print(f"compile section skipped: no stored cells under {results}/cells (run `python -m bench run` first, "
              "or pass --results DIR).")
        return None
    per, cells = out
    written = pd.to_datetime(cells["utc_time"].dropna(), utc=True)
    span = ""
    if not written.empty:
        minutes = (written.max() - written.min()).total_seconds() / 60
        span = (f" The cells were written from {written.min():%Y-%m-%d %H:%M} to {written.max():%H:%M} UTC "
                f"({minutes:.1f} min between the first and the last).")
    print(f"Compile seconds of the {len(cells)} cells stored in `{results}` (sums over cells, i.e. over the "
          f"worker processes; share = compile / (compile + run + landscape)).{span}")
    print()
    print("| problem | cells | compile s | compile s per cell (median) | max | run s | landscape s | compile share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in per.itertuples():
        name = f"**{r.problem}**" if r.problem == "all" else r.problem
        print(f"| {name} | {r.cells} | {r.compile_s:.1f} | {r.compile_median_s:.2f} | {r.compile_max_s:.2f} "
              f"| {r.run_s:.1f} | {r.landscape_s:.1f} | {100 * r.compile_share:.0f}% |")
    return per


# XLA's CPU compile phases, by the names of its profiler events (jaxlib 0.10.2), as compile_phases
# reports them: (column, event name).
COMPILE_PHASES = (("HLO passes", "HLO passes through layout assignment"), ("HLO passes", "HLO passes after layout "
                  "assignment"), ("thunk emission", "ThunkEmitter::EmitEntryComputation"),
                  ("fusion emitters", "FusionCompiler::Compile"), ("LLVM codegen", "JitCompiler::Compile"))


def compile_phases(cells=("strict_saddle:adam", "relu_mlp:adam", "spin_glass:cubic_reg", "rosenbrock:perturbed_gd"),
                   suite: str = "quick") -> list[dict]:
    """Where a cell's compile time goes: tracing and lowering, then XLA's phases, per program.

    ``cells``: "problem prefix:optimizer" of the ``suite``'s cells. Each program is built as
    ``program.compile_cell`` builds it; tracing + lowering are timed, then the XLA compile runs under
    ``jax.profiler.trace`` and the trace's events are summed by phase (``COMPILE_PHASES``): HLO
    passes, thunk emission (the main thread's wall, the fusion emitters running inside it), the MLIR
    fusion emitters (summed over kernels and threads: CPU seconds), LLVM codegen (the main thread's
    wall; its worker threads' ``TaskDispatcher::dispatch`` events give the CPU seconds). The number
    of kernels is the number of fusion-emitter events (none for the classic emitters that
    second-order programs use, ``program.compiler_options``).
    """
    import glob
    import gzip
    import json
    import tempfile

    from bench import suites

    by_name = {}
    for c in suites.get(suite).cells():
        by_name.setdefault((c.problem.split("(")[0], c.optimizer), c)
    rows = []
    print("| cell | trace + lower s | XLA compile s | HLO passes s | thunk emission s | fusion emitters CPU s "
          "| LLVM codegen s (CPU s) | kernels | ms CPU per kernel |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in cells:
        prefix, optimizer = name.split(":")
        cell = by_name.get((prefix, optimizer))
        if cell is None:
            raise ValueError(f"no cell {name!r} in suite {suite!r}")
        prob = problems.get(cell.problem)
        prog = program.build_program(prob, optimizer, cell.grid.static, cell.steps, cell.log_every)
        args = ({k: jax.ShapeDtypeStruct((len(cell.grid),), jnp.float32) for k in cell.grid.traced_names},
                jax.ShapeDtypeStruct((len(cell.seeds),), jnp.uint32))
        if prob.constants is not None:
            args += (jax.tree_util.tree_map(lambda c: jax.ShapeDtypeStruct(c.shape, c.dtype), prob.constants),)
        t0 = time.perf_counter()
        lowered = jax.jit(prog).lower(*args)
        lower_s = time.perf_counter() - t0
        # a real compile, not an executable from this process's or the persistent compilation cache:
        # one more option, unique to this call, in the caches' key (a timeout for collectives, which
        # these one-device programs have none of, so the code is the same)
        options = {**program.compiler_options(optimizer),
                   "xla_cpu_collective_call_warn_stuck_seconds": 10**6 + time.time_ns() % 10**6}
        with tempfile.TemporaryDirectory() as tmp:
            with jax.profiler.trace(tmp):
                t0 = time.perf_counter()
                lowered.compile(options)
                compile_s = time.perf_counter() - t0
            events = [e for f in glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)
                      for e in json.load(gzip.open(f))["traceEvents"] if e.get("ph") == "X"]
        if not any(e["name"] == "PjRtCpuClient::Compile" for e in events):
            raise RuntimeError(f"{name}: the trace holds no XLA CPU compile (another backend, or a jaxlib whose "
                               "profiler events have other names: COMPILE_PHASES)")
        row = {"cell": name, "lower_s": lower_s, "compile_s": compile_s}
        for column, event in COMPILE_PHASES:
            row[column] = row.get(column, 0.0) + sum(e["dur"] for e in events if e["name"].startswith(event)) / 1e6
        row["kernels"] = sum(e["name"] == "FusionCompiler::Compile" for e in events)
        row["codegen_cpu_s"] = sum(e["dur"] for e in events if e["name"] == "TaskDispatcher::dispatch") / 1e6
        cpu = row["fusion emitters"] + max(row["codegen_cpu_s"], row["LLVM codegen"])
        # the classic emitters (second-order programs, program.compiler_options) emit no such events
        row["ms_per_kernel"] = 1e3 * cpu / row["kernels"] if row["kernels"] else math.nan
        rows.append(row)
        kernels = f"{row['kernels']} | {row['ms_per_kernel']:.0f}" if row["kernels"] else "- | -"
        print(f"| {name} | {lower_s:.2f} | {compile_s:.2f} | {row['HLO passes']:.2f} | {row['thunk emission']:.2f} "
              f"| {row['fusion emitters']:.2f} | {row['LLVM codegen']:.2f} ({row['codegen_cpu_s']:.2f}) "
              f"| {kernels} |", flush=True)
    return rows


def report(sections=SECTIONS, seeds=(1, 8, 32), steps: int = 2000, dim: int = 20, repeats: int = 7,
           roofline_seeds=(1, 4, 16, 64, 256, 1024), results: str = "results") -> dict:
    """``python -m bench perf``: the chosen sections (``SECTIONS``), each a Markdown table under a heading."""
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown perf sections {unknown}; choose from {', '.join(SECTIONS)}")
    print(machine_line())
    out = {}
    if "runner" in sections:
        print("\n## Runner vs hand loop vs floor\n")
        out["runner"] = runner_table(seeds, steps=steps, dim=dim, repeats=repeats)
    if "torch" in sections:
        print("\n## Runner vs PyTorch\n")
        out["torch"] = torch_table(seeds, steps=steps, dim=dim, repeats=repeats, runner_rows=out.get("runner"))
    if "roofline" in sections:
        print("\n## Spin-glass gradient against the matmul roofline\n")
        out["roofline"] = spin_glass_roofline(seeds=roofline_seeds, repeats=max(5, repeats))
    if "compile" in sections:
        print("\n## Compile time in a stored suite\n")
        out["compile"] = compile_table(results)
    return out


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


# The local field's contraction orders (problems.spin_glass.local_field), as _energy's arguments.
FIELD_ORDERS = {"chain": {"gemm_min_entries": math.inf, "blocked": False},
                "matmul": {"gemm_min_entries": 0, "blocked": False},
                "blocked": {"gemm_min_entries": 0, "blocked": True}}


def default_field_order(p: int, n: int) -> str:
    """The order the problem's vmapped field runs in on this backend (``local_field``)."""
    from problems.spin_glass import FIELD_GEMM_MIN_ENTRIES

    if p == 2 or n ** (p - 1) < FIELD_GEMM_MIN_ENTRIES:
        return "chain"
    return "blocked" if p == 3 and jax.default_backend() == "cpu" else "matmul"


def _field_order_functions(prob, p: int, n: int, order: str | None = None):
    """``(vmapped gradient, vmapped HVP)`` of the spin glass, its field in ``order`` (None: the
    problem's own), jitted with the coupling tensor as an argument, as the runner compiles it
    (not a 32 MB constant embedded in the program)."""
    from problems.spin_glass import _chart_functions, _energy

    if order is None:
        def loss(t):
            return prob.bind(t).full_loss
    else:
        def loss(t):
            return _chart_functions(p, n, lambda c: _energy(c, **FIELD_ORDERS[order]))(t)["full_loss"]

    grad = jax.jit(lambda w, t: jax.vmap(jax.grad(loss(t)))(w))
    hvp = jax.jit(lambda w, v, t: jax.vmap(lambda x, d: jax.jvp(jax.grad(loss(t)), (x,), (d,))[1])(w, v))
    t = jnp.asarray(prob.constants)
    return (lambda w: grad(w, t)), (lambda w, v: hvp(w, v, t))


def _order_flops(p: int, n: int, order: str, points: int) -> int:
    """Flops of one point's field in ``order`` within a vmapped batch of ``points`` points (the
    blocked order is the matmul order below ``FIELD_BLOCKED_MIN_POINTS``)."""
    from problems.spin_glass import FIELD_BLOCKED_MIN_POINTS, field_flops

    kw = FIELD_ORDERS[order]
    blocked = kw["blocked"] and p == 3 and points >= FIELD_BLOCKED_MIN_POINTS
    return field_flops(p, n, kw["gemm_min_entries"], blocked=blocked)


def spin_glass_roofline(n: int = 200, p: int = 3, seeds=(1, 4, 16, 64, 256, 1024), repeats: int = 5,
                        order: str = "default") -> list[dict]:
    """Achieved GFLOP/s of the vmapped spin-glass gradient (and HVP) against ``matmul_gflops``.

    ``jax.jit(jax.vmap(jax.grad(full_loss)))`` of ``spin_glass(p, n, instance=0)`` over S points,
    the coupling tensor an argument of the program (``_field_order_functions``).
    Flops counted as the program computes them: a gradient is one local field T.s^{p-1}
    (``problems.spin_glass.field_flops``): in the blocked order (p = 3 at n >= 128 on the CPU) and
    the chain order 2 n^3 + 2 n^2 for p = 3, whose dominant work is (n^2 x n) by (n x S) matmuls,
    block of rows by block (blocked) or at once (chain); in the matmul order 2 n^p + n^2, one
    (n x n^2) by (n^2 x S) matmul; the O(n) chart around it is not counted. *same-shape matmul*:
    that dominant matmul alone, as one ``jnp.dot``, the ceiling of the contraction. The HVP is
    forward over reverse (the field and its tangent). Times: the better of two alternated rounds,
    each the best of ``repeats``. ``order``: "default" (the problem as it is
    on this backend, ``default_field_order``), or one of ``FIELD_ORDERS`` at every size (for the
    before/after tables).
    """
    if order != "default" and order not in FIELD_ORDERS:
        raise ValueError(f"order must be 'default' or one of {', '.join(FIELD_ORDERS)}, got {order!r}")
    prob = problems.get("spin_glass", p=p, n=n, instance=0)
    name = default_field_order(p, n) if order == "default" else order
    grad, hvp = _field_order_functions(prob, p, n, None if order == "default" else name)
    peak_before = matmul_gflops()
    from problems.spin_glass import FIELD_BLOCKED_MIN_POINTS

    def runs(s):  # the order a batch of s points runs in
        return "matmul" if name == "blocked" and (p != 3 or s < FIELD_BLOCKED_MIN_POINTS) else name

    shapes = {"matmul": "(n x n^{p-1}) by (n^{p-1} x S)", "chain": "(n^{p-1} x n) by (n x S)",
              "blocked": "(n^{p-1} x n) by (n x S)"}
    rows = []
    for s in seeds:
        w = jax.vmap(prob.init)(jax.random.split(jax.random.key(1), s))
        v = jax.random.normal(jax.random.key(2), w.shape, w.dtype)  # a generic direction, not w (radial)
        t_g = t_h = math.inf
        for _ in range(2):  # alternated: a first spell after a new batch size ran 1.5x slow
            t_g = min(t_g, _best(lambda w=w: jax.block_until_ready(grad(w)), repeats))
            t_h = min(t_h, _best(lambda w=w, v=v: jax.block_until_ready(hvp(w, v)), repeats))
        gemm = runs(s) == "matmul"
        same = matmul_gflops((n, n ** (p - 1), s) if gemm else (n ** (p - 1), n, s), repeats)
        flops = _order_flops(p, n, name, s)
        rows.append({"seeds": s, "grad_s": t_g, "gflops": flops * s / t_g / 1e9, "same_shape_gflops": same,
                     "hvp_s": t_h, "order": runs(s), "flops_per_point": flops})
    # the machine's rate: the better of two measurements, before and after the rows (a shared machine
    # is slower at times; against the better one the fractions are conservative)
    peak = max(peak_before, matmul_gflops())
    orders = sorted({r["order"] for r in rows}, key=[r["order"] for r in rows].index)
    described = "; ".join(
        f"{o} order{' (' + str(FIELD_BLOCKED_MIN_POINTS) + ' points and more)' if o == 'blocked' else ''}: "
        f"same-shape matmul {shapes[o]}, gradient {next(r['flops_per_point'] for r in rows if r['order'] == o):.3g} "
        "flops per point" for o in orders)
    print(f"dense float32 matmul: {peak:.1f} GFLOP/s (2048^3, best of 10, the better of before and after the "
          f"rows); spin_glass(p={p},n={n}), {described}; best of {repeats}.")
    print()
    print("| seeds | gradient ms | gradient GFLOP/s | % of matmul | same-shape matmul GFLOP/s | HVP ms "
          "| HVP / gradient time |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        r.update(fraction=r["gflops"] / peak, peak_gflops=peak)
        print(f"| {r['seeds']} | {1e3 * r['grad_s']:.3g} | {r['gflops']:.1f} | {100 * r['fraction']:.0f}% "
              f"| {r['same_shape_gflops']:.1f} | {1e3 * r['hvp_s']:.3g} | {r['hvp_s'] / r['grad_s']:.2f} |")
    return rows


def spin_glass_roofline_compare(n: int = 200, p: int = 3, seeds=(1, 4, 16, 64, 256, 1024), repeats: int = 5,
                                rounds: int = 2, orders=("chain", "matmul", "blocked")) -> list[dict]:
    """Before/after: the field's contraction orders (``FIELD_ORDERS``, ``problems.spin_glass.local_field``),
    timed alternately at each batch size (``rounds`` times, best of ``repeats`` each; the best kept), so a
    shared machine's slow spells hit them alike. Rates against ``matmul_gflops``."""
    prob = problems.get("spin_glass", p=p, n=n, instance=0)
    fns = {name: _field_order_functions(prob, p, n, name) for name in orders}
    peak = matmul_gflops()
    rows = []
    for s in seeds:
        w = jax.vmap(prob.init)(jax.random.split(jax.random.key(1), s))
        v = jax.random.normal(jax.random.key(2), w.shape, w.dtype)
        row = {"seeds": s}
        for _ in range(rounds):
            for name, (grad, hvp) in fns.items():
                t_g = _best(lambda grad=grad, w=w: jax.block_until_ready(grad(w)), repeats)
                t_h = _best(lambda hvp=hvp, w=w, v=v: jax.block_until_ready(hvp(w, v)), repeats)
                row[f"{name}_grad_s"] = min(row.get(f"{name}_grad_s", math.inf), t_g)
                row[f"{name}_hvp_s"] = min(row.get(f"{name}_hvp_s", math.inf), t_h)
        rows.append(row)
    peak = max(peak, matmul_gflops())
    print(f"spin_glass(p={p},n={n}): the field's orders {', '.join(orders)}, timed alternately, best of {rounds} x "
          f"{repeats}; dense float32 matmul {peak:.1f} GFLOP/s (2048^3, the better of before and after the rows).")
    print()
    print("| seeds | " + " | ".join(f"gradient ms: {o}" for o in orders) + " | "
          + " | ".join(f"GFLOP/s (% of matmul): {o}" for o in orders) + " | "
          + " | ".join(f"HVP / gradient: {o}" for o in orders) + " |")
    print("|---:" * (1 + 3 * len(orders)) + "|")
    for r in rows:
        s = r["seeds"]
        for name in orders:
            r[f"{name}_gflops"] = _order_flops(p, n, name, s) * s / r[f"{name}_grad_s"] / 1e9
        r["peak_gflops"] = peak
        print(f"| {s} | " + " | ".join(f"{1e3 * r[f'{o}_grad_s']:.3g}" for o in orders) + " | "
              + " | ".join(f"{r[f'{o}_gflops']:.1f} ({100 * r[f'{o}_gflops'] / peak:.0f}%)" for o in orders) + " | "
              + " | ".join(f"{r[f'{o}_hvp_s'] / r[f'{o}_grad_s']:.2f}" for o in orders) + " |", flush=True)
    return rows


def spin_glass_block_rows(n: int = 200, points=(64, 128, 256), rows=(5, 10, 20, 25, 40), repeats: int = 5,
                          rounds: int = 4) -> list[dict]:
    """GFLOP/s of the blocked field alone (``problems.spin_glass._blocked_p3``) at each block size
    (rows of T per block, divisors of n) and batch size, the tensor an argument, timed alternately
    (``rounds`` x best of ``repeats``): how ``FIELD_BLOCK_ROWS`` was chosen."""
    from problems.spin_glass import _blocked_p3

    prob = problems.get("spin_glass", p=3, n=n, instance=0)
    t = jnp.asarray(prob.constants)
    bad = [r for r in rows if n % r]
    if bad:
        raise ValueError(f"rows must divide n = {n}, got {bad}")
    fns = {r: jax.jit(lambda s, t, r=r: _blocked_p3(t, s, None, r)[0]) for r in rows}
    print(f"spin_glass(p=3,n={n}): the blocked field alone, GFLOP/s (2 n^3 + 2 n^2 flops per point), best of "
          f"{rounds} x {repeats}, alternated.")
    print()
    print("| points | " + " | ".join(f"rows {r}" for r in rows) + " |")
    print("|---:" * (1 + len(rows)) + "|")
    out = []
    for m in points:
        s = jax.random.normal(jax.random.key(1), (m, n), jnp.float32)
        best = {}
        for f in fns.values():
            jax.block_until_ready(f(s, t))
        for _ in range(rounds):
            for r, f in fns.items():
                best[r] = min(best.get(r, math.inf), _best(lambda f=f, s=s: jax.block_until_ready(f(s, t)), repeats))
        row = {"points": m, **{r: (2 * n**3 + 2 * n**2) * m / best[r] / 1e9 for r in rows}}
        out.append(row)
        print(f"| {m} | " + " | ".join(f"{row[r]:.1f}" for r in rows) + " |", flush=True)
    return out


if __name__ == "__main__":  # python -m bench.perf spin-glass-compile | spin-glass-blocks | spin-glass-roofline [...]
    import sys

    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "spin-glass-compile":
        spin_glass_compile()
    elif what == "compile-phases":
        print(machine_line())
        compile_phases(*([sys.argv[2].split(",")] if len(sys.argv) > 2 else []))
    elif what == "spin-glass-blocks":
        print(machine_line())
        spin_glass_block_rows()
    elif what == "spin-glass-roofline" and len(sys.argv) <= 3:
        print(machine_line())
        if sys.argv[2:] == ["compare"]:
            spin_glass_roofline_compare()
        else:
            spin_glass_roofline(order=sys.argv[2] if len(sys.argv) > 2 else "default")
    else:
        sys.exit("usage: python -m bench.perf compile-phases [PROBLEM:OPTIMIZER,...] | spin-glass-compile "
                 "| spin-glass-blocks | spin-glass-roofline [chain | matmul | blocked | compare]")
