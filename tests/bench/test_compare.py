"""Head to head (``bench.reports.compare``) on constructed runs whose verdicts are known by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.reports import compare
from bench.reports import leaderboard as lb

N = 8  # held-out runs per optimizer and problem


def ev_rows(problem, optimizer, success, costs):
    """Evaluated runs: ``success`` per run (bool list) and the cost to target of the successful ones."""
    it = iter(costs)
    return [{"problem": problem, "steps": 100, "optimizer": optimizer, "seed": s, lb.SUCCESS: ok,
             lb.COST: float(next(it)) if ok else np.nan} for s, ok in enumerate(success)]


def constructed() -> pd.DataFrame:
    rows = []
    # P1: A always reaches the target, B never: +100 points, every resample the same; A wins on success
    rows += ev_rows("P1", "A", [True] * N, [5] * N) + ev_rows("P1", "B", [False] * N, [])
    # P2: both always; A costs 10, B 32 on every run: ratio (10 + 1) / (32 + 1) = 1/3 exactly; A wins on cost
    rows += ev_rows("P2", "A", [True] * N, [10] * N) + ev_rows("P2", "B", [True] * N, [32] * N)
    # P3: the same runs for both: difference 0, ratio 1, a tie
    rows += ev_rows("P3", "A", [True] * N, range(10, 18)) + ev_rows("P3", "B", [True] * N, range(10, 18))
    # P4: A 2 of 8, B 8 of 8: -75 points; B wins on success
    rows += ev_rows("P4", "A", [True, True] + [False] * 6, [7, 9]) + ev_rows("P4", "B", [True] * N, [40] * N)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def h2h():
    return compare.head_to_head(constructed(), "A", "B").set_index("problem")


def test_verdicts_by_hand(h2h):
    assert h2h["winner"].to_dict() == {"P1": "A", "P2": "A", "P3": compare.TIE, "P4": "B"}
    assert h2h["decided_by"].to_dict() == {"P1": "success", "P2": "cost", "P3": "", "P4": "success"}
    p1, p2, p3, p4 = (h2h.loc[p] for p in ("P1", "P2", "P3", "P4"))
    assert (p1["success_diff"], p1["diff_lo"], p1["diff_hi"]) == (1.0, 1.0, 1.0)
    assert np.isnan(p1["cost_ratio"])  # B never reached the target: no cost to compare
    assert p2["cost_ratio"] == pytest.approx(1 / 3) and (p2["ratio_lo"], p2["ratio_hi"]) == pytest.approx((1 / 3,) * 2)
    assert (p2["success_diff"], p2["diff_lo"], p2["diff_hi"]) == (0.0, 0.0, 0.0)
    assert p3["cost_ratio"] == 1.0 and p3["ratio_lo"] < 1.0 < p3["ratio_hi"]
    assert p4["success_diff"] == pytest.approx(-0.75) and p4["cost_a"] == 8.0 and p4["cost_b"] == 40.0
    w = compare.win_rates(h2h.reset_index(), "A", "B")
    assert w == {"problems": 4, "wins_a": 2, "wins_b": 1, "ties": 1, "win_rate_a": 0.5, "win_rate_b": 0.25}


def test_success_interval_is_the_binomial_bootstrap(h2h):
    # P4: B's resamples are all successes, so the difference is Binomial(8, 1/4) / 8 - 1 and its
    # percentile interval is that distribution's 2.5% and 97.5% quantiles: 0/8 - 1 and 5/8 - 1.
    # 2000 resamples put the empirical quantiles on the exact ones unless the exact tail mass at a
    # step is within Monte Carlo error (~0.35%) of 2.5%, which it is not here (P(X <= 0) = 10.0%,
    # P(X >= 5) = 2.7%, P(X >= 6) = 0.4%).
    lo, hi = (stats.binom.ppf(q, N, 0.25) / N - 1 for q in (0.025, 0.975))
    assert (h2h.loc["P4", "diff_lo"], h2h.loc["P4", "diff_hi"]) == pytest.approx((lo, hi))
    assert (lo, hi) == (-1.0, -0.375)


def test_ratio_interval_matches_an_independent_bootstrap(h2h):
    # numpy's own percentile bootstrap of (median(a) + 1) / (median(b) + 1), 20000 resamples;
    # medians of 8 integers move in steps of 0.5, so the ratio near 1 in steps of ~0.5 / 14 = 0.036:
    # the two may differ by one such step at either end, not more
    rng = np.random.default_rng(1)
    a = b = np.arange(10.0, 18.0)
    ra = np.median(a[rng.integers(0, N, (20000, N))], axis=1)
    rb = np.median(b[rng.integers(0, N, (20000, N))], axis=1)
    ref = np.quantile((ra + 1) / (rb + 1), [0.025, 0.975])
    got = np.array([h2h.loc["P3", "ratio_lo"], h2h.loc["P3", "ratio_hi"]])
    assert np.abs(got - ref).max() <= 0.04, (got, ref)


def test_compare_uses_the_leaderboards_selection():
    # one logged row per run (the last), two hyperparameter points; seeds 0, 1 tune and 2, 3 are held out.
    # A's point 0 solves its tuning seeds but none of the held-out ones, point 1 the other way round:
    # the leaderboard chooses point 0, so A's held-out success is 0; B has one point, so all 4 of its
    # runs are reported (the leaderboard's rule), all successes.
    def rows(opt, hp, seed, ok):
        return dict(problem="p(a=1)", family="p", dim=2, optimizer=opt, hp_index=hp, hp_learning_rate=0.1 * (hp + 1),
                    seed=seed, step=100, loss=0.0 if ok else 1.0, grad_norm=0.0, n_values=100, n_grads=100, n_hvps=0,
                    final_loss=0.0 if ok else 1.0, final_grad_norm=0.0, final_gap=0.0 if ok else 1.0,
                    hit_step=10 if ok else -1, hit_values=10 if ok else -1, hit_grads=10 if ok else -1,
                    hit_hvps=0 if ok else -1, diverged_step=-1, final_lambda_min=1.0, final_lambda_max=1.0,
                    status="converged" if ok else "budget_exhausted", f_star=0.0, f_target=1e-3, steps=100,
                    run_s_amortized=0.01, tuning=seed < 2)
    df = pd.DataFrame([rows("A", 0, s, s < 2) for s in range(4)] + [rows("A", 1, s, s >= 2) for s in range(4)]
                      + [rows("B", 0, s, True) for s in range(4)])
    ev = compare.evaluated(df, "A", "B")
    a = ev[ev["optimizer"] == "A"]
    assert set(a["hp_index"]) == {0} and set(a["seed"]) == {2, 3}
    assert len(ev[ev["optimizer"] == "B"]) == 4
    runs = lb.with_costs(df)
    ref = lb.evaluated_runs(runs, lb.selection(runs))
    assert sorted(map(tuple, ev[["optimizer", "hp_index", "seed"]].to_numpy().tolist())) == \
        sorted(map(tuple, ref[["optimizer", "hp_index", "seed"]].to_numpy().tolist()))
    row = compare.head_to_head(ev, "A", "B").iloc[0]
    assert (row["success_a"], row["success_b"], row["success_diff"]) == (0.0, 1.0, -1.0)
    # A's resamples are all 0, B's all 1, so the interval is [-1, -1]
    assert (row["diff_lo"], row["diff_hi"], row["winner"]) == (-1.0, -1.0, "B")


def test_markdown_section_and_plot(h2h, tmp_path):
    frame = h2h.reset_index()
    md = "\n".join(compare.markdown(frame, "A", "B", plot="plots/x.png"))
    assert md.startswith("## Head to head: A vs B\n")
    assert "| P2 | 100% / 100% | +0 [+0, +0] | 10 / 32 | 0.333 [0.333, 0.333] | A (cost) |" in md
    assert "| P4 | 25% / 100% | -75 [-100, -38] | 8 / 40 | 0.22 [0.195, 0.244] | B (success) |" in md
    assert "Overall: A wins 2 of 4 problems (50%), B wins 1 (25%), 1 ties. Figure: `plots/x.png`." in md
    path = compare.write_plot(frame, "A", "B", tmp_path / "h2h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="two different optimizers"):
        compare.head_to_head(frame, "A", "A")


@pytest.mark.parametrize("argv, message", [
    (["compare", "adam", "adam"], "two different optimizers"),
    (["compare", "adam", "nope"], "valid optimizers: "),
    (["compare", "adam", "sgd", "--suite", "bogus"], "valid suites: "),
    (["compare", "adam", "sgd", "--suite", "smoke", "--problems", "strict_saddle"], "not both"),
    (["report", "--compare", "adam"], "two different optimizers"),
])
def test_cli_errors_before_anything_runs(argv, message, capsys, tmp_path):
    from bench import cli

    assert cli.main(argv + ["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not [p for p in tmp_path.iterdir() if p.name != "cells"] and not list(tmp_path.glob("cells/*"))
