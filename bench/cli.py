"""``python -m bench list | run | report | replay | reproduce | census | campaign | perf``."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import optimizers
import problems
from bench import grid as grids
from bench import schema, suites
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


def _cells_from_args(args) -> tuple[list[suites.Cell], str]:
    if args.suite:
        if args.problems or args.optimizers:
            raise UsageError("give either --suite or --problems/--optimizers, not both")
        try:
            suite = suites.get(args.suite)
        except KeyError as err:
            raise UsageError(err.args[0]) from None
        return suite.cells(), suite.name
    if not args.problems or not args.optimizers:
        raise UsageError("give --suite NAME, or both --problems and --optimizers")
    cells = []
    probs = []
    for name in _csv(args.problems):
        try:
            probs.append(problems.get(name))  # built here, so a factory's own checks fail before any run
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(str(err.args[0]) if err.args else str(err)) from None
    opts = _csv(args.optimizers)
    for o in opts:
        if o not in optimizers.names():
            raise UsageError(f"unknown optimizer {o!r}; valid optimizers: {', '.join(optimizers.names())}")
    if args.steps % args.log_every:
        raise UsageError(f"--steps ({args.steps}) must be a multiple of --log-every ({args.log_every})")
    if args.seeds < 1 or args.steps < 1:
        raise UsageError("--seeds and --steps must be positive")
    if args.tune_seeds is not None and not 0 <= args.tune_seeds <= args.seeds:
        raise UsageError(f"--tune-seeds must be between 0 and --seeds ({args.seeds}), got {args.tune_seeds}")
    per_optimizer = _hparams_per_optimizer(args.hparams, opts)
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
        raise UsageError(f"--hparams is not valid JSON ({err.msg} at character {err.pos}): {text}") from None
    if isinstance(hp, list):
        return dict.fromkeys(opts, hp)
    if not isinstance(hp, dict):
        raise UsageError(f"--hparams must be a JSON object, got {text}")
    nested = sorted(k for k, v in hp.items() if _is_points(v))
    if not nested:
        return dict.fromkeys(opts, hp)
    flat = sorted(set(hp) - set(nested))
    if flat:
        raise UsageError(f"--hparams mixes per-optimizer entries ({', '.join(nested)}) with flat hyperparameters "
                         f"({', '.join(flat)}); put every hyperparameter under its optimizer")
    unknown = [k for k in nested if k not in optimizers.names()]
    if unknown:
        raise UsageError(f"--hparams: unknown optimizer(s) {', '.join(unknown)}; "
                         f"valid optimizers: {', '.join(optimizers.names())}")
    absent = [k for k in nested if k not in opts]
    if absent:
        raise UsageError(f"--hparams gives hyperparameters for {', '.join(absent)}, which --optimizers does not "
                         f"run ({', '.join(opts)})")
    return hp


def cmd_run(args) -> int:
    from bench.execute import run_cells

    cells, label = _cells_from_args(args)
    store = Store(args.results)
    print(f"{label}: {len(cells)} cells -> {store.cells}", file=sys.stderr)
    out = run_cells(cells, store, progress=not args.no_progress, workers=args.workers, timeout=args.cell_timeout,
                    retry_failed=args.retry_failed)
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
    from bench.reports import landscape_section, leaderboard, plots

    store = Store(args.results)
    keys = None
    if args.suite:
        try:
            keys = {c.spec().key for c in suites.get(args.suite).cells()}
        except KeyError as err:
            raise UsageError(err.args[0]) from None
    df = store.load_all(keys)
    if df.empty:
        print(f"no stored results in {store.cells}; run `python -m bench run --suite quick` first",
              file=sys.stderr)
        return 1
    failures = store.failures()
    if keys is not None:
        failures = {k: v for k, v in failures.items() if k in keys}
    built = leaderboard.build(df)
    land, land_files = landscape_section.build(df, built[0], built[1], store.root, pictures=args.landscape,
                                               figures=not args.no_plots)
    md, csv = leaderboard.write(df, store.root, failures, built, extra=land)
    print(f"wrote {md} and {csv}", file=sys.stderr)
    if not args.no_plots:
        written = (plots.write(df, store.root / "plots") + leaderboard.write_score_plots(built[1], store.root / "plots")
                   + land_files)
        print(f"wrote {len(written)} plots to {store.root / 'plots'}", file=sys.stderr)
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
    from bench import perf

    if not args.skip_runner:
        perf.main(seeds=[int(s) for s in _csv(args.seeds)], steps=args.steps, dim=args.dim, repeats=args.repeats)
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


def cmd_census(args) -> int:
    """The spin glass's critical-point census, with the stored optimizers' end points on it."""
    from bench import census_report

    if args.p < 2 or args.n < 3 or args.starts < 1:
        raise UsageError("--p must be >= 2, --n >= 3 and --starts >= 1")
    lines = census_report.run(args.results, p=args.p, n=args.n, instance=args.instance, starts=args.starts,
                              key=args.key, end_points=not args.no_end_points)
    print("\n".join(lines))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="problems, optimizers and suites")
    ls.add_argument("--references", action="store_true",
                    help="also build each family's default instance and print its f*, target and source")
    run = sub.add_parser("run", help="run a suite or a custom grid of cells (stored cells are reused)")
    run.add_argument("--suite", help=f"one of: {', '.join(suites.names())}")
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
                     help="processes (default: one per core, at most 4, on the CPU; 1 on an accelerator)")
    run.add_argument("--retry-failed", action="store_true", help="run cells that failed before again")
    run.add_argument("--cell-timeout", type=float, default=600.0,
                     help="seconds before a cell's worker is killed and the cell recorded as failed")
    rep = sub.add_parser("report", help="write results/LEADERBOARD.md, leaderboard.csv and plots")
    rep.add_argument("--results", default="results")
    rep.add_argument("--suite", help="only the cells of this suite")
    rep.add_argument("--no-plots", action="store_true")
    rep.add_argument("--landscape", action="store_true",
                     help="also draw the pictures of the way (paths, loss along the line, MLP slices) and the "
                          "Hessian spectra at start and end: re-runs each problem's best-ranked median runs "
                          "(one compile per problem and optimizer)")
    rp = sub.add_parser("replay", help="re-run stored cells and compare bit for bit")
    rp.add_argument("--results", default="results")
    rp.add_argument("--key", default="", help="a cell key (or its suffix); default: every cell")
    rp.add_argument("--limit", type=int, default=1000)
    rr = sub.add_parser("reproduce", help="run the paper checks and write results/REPRODUCTIONS.md "
                                          "(exit 1 if any does not reproduce)")
    rr.add_argument("--results", default="results")
    rr.add_argument("--only", default="", help="comma-separated check ids (default: all)")
    rr.add_argument("--fast", action="store_true", help="skip the checks marked slow")
    pf = sub.add_parser("perf", help="runner vs hand-written loop vs minimal jit(vmap(scan))")
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
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"list": cmd_list, "run": cmd_run, "report": cmd_report, "replay": cmd_replay,
                "reproduce": cmd_reproduce, "perf": cmd_perf, "campaign": cmd_campaign,
                "census": cmd_census, "escape": cmd_escape}[args.command](args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
