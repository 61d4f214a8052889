"""``python -m bench list | run | report | compare | replay | reproduce | census | campaign | perf | defaults``."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

import optimizers
import problems
from bench import grid as grids
from bench import plugins, schema, suite_file, suites, validate
from bench.store import CellSpec, CorruptCell, Store


class UsageError(Exception):
    """Bad user input: reported in one line, exit status 2, before anything runs."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in _split_top(text) if t.strip()]


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses: 'rosenbrock(dim=5),strict_saddle'."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def cmd_list(args) -> int:
    """Names, defaults and descriptions from the registries; ``--references`` builds the instances."""
    print("Problems (family: default instance; description" + ("; reference" if args.references else "") + "):")
    for name in problems.names():
        fam = problems.family(name)
        print(f"  {problems.canonical_name(name)}")
        print(f"      {fam.description}")
        if args.references:
            try:
                p = problems.get(name)
            except Exception as err:  # a family whose defaults cannot be built is still listed
                print(f"      cannot build defaults ({err})")
                continue
            ref = p.reference
            f_star = "unknown" if ref.f_star is None else f"{ref.f_star:.6g}"
            print(f"      dim={p.dim}{'  stochastic' if p.stochastic else ''}  f*={f_star}  "
                  f"target<={ref.f_target:.6g}  ({ref.source})")
    print("\nOptimizers (defaults; oracle needs):")
    for name in optimizers.names():
        s = optimizers.spec(name)
        needs = [w for w, f in (("value_fn", s.needs_value_fn), ("HVPs", s.needs_hvp), ("key", s.uses_key)) if f]
        defaults = ", ".join(f"{k}={v}" for k, v in s.defaults.items())
        print(f"  {name}: {defaults}" + (f"  [needs {', '.join(needs)}]" if needs else ""))
        if s.reference:
            print(f"      {s.reference}")
    print("\nSuites:")
    for name in suites.names():
        s = suites.get(name)
        n_opt = len(s.optimizer_names())
        print(f"  {name}: {len(s.entries)} problems x {n_opt} optimizers, {s.seeds} seeds, grid {s.grid}"
              f" - {s.description}")
    return 0


def _suite_from_args(args) -> suites.Suite | None:
    """The suite of ``--suite`` or ``--suite-file`` (None: neither given)."""
    if getattr(args, "suite", None) and getattr(args, "suite_file", None):
        raise UsageError("give either --suite or --suite-file, not both")
    if getattr(args, "suite_file", None):
        return suite_file.load(args.suite_file)  # SuiteFileError: every mistake, one line each
    if getattr(args, "suite", None):
        if args.suite not in suites.names():
            raise UsageError(validate.unknown("suite", args.suite, suites.names()))
        return suites.get(args.suite)
    return None


def _cells_from_args(args) -> tuple[list[suites.Cell], str]:
    if args.suite or getattr(args, "suite_file", None):
        if args.problems or args.optimizers:
            raise UsageError("give either --suite/--suite-file or --problems/--optimizers, not both")
        suite = _suite_from_args(args)
        return suite.cells(), suite.name
    if not args.problems or not args.optimizers:
        raise UsageError("give --suite NAME, --suite-file FILE, or both --problems and --optimizers")
    # budgets first: cheap, and a negative --steps is named as such
    errors = validate.budget_errors(args.seeds, args.steps, args.log_every, args.tune_seeds, where="--")
    if errors:
        raise UsageError(errors[0])
    if not _csv(args.problems) or not _csv(args.optimizers):
        raise UsageError("--problems and --optimizers need at least one name each (comma-separated)")
    cells = []
    probs = []
    for name in _csv(args.problems):
        errors = validate.problem_errors(name)  # built there, so a factory's own checks fail before any run
        if errors:
            raise UsageError(errors[0])
        probs.append(problems.get(name))
    opts = _csv(args.optimizers)
    errors = validate.optimizer_errors(opts)
    if errors:
        raise UsageError(errors[0])
    errors = validate.grid_rule_errors(args.grid)
    if errors:
        raise UsageError(f"--grid: {errors[0]}")
    per_optimizer = _hparams_per_optimizer(args.hparams, opts)
    for o in opts:  # constraints (a positive learning rate, ...), with the closest names for unknown ones
        hp = per_optimizer.get(o)
        errors = validate.hparam_errors(o, hp) if hp is not None else []
        if errors:
            raise UsageError(f"--hparams: {errors[0]}")
    for p in probs:
        for o in opts:
            hp = per_optimizer.get(o)
            try:
                grid = grids.rule(o, args.grid) if hp is None else grids.expand(o, hp)
            except (KeyError, TypeError, ValueError) as err:
                raise UsageError(" ".join(str(err).split())) from None
            cells.append(suites.Cell(p.name, o, grid, list(range(args.seeds)), args.steps, args.log_every,
                                     args.tune_seeds, args.curvature))
    return cells, "custom"


