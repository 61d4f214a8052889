"""``python -m bench compare`` and ``report --compare`` on a tiny store, and the HTML report checked
in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``, which
``.ci/run`` installs) opens ``results/index.html`` from disk, and the test reads the DOM."""

import contextlib
import io
import math
import pathlib
import re
import shutil

import pandas as pd
import pytest

from bench import cli

PROBLEM = "strict_saddle(init_radius=1.0)"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def build_report(root: pathlib.Path) -> None:
    """Two cells (sgd and adam at learning rate 0.2, 4 seeds, 60 steps) run by `compare`, then the report."""
    argv = ["--results", str(root)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["compare", "sgd", "adam", "--problems", "strict_saddle", "--seeds", "4", "--steps", "60",
                         "--log-every", "20", "--hparams", '{"learning_rate": 0.2}', "--no-progress", "--workers", "1",
                         "--no-plots"] + argv) == 0
        assert cli.main(["report", "--compare", "sgd,adam"] + argv) == 0
    (root / "compare_stdout.txt").write_text(out.getvalue())


@pytest.fixture(scope="module")
def results(built_once):
    root = built_once("html_report_results", build_report)
    return root, (root / "compare_stdout.txt").read_text()


def test_compare_prints_what_the_leaderboard_measured(results):
    root, printed = results
    tab = pd.read_csv(root / "leaderboard.csv").set_index("optimizer")
    s, a = tab.loc["sgd"], tab.loc["adam"]
    row = next(ln for ln in printed.splitlines() if ln.startswith(f"| {PROBLEM} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{100 * s['success']:.0f}% / {100 * a['success']:.0f}%"
    assert cells[2].startswith(f"{100 * (s['success'] - a['success']):+.0f} [")
    if not (math.isnan(s["cost_median"]) or math.isnan(a["cost_median"])):
        ratio = (s["cost_median"] + 1) / (a["cost_median"] + 1)  # the +1 shift of the performance ratios
        assert cells[4].startswith(f"{ratio:.3g}")
    assert cells[5].split()[0] in {"sgd", "adam", "tie"}
    assert "Overall: sgd wins " in printed


def test_report_writes_html_latex_and_the_head_to_head_section(results):
    root, _ = results
    md = (root / "LEADERBOARD.md").read_text()
    assert "## Head to head: sgd vs adam" in md and "`plots/head_to_head_sgd_vs_adam.png`" in md
    tex = (root / "leaderboard.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") >= 2 and r"\caption{Head to head" in tex
    page = (root / "index.html").read_text()
    # self-contained: every image a data URI, no script or stylesheet from elsewhere, no URL at all
    assert re.findall(r'<img [^>]*src="(?!data:image/)', page) == []
    assert "<link" not in page and "<script src" not in page and not re.search(r"https?://", page)
    assert page.count("<table") == md.count("\n|---") + 2  # every Markdown table, plus provenance and budgets


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (CI installs Debian's chromium and chromium-driver "
                                             "in .ci/run)")
def test_html_report_in_headless_chromium(results, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    root, _ = results
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        driver.get((root / "index.html").resolve().as_uri())
        js = driver.execute_script
        assert js("return document.readyState") == "complete"
        assert js("return document.title") == "saddlebench: Leaderboard"
        # tables present, each with body rows
        rows = js("return Array.from(document.querySelectorAll('table')).map(t => t.tBodies[0].rows.length)")
        assert len(rows) >= 5 and min(rows) >= 1, rows
        # every image decoded with a non-zero size, and every PNG the report wrote is on the page
        imgs = js("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])")
        assert imgs and all(c and w > 0 and h > 0 for c, w, h, _ in imgs), imgs
        assert {alt for *_, alt in imgs} == {f"plots/{p.name}" for p in (root / "plots").glob("*.png")}
        # nothing fetched from anywhere but the page itself
        fetched = js("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(u.startswith(("data:", "file:")) for u in fetched), fetched
        # sorting: the problem's table by success, ascending then descending (numbers as numbers: 50 < 100)
        heading = re.sub(r"[^a-z0-9]+", "-", PROBLEM.lower()).strip("-")  # the problem's section
        table = (f"(() => {{ let e = document.getElementById('{heading}'); "
                 "while (!e.querySelector('table')) e = e.nextElementSibling; return e.querySelector('table'); })()")
        col = js(f"return Array.from({table}.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith('success'))")
        values = f"return Array.from({table}.tBodies[0].rows).map(r => parseFloat(r.cells[{col}].textContent))"
        before = js(values)
        js(f"{table}.tHead.rows[0].cells[{col}].click()")
        assert js(values) == sorted(before)
        js(f"{table}.tHead.rows[0].cells[{col}].click()")
        assert js(values) == sorted(before, reverse=True)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
        shot = tmp_path / "index.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
    finally:
        driver.quit()


def test_markdown_converter(tmp_path):
    from bench.reports import html

    (tmp_path / "plots").mkdir()
    png = (tmp_path / "plots" / "a.png")
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 8)  # the converter embeds bytes; it does not decode them
    md = "\n".join([
        "# Title", "", "Intro with **bold**, *italic*, `code_x`, a < b & c, f* and 2 * 3, figure `plots/a.png`.", "",
        "## A section", "", "| name | value |", "|---|---:|", "| x_1 | 10 |", "| y | 9.5 |", "",
        "![the figure](plots/a.png) and ![gone](plots/none.png)", "", "- item one", "- item `two`", "",
    ])
    page = html.render(md, tmp_path)
    body = page.split("<body>")[1]
    assert "<h1 id=\"title\">Title</h1>" in body and "<h2 id=\"a-section\">A section</h2>" in body
    assert ("<strong>bold</strong>, <em>italic</em>, <code>code_x</code>, a &lt; b &amp; c, f* and 2 * 3" in body)
    assert '<th class="r">value</th>' in body and '<td class="r">9.5</td>' in body and "<td>x_1</td>" in body
    data = "data:image/png;base64,iVBORw0KGgoAAAAAAAAAAA=="
    assert body.count(data) == 1  # embedded once, where first named; the later image links to it
    assert '<a href="#fig-plots-a-png"><code>plots/a.png</code></a>' in body
    assert '<a href="#fig-plots-a-png">the figure</a>' in body
    assert '<span class="missing">[figure not found: plots/none.png]</span>' in body
    assert "<ul><li>item one</li><li>item <code>two</code></li></ul>" in body
