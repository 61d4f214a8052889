"""``results/leaderboard.tex``: booktabs rules, the best value per column in bold, LaTeX escaping."""

import re
import shutil
import subprocess

import pandas as pd
import pytest
from scipy import stats

from bench.reports import latex
from bench.reports import leaderboard as lb

PROBLEM = "two_wells(a=1)"  # not registered: every oracle call weighs one gradient


def runs(optimizer, hits, final):
    """One logged (final) row per run, one hyperparameter point: all seeds are reported."""
    out = []
    for seed, (hit, f) in enumerate(zip(hits, final)):
        ok = hit >= 0
        out.append(dict(problem=PROBLEM, family="two_wells", dim=2, optimizer=optimizer, hp_index=0,
                        hp_learning_rate=0.1, seed=seed, step=100, loss=f, grad_norm=0.0, n_values=100, n_grads=100,
                        n_hvps=0, final_loss=f, final_grad_norm=0.0, final_gap=f, hit_step=hit, hit_values=hit,
                        hit_grads=hit, hit_hvps=0 if ok else -1, diverged_step=-1, final_lambda_min=1.0,
                        final_lambda_max=1.0, status="converged" if ok else "budget_exhausted", f_star=0.0,
                        f_target=1e-3, steps=100, run_s_amortized=0.01, cell_key=optimizer,
                        utc_time="2026-12-01T00:00:00+00:00", backend="cpu", git_commit="0123456789abcdef"))
    return out


@pytest.fixture(scope="module")
def tex():
    # fast_opt: all 4 runs reach the target at 10 gradients, ends at gap 1e-4;
    # slow_opt: 2 of 4 at 30 and 50 gradients, the others end at gap 0.5; its solved runs end at 0
    df = pd.DataFrame(runs("fast_opt", [10] * 4, [1e-4] * 4) + runs("slow_opt", [30, 50, -1, -1], [0.0, 0.0, 0.5, 0.5]))
    tab, ov = lb.build(df)
    return latex.render(tab, ov, df), tab


def rows_of(text: str, caption_start: str) -> dict[str, list[str]]:
    """The body rows of the table whose caption starts with ``caption_start``: first cell -> cells."""
    block = next(b for b in text.split(r"\begin{table}") if r"\caption{" + caption_start in b)
    body = block.split(r"\midrule")[1].split(r"\bottomrule")[0]
    return {r.split(" & ")[0].strip(): [c.strip() for c in r.split(" & ")[1:]]
            for r in body.strip().split("\\\\") if r.strip()}


def test_booktabs_rules_in_every_table(tex):
    text, _ = tex
    n = text.count(r"\begin{table}")
    assert n == 2  # the scores across problems and the one problem
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert text.count(rule) == n, rule
    assert r"\caption{AlgoPerf performance-profile score" in text


def test_bold_is_the_best_value_of_each_column(tex):
    text, _ = tex
    rows = rows_of(text, r"two\_wells")
    fast, slow = rows[r"fast\_opt"], rows[r"slow\_opt"]
    # success: 4/4 with Wilson's interval (scipy's, as an independent reference) is the best
    ci = stats.binomtest(4, 4).proportion_ci(method="wilson")
    assert fast[0] == rf"\textbf{{100 [{100 * ci.low:.0f}, 100]}}" and "textbf" not in slow[0]
    ci = stats.binomtest(2, 4).proportion_ci(method="wilson")
    assert slow[0] == f"50 [{100 * ci.low:.0f}, {100 * ci.high:.0f}]"
    # cost: 10 (all runs alike: the interval is [10, 10]) beats the median of 30 and 50
    assert fast[1] == r"\textbf{10 [10, 10]}" and slow[1].startswith("40 [")
    # gap: medians 1e-4 against median(0, 0, 0.5, 0.5) = 0.25: the smaller is bold
    assert fast[3] == r"\textbf{0.0001}" and slow[3] == "0.25"
    # s/run: equal for both: no best, nothing bold
    assert fast[4] == slow[4] == "0.01"
    scores = rows_of(text, "AlgoPerf")
    assert scores[r"fast\_opt"][0] == r"\textbf{1.000}"


def test_names_are_escaped_for_latex(tex):
    text, _ = tex
    body = [ln for ln in text.splitlines() if not ln.startswith("%")]
    for ln in body:
        assert not re.search(r"(?<!\\)[_#%]", ln) or ln.startswith((r"\label", r"\begin", r"\end")), ln
    assert r"two\_wells(a=1)" in text and r"fast\_opt" in text
    assert latex.escape("a_b & 50% {x} ~ ^ $ # \\") == (r"a\_b \& 50\% \{x\} \textasciitilde{} \textasciicircum{} "
                                                         r"\$ \# \textbackslash{}")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine installed (pdflatex)")
def test_compiles_with_pdflatex(tex, tmp_path):
    text, _ = tex
    (tmp_path / "leaderboard.tex").write_text(text)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
                                      "\\input{leaderboard.tex}\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout[-2000:]