def _is_points(value) -> bool:
    """A JSON object, or a list of them: one optimizer's hyperparameters (never a hyperparameter's value)."""
    return isinstance(value, dict) or (isinstance(value, list) and bool(value)
                                       and all(isinstance(v, dict) for v in value))


def _hparams_per_optimizer(text: str | None, opts: list[str]) -> dict:
    """``--hparams`` as {optimizer: its hyperparameters}; optimizers left out follow ``--grid``.

    Two forms: flat, ``{"learning_rate": [0.01, 0.1]}`` (or a list of such points), for every
    optimizer of the command; or per optimizer, ``{"saddle_free_newton": {"damping": 0.1}}``,
    whose keys are optimizer names and whose values are objects (or lists of objects). A
    hyperparameter's value is never an object, so the two cannot be confused, even where a name
    is both (``momentum``).
    """
    if not text:
        return {}
    try:
        hp = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--hparams is not valid JSON ({err.msg} at character {err.pos}): {text!r}") from None
    except RecursionError:
        raise UsageError("--hparams is nested too deeply") from None
    if isinstance(hp, list):
        return dict.fromkeys(opts, hp)
    if not isinstance(hp, dict):
        raise UsageError(f"--hparams must be a JSON object, got {text!r}")
    nested = sorted(k for k, v in hp.items() if _is_points(v))
    if not nested:
        return dict.fromkeys(opts, hp)
    flat = sorted(set(hp) - set(nested))
    if flat:
        raise UsageError(f"--hparams mixes per-optimizer entries ({', '.join(nested)}) with flat hyperparameters "
                         f"({', '.join(flat)}); put every hyperparameter under its optimizer")
    unknown = [k for k in nested if k not in optimizers.names()]
    if unknown:
        raise UsageError(f"--hparams: unknown optimizer(s) {', '.join(unknown)}"
                         f"{validate.suggest(unknown[0], optimizers.names())}; "
                         f"valid optimizers: {', '.join(optimizers.names())}")
    absent = [k for k in nested if k not in opts]
    if absent:
        raise UsageError(f"--hparams gives hyperparameters for {', '.join(absent)}, which --optimizers does not "
                         f"run ({', '.join(opts)})")
    return hp


def _use_compilation_cache(root) -> None:
    """JAX's persistent compilation cache under ``<results>/jax_cache`` (or ``$JAX_COMPILATION_CACHE_DIR``):
    a re-run after a code change recompiles only the programs that changed. Worker processes inherit it
    through the environment. A cached executable is the same program, so results are the same bits;
    only the recorded compile seconds shrink (they then measure loading it)."""
    import os

    import jax

    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(pathlib.Path(root) / "jax_cache")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
    jax.config.update("jax_compilation_cache_dir", cache)


def _executor(args):
    """The executor of ``--executor`` (None: ``run_cells``' local one), after ``plan_memory`` (before
    JAX starts its backend: building the cells may)."""
    from bench.execute import make_executor, plan_memory

    plan_memory(shared=args.executor == "ray" or (args.workers or 1) > 1)
    if args.executor == "local":
        return None
    executor = make_executor(args.workers, args.cell_timeout, kind=args.executor, address=args.address)
    if args.address:
        try:
            executor.connect()
        except Exception as err:  # unreachable, not a Ray cluster, another Ray version
            raise UsageError(f"cannot connect to the Ray cluster at --address {args.address!r}: "
                             f"{type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
    return executor


def cmd_run(args) -> int:
    from bench.execute import run_cells

    errors = validate.writable_dir_errors(args.results)
    if args.workers is not None and args.workers < 1:
        errors.append(f"--workers must be a positive integer, got {args.workers}")
    if not args.cell_timeout > 0:  # also NaN
        errors.append(f"--cell-timeout must be a positive number of seconds, got {args.cell_timeout}")
    errors += validate.executor_errors(args.executor, args.address)
    if errors:
        raise UsageError(errors[0])
    executor = _executor(args)
    cells, label = _cells_from_args(args)
    store = Store(args.results)
    _use_compilation_cache(store.root)
    print(f"{label}: {len(cells)} cells -> {store.cells}", file=sys.stderr)
    out = run_cells(cells, store, progress=not args.no_progress, workers=args.workers, timeout=args.cell_timeout,
                    retry_failed=args.retry_failed, executor=executor)
    print(
        f"{out.ran} cells run, {out.reused} reused from the store, {len(out.failed)} failed"
        + (f", {out.skipped_failed} skipped (failed before; --retry-failed runs them)" if out.skipped_failed else "")
        + "; "
        f"compile {out.compile_s:.1f} s, run {out.run_s:.1f} s, wall {out.wall_s:.1f} s",
        file=sys.stderr,
    )
    for spec, msg in out.failed:
        print(f"  failed: {spec.optimizer} on {spec.problem}: {msg}", file=sys.stderr)
    # failure is data: failed cells are recorded (results/failures.json) and listed by the report
    return 0


def cmd_report(args) -> int:
    pair = _compare_pair(args.compare) if args.compare else None
    errors = validate.writable_dir_errors(args.results, "report directory")
    if errors:
        raise UsageError(errors[0])
    stores = [Store(s) for s in (args.store or [args.results])]
    for s in stores if args.store else ():
        if not s.cells.is_dir():
            raise UsageError(f"--store {str(s.root)!r}: no stored results there (no {str(s.cells)!r} directory)")
    from bench import multistore
    from bench.reports import landscape_section, leaderboard, plots

    store = Store(args.results)  # where the report is written
    keys = None
    suite = _suite_from_args(args)
    if suite is not None:
        keys = {c.spec().key for c in suite.cells()}
    combined = None
    if args.store:  # several machines' stores: each cell once, the device on every row (bench.multistore)
        combined = multistore.combine(stores, keys)
        df, failures = combined.frame, combined.failures
    else:
        df = store.load_all(keys)
        failures = None
    if df.empty:
        print(f"no stored results in {', '.join(str(s.cells) for s in stores)}; run `python -m bench run --suite "
              "quick` first", file=sys.stderr)
        return 1
    failures = store.failures() if failures is None else failures
    if keys is not None:
        failures = {k: v for k, v in failures.items() if k in keys}
    built = leaderboard.build(df)
    if combined is not None:
        built = (multistore.annotate(built[0], df), built[1])
        if len(combined.devices) > 1 and built[1].get("summary") is not None:
            built[1]["summary"]["score_seconds"] = float("nan")  # times are compared within a device only
    h2h = _report_head_to_head(pair, built[1]["evaluated"]) if pair else None
    land, land_files = landscape_section.build(df, built[0], built[1], store.root, pictures=args.landscape,
                                               figures=not args.no_plots)
    h2h_lines, h2h_files = _head_to_head_section(h2h, store.root, plots=not args.no_plots)
    if combined is not None:
        land = multistore.markdown(combined, stores) + land
    md, csv = leaderboard.write(df, store.root, failures, built, extra=h2h_lines + land if h2h else land)
    print(f"wrote {md} and {csv}", file=sys.stderr)
    written = []
    if not args.no_plots:
        written = (plots.write(df, store.root / "plots") + leaderboard.write_score_plots(built[1], store.root / "plots")
                   + land_files + h2h_files)
        print(f"wrote {len(written)} plots to {store.root / 'plots'}", file=sys.stderr)
    _publish(md, df, built, suite.name if suite is not None else None, written, h2h)
    return 0


def _compare_pair(text: str) -> list[str]:
    """``report --compare A,B``'s two names."""
    pair = _csv(text)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise UsageError(f"--compare takes two different optimizers, e.g. --compare adam,cubic_reg; got {text!r}")
    return pair


def _report_head_to_head(pair: list[str], evaluated):
    """``report --compare A,B``: (head-to-head frame, A, B) from the leaderboard's evaluated runs."""
    from bench.reports import compare

    stored = sorted(set(evaluated[schema.OPTIMIZER].astype(str))) if not evaluated.empty else []
    for o in pair:
        if o not in stored:
            raise UsageError(f"--compare: no stored runs of {o!r}; stored optimizers: {', '.join(stored)}")
    return compare.head_to_head(evaluated, *pair), pair[0], pair[1]


def _head_to_head_section(h2h, root, plots: bool = True):
    """The ``## Head to head`` lines and its figure (none without a pair)."""
    from bench.reports import compare

    if h2h is None:
        return [], []
    frame, a, b = h2h
    files = [compare.write_plot(frame, a, b, root / "plots" / compare.plot_name(a, b))] if plots else []
    return compare.markdown(frame, a, b, plot=f"plots/{compare.plot_name(a, b)}" if plots else None), files


def _publish(md, df, built, suite, figures, h2h) -> None:
    """``index.html`` (every figure embedded) and ``leaderboard.tex`` beside ``LEADERBOARD.md``."""
    from bench.reports import html, latex

    page = html.write(md, df, suite=suite, figures=figures)
    tex = latex.write(built[0], built[1], df, md.parent / "leaderboard.tex", head_to_head=h2h)
    print(f"wrote {page} and {tex}", file=sys.stderr)


def cmd_compare(args) -> int:
    """Two optimizers head to head (``bench.reports.compare``): runs the cells the store lacks, then
    prints per problem the success difference and cost ratio with bootstrap 95% intervals and the winner."""
    import dataclasses

    from bench.execute import run_cells
    from bench.reports import compare

    a, b = args.a, args.b
    for o in (a, b):
        if o not in optimizers.names():
            raise UsageError(f"unknown optimizer {o!r}; valid optimizers: {', '.join(optimizers.names())}")
    if a == b:
        raise UsageError(f"compare two different optimizers, got {a!r} twice")
    errors = validate.executor_errors(args.executor, args.address)
    if errors:
        raise UsageError(errors[0])
    executor = _executor(args)
    if args.problems:
        if args.suite or args.suite_file:
            raise UsageError("give either --suite/--suite-file or --problems, not both")
        args.optimizers, args.curvature = f"{a},{b}", False
        cells, label = _cells_from_args(args)
    else:
        suite = _suite_from_args(args) or suites.get("quick")
        # the suite's own cells for A and B (same specs, so stored cells are reused)
        cells, label = dataclasses.replace(suite, optimizers=(a, b)).cells(), suite.name
    store = Store(args.results)
    print(f"{label}: {len(cells)} cells of {a} and {b} -> {store.cells}", file=sys.stderr)
    out = run_cells(cells, store, progress=not args.no_progress, workers=args.workers, timeout=args.cell_timeout,
                    executor=executor)
    print(f"{out.ran} cells run, {out.reused} reused from the store, {len(out.failed)} failed", file=sys.stderr)
    for spec, msg in out.failed:
        print(f"  failed: {spec.optimizer} on {spec.problem}: {msg}", file=sys.stderr)
    df = store.load_all({c.spec().key for c in cells})
    if df.empty:
        print(f"no results for {a} and {b}: every cell failed", file=sys.stderr)
        return 1
    h2h = compare.head_to_head(compare.evaluated(df, a, b), a, b)
    plot = None
    if not args.no_plots and len(h2h):
        plot = compare.write_plot(h2h, a, b, store.root / "plots" / compare.plot_name(a, b))
    print("\n".join(compare.markdown(h2h, a, b, plot=None if plot is None else str(plot))))
    return 0


def cmd_replay(args) -> int:
    """Re-run stored cells from their specs and compare the numbers bit for bit."""
    from bench.runner import run_cell

    store = Store(args.results)
    paths = [p for p in store.files() if not args.key or p.stem.endswith(args.key)]
    if not paths:
        raise UsageError(f"no stored cell matches {args.key!r} in {store.cells}")
    bad = 0
    for path in paths[: args.limit]:
        try:
            old, _ = Store.read(path)
        except CorruptCell as err:
            print(f"{path.name}: CORRUPT ({err}); not replayed")
            bad += 1
            continue
        spec = CellSpec.from_json(old["cell_spec"].iloc[0])
        new = run_cell(spec.problem, spec.optimizer, hparams=spec.hparam_points(), seeds=list(spec.seeds),
                       steps=spec.steps, log_every=spec.log_every, dtype=spec.dtype, tune_seeds=spec.tune_seeds,
                       curvature=spec.curvature)
        same = all(np.array_equal(old[c].to_numpy(), new[c].to_numpy(), equal_nan=True)
                   for c in (schema.LOSS, schema.GRAD_NORM, schema.N_VALUES, schema.N_GRADS, schema.N_HVPS))
        backend_same = old["backend"].iloc[0] == __import__("jax").default_backend()
        verdict = "identical bits" if same else ("DIFFERENT" + ("" if backend_same else " (other backend)"))
        bad += not same
        print(f"{spec.optimizer} on {spec.problem} [{spec.key}]: {verdict}")
    return 1 if bad else 0


def cmd_reproduce(args) -> int:
    """The paper checks (``bench.reproductions``): REPRODUCTIONS.md, exit 1 if any fails."""
    from bench import reproductions

    return reproductions.main(args.results, only=_csv(args.only) or None, include_slow=not args.fast)


def cmd_perf(args) -> int:
    """The performance report (``bench.perf.report``): the chosen sections as Markdown tables."""
    from bench import perf

    sections = _csv(args.sections) if args.sections else list(perf.SECTIONS)
    if args.skip_runner:
        sections = [s for s in sections if s != "runner"]
    if args.landscape and not args.sections:  # --landscape alone: just its tables, as before
        sections = [s for s in sections if s == "runner" and not args.skip_runner]
    bad = [s for s in sections if s not in perf.SECTIONS]
    if bad:
        raise SystemExit(f"bench perf: unknown section(s) {', '.join(bad)}; choose from {', '.join(perf.SECTIONS)}")
    if sections:
        perf.report(sections, seeds=[int(s) for s in _csv(args.seeds)], steps=args.steps, dim=args.dim,
                    repeats=args.repeats, roofline_seeds=[int(s) for s in _csv(args.roofline_seeds)],
                    results=args.results)
    if args.landscape:
        perf.landscape_costs(_problem_names(args.landscape), repeats=args.repeats)
    return 0


def _problem_names(text: str) -> list[str]:
    """Canonical names of comma-separated problems, each built (so its factory's checks run) here."""
    names = []
    for name in _csv(text):
        try:
            names.append(problems.get(name).name)
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(str(err.args[0]) if err.args else str(err)) from None
    return names


def cmd_campaign(args) -> int:
    """Many restarts of strong optimizers: each problem's best known value (``bench.campaign``)."""
    from bench import campaign

    names = _problem_names(args.problems)
    if args.restarts < 1 or args.steps < 1 or args.seed_base < 0:
        raise UsageError("--restarts and --steps must be positive and --seed-base non-negative")
    campaign.main(names, restarts=args.restarts, steps=args.steps, write=args.write, seed_base=args.seed_base,
                  path=args.path or campaign.BEST_KNOWN_PATH)
    return 0


def cmd_escape(args) -> int:
    """The saddle-escape sweeps (``bench.escape``): escape cost against dimension, curvature, depth."""
    from bench import escape

    sweeps = _csv(args.sweeps)
    bad = [s for s in sweeps if s not in escape.SWEEPS]
    if bad:
        raise UsageError(f"unknown sweep {bad[0]!r}; valid sweeps: {', '.join(escape.SWEEPS)}")
    for o in _csv(args.optimizers):
        if o not in optimizers.names():
            raise UsageError(f"unknown optimizer {o!r}; valid optimizers: {', '.join(optimizers.names())}")
    if args.seeds < 2 or (args.tune_seeds is not None and not 0 <= args.tune_seeds < args.seeds):
        raise UsageError("--seeds must be >= 2 and --tune-seeds in [0, --seeds)")
    escape.run_from_args(args)
    return 0


def cmd_defaults(args) -> int:
    """Defaults from evidence (``bench.defaults``): every grid point of a stored suite, scored."""
    from bench import defaults

    try:
        suites.get(args.suite)
    except KeyError as err:
        raise UsageError(err.args[0]) from None
    try:
        defaults.run_from_args(args)
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0


def cmd_census(args) -> int:
    """The spin glass's critical-point census, with the stored optimizers' end points on it."""
    from bench import census_report

    if args.p < 2 or args.n < 3 or args.starts < 1:
        raise UsageError("--p must be >= 2, --n >= 3 and --starts >= 1")
    lines = census_report.run(args.results, p=args.p, n=args.n, instance=args.instance, starts=args.starts,
                              key=args.key, end_points=not args.no_end_points)
    print("\n".join(lines))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (``error: ...``, exit status 2) instead of usage + error."""

    def error(self, message: str):
        hint = f" (see `{self.prog} --help`)"
        print(f"error: {' '.join(message.split())}{hint}", file=sys.stderr)
        self.exit(2)


IMPORT_HELP = ("a plug-in module that registers optimizers or problems: a module name importable from the current "
               "directory, or a path to a .py file (repeatable; see docs/ADDING.md); installed packages' "
               f"'{plugins.GROUP}' entry points are loaded always")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m bench", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="problems, optimizers and suites")
    ls.add_argument("--references", action="store_true",
                    help="also build each family's default instance and print its f*, target and source")
    run = sub.add_parser("run", help="run a suite or a custom grid of cells (stored cells are reused)")
    run.add_argument("--suite", help=f"one of: {', '.join(suites.names())}")
    run.add_argument("--suite-file", metavar="FILE",
                     help="your own suite as a TOML file (see docs/example_suite.toml and bench/suite_file.py)")
    run.add_argument("--problems", help="comma-separated problem names, e.g. 'rosenbrock(dim=5),strict_saddle'")
    run.add_argument("--optimizers", help="comma-separated optimizer names")
    run.add_argument("--seeds", type=int, default=8)
    run.add_argument("--tune-seeds", type=int, default=None,
                     help="how many of the seeds (the first ones) choose each optimizer's hyperparameters; the "
                          "rest are held out and reported (default: half)")
    run.add_argument("--curvature", action="store_true",
                     help="record the Hessian's lambda_min, lambda_max and index at every logged step")
    run.add_argument("--steps", type=int, default=1000)
    run.add_argument("--log-every", type=int, default=10)
    run.add_argument("--grid", default="defaults", help=grids.RULE_HELP)
    run.add_argument("--hparams", help='JSON hyperparameters, lists form a grid: \'{"learning_rate": [0.01, 0.1]}\' '
                     'for every optimizer, or per optimizer: \'{"saddle_free_newton": {"damping": 0.1}}\' '
                     '(optimizers left out follow --grid)')
    run.add_argument("--results", default="results")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--workers", type=int, default=None,
                     help="processes (default: one per core, at most 4, on the CPU; 1 on an accelerator); with "
                          "--executor ray, cells in flight (default: the cluster's GPUs, or CPUs)")
    run.add_argument("--retry-failed", action="store_true", help="run cells that failed before again")
    run.add_argument("--cell-timeout", type=float, default=600.0,
                     help="seconds before a cell's worker is killed and the cell recorded as failed")
    rep = sub.add_parser("report", help="write results/LEADERBOARD.md, index.html, leaderboard.tex, "
                                             "leaderboard.csv and plots")
    rep.add_argument("--results", default="results")
    rep.add_argument("--suite", help="only the cells of this suite")
    rep.add_argument("--suite-file", metavar="FILE", help="only the cells of the suite in this TOML file")
    rep.add_argument("--store", action="append", metavar="DIR",
                     help="a results directory to read (repeatable: stores of several machines are combined, each "
                          "cell counted once, times compared within a device; bench/multistore.py); the report is "
                          "written to --results")
    rep.add_argument("--no-plots", action="store_true")
    rep.add_argument("--compare", metavar="A,B",
                     help="add a 'Head to head' section (and its plot) for two optimizers, e.g. adam,cubic_reg")
    rep.add_argument("--landscape", action="store_true",
                     help="also draw the pictures of the way (paths, loss along the line, MLP slices) and the "
                          "Hessian spectra at start and end: re-runs each problem's best-ranked median runs "
                          "(one compile per problem and optimizer)")
    cm = sub.add_parser("compare", help="two optimizers head to head: per problem, success difference and cost "
                                        "ratio with bootstrap 95%% intervals, who wins, the overall win rate")
    cm.add_argument("a", metavar="A", help="an optimizer")
    cm.add_argument("b", metavar="B", help="another optimizer")
    cm.add_argument("--suite", help="the suite whose problems, budgets, seeds and grid are used (default: quick), "
                                    "with only A and B as optimizers")
    cm.add_argument("--suite-file", help="a suite as a TOML file (as for `run`), with only A and B as optimizers")
    cm.add_argument("--problems", help="instead of a suite: comma-separated problem names (with --seeds, --steps, "
                                       "--log-every, --grid, --hparams, --tune-seeds as for `run`)")
    for flag, kw in (("--seeds", dict(type=int, default=8)), ("--tune-seeds", dict(type=int, default=None)),
                     ("--steps", dict(type=int, default=1000)), ("--log-every", dict(type=int, default=10)),
                     ("--grid", dict(default="defaults")), ("--hparams", dict(default=None)),
                     ("--results", dict(default="results")), ("--workers", dict(type=int, default=None)),
                     ("--cell-timeout", dict(type=float, default=600.0))):
        cm.add_argument(flag, **kw)
    cm.add_argument("--no-progress", action="store_true")
    cm.add_argument("--no-plots", action="store_true")
    rp = sub.add_parser("replay", help="re-run stored cells and compare bit for bit")
    rp.add_argument("--results", default="results")
    rp.add_argument("--key", default="", help="a cell key (or its suffix); default: every cell")
    rp.add_argument("--limit", type=int, default=1000)
    rr = sub.add_parser("reproduce", help="run the paper checks and write results/REPRODUCTIONS.md "
                                          "(exit 1 if any does not reproduce)")
    rr.add_argument("--results", default="results")
    rr.add_argument("--only", default="", help="comma-separated check ids (default: all)")
    rr.add_argument("--fast", action="store_true", help="skip the checks marked slow")
    pf = sub.add_parser("perf", help="the performance report (docs/PERFORMANCE.md): runner vs hand-written loop, "
                                     "floor and torch.optim; the spin-glass roofline; compile share of a stored suite")
    pf.add_argument("--sections", default="",
                    help="comma-separated sections among runner, torch, roofline, compile (default: all)")
    pf.add_argument("--roofline-seeds", default="1,4,16,64,256,1024", help="batch sizes of the roofline section")
    pf.add_argument("--results", default="results", help="the store whose compile times the compile section reads")
    pf.add_argument("--seeds", default="1,8,32")
    pf.add_argument("--steps", type=int, default=2000)
    pf.add_argument("--dim", type=int, default=20)
    pf.add_argument("--repeats", type=int, default=7)
    pf.add_argument("--landscape", default="",
                    help="comma-separated problems: time a gradient and an HVP (their ratio beside the flop weight) "
                         "and the cost of the --curvature flag on each")
    pf.add_argument("--skip-runner", action="store_true", help="skip the runner-vs-hand-loop table")
    from bench import escape

    escape.build_parser(sub.add_parser("escape", help="saddle-escape sweeps: escape cost against dimension, "
                                                      "curvature ratio and depth, with fitted exponents"))
    from bench import defaults

    defaults.build_parser(sub.add_parser("defaults", help="defaults from evidence: every grid point of a stored "
                                                          "suite scored like an optimizer (bench.defaults)"))
    cs = sub.add_parser("census", help="critical points of a spin glass: index against energy, with theory "
                                       "and the optimizers' end points (bench.census)")
    cs.add_argument("--p", type=int, default=3)
    cs.add_argument("--n", type=int, default=30)
    cs.add_argument("--instance", type=int, default=0)
    cs.add_argument("--starts", type=int, default=256, help="random starts of the critical-point search")
    cs.add_argument("--key", type=int, default=0)
    cs.add_argument("--results", default="results")
    cs.add_argument("--no-end-points", action="store_true", help="do not re-run the stored cells for end points")
    cp = sub.add_parser("campaign", help="best known value of an instance from many restarts (bench.campaign)")
    cp.add_argument("--problems", required=True, help="comma-separated problem names, e.g. 'spin_glass(p=3,n=30)'")
    cp.add_argument("--restarts", type=int, default=256, help="seeds per optimizer (default 256)")
    cp.add_argument("--steps", type=int, default=300)
    cp.add_argument("--seed-base", type=int, default=1_000_000, help="first seed (suites use 0, 1, ...)")
    cp.add_argument("--write", action="store_true", help="record the best value in problems/best_known.json")
    cp.add_argument("--path", help="write to this JSON file instead of problems/best_known.json")
    for p in (run, cm):
        p.add_argument("--executor", metavar="{local,ray}", default="local",
                       help="local worker processes (default), or ray: each cell a Ray task on a cluster (pip install "
                            "-e '.[ray]'; bench/ray_executor.py)")
        p.add_argument("--address", default=None,
                       help="with --executor ray: the cluster's head node host:port, or auto (a `ray start` cluster "
                            "on this machine); default: a new local cluster. On several machines --results must be "
                            "a shared file system")
    for p in (ls, run, rep, cm, rp):
        p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        plugins.load_entry_points()
        plugins.load(getattr(args, "imports", None) or [])
        return {"list": cmd_list, "run": cmd_run, "report": cmd_report, "compare": cmd_compare, "replay": cmd_replay,
                "reproduce": cmd_reproduce, "perf": cmd_perf, "campaign": cmd_campaign,
                "census": cmd_census, "escape": cmd_escape, "defaults": cmd_defaults}[args.command](args)
    except (UsageError, plugins.PluginError, suite_file.SuiteFileError) as err:
        for line in str(err).splitlines() or ["(no message)"]:  # one line per mistake
            print(f"error: {line}", file=sys.stderr)
        return 2
