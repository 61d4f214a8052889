"""The paper checks of ``bench.reproductions`` as tests, and the report writer.

Every check that is not marked slow runs here and must pass (the assertion message is the record's:
published, measured, tolerance and the per-case table). The slow ones (minutes on 2 cores) run only in
``python -m bench reproduce``; they are listed here as skipped so the split stays visible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench import reproductions as R


@pytest.mark.parametrize("check_id", R.names())
def test_paper_check(check_id):
    if R.check(check_id).slow:
        pytest.skip(f"{check_id} is slow: run by `python -m bench reproduce` only")
    rec = R.run_check(check_id)
    assert rec.error is None, rec.message
    assert rec.passed, rec.message
    for field in ("setup", "published", "measured", "tolerance", "tolerance_how", "source"):
        assert getattr(rec, field), (check_id, field)


def test_registry_covers_the_issue_and_marks_slow_checks():
    ids = R.names()
    assert len(ids) == len(set(ids)) >= 12
    assert set(R.names(include_slow=False)) == {i for i in ids if not R.check(i).slow}
    with pytest.raises(KeyError, match="unknown reproduction check"):
        R.check("no_such_check")


def test_wilson_interval_against_closed_form_and_scipy():
    # Wilson (1927): centre (p + z^2/2n)/(1 + z^2/n); scipy's binomtest gives the same interval
    for k, n in ((0, 20), (3, 20), (20, 20), (37, 128)):
        lo, hi = R.wilson(k, n)
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)
    assert R.wilson(0, 0) == (0.0, 1.0)


def test_trend_test_detects_an_increase_and_not_a_flat_line():
    # Cochran-Armitage: 2/100, 10/100, 20/100 is a strong increasing trend; equal counts give p = 1/2
    assert R.trend_test([2, 10, 20], [100] * 3, [6, 7, 8]) < 1e-4
    assert R.trend_test([10, 10, 10], [100] * 3, [6, 7, 8]) == pytest.approx(0.5)
    assert R.trend_test([0, 0, 0], [100] * 3, [6, 7, 8]) == 1.0


def test_saxe_closed_form_against_the_discrete_map():
    # depth 2: the integral formula equals the log closed form; GD's exact map agrees with the flow
    # to the discretization error (relative ~ eta s) plus the integer step
    t2 = R.saxe_time(1e-3, 1.0, 2.0, 0.005, 2)
    assert t2 == pytest.approx(math.log(1.0 * (2 - 1e-3) / (1e-3 * 1.0)) / (2 * 0.005 * 2), rel=1e-12)
    for depth in (2, 3, 4):
        a0 = 0.15
        t = R.saxe_time(a0**depth, 1.0, 2.0, 0.005, depth)
        steps = R.saxe_discrete_steps(a0, 1.0, 2.0, 0.005, depth)
        assert abs(steps - t) <= 2 * 0.005 * 2.0 ** (2 - 2 / depth) * t + 1, (depth, steps, t)


def test_report_and_exit_code(tmp_path, capsys):
    # one fast check through main: the file, the table row, the exit code
    code = R.main(tmp_path, only="pspin_constants")
    text = (tmp_path / "REPRODUCTIONS.md").read_text()
    assert code == 0
    assert "| [pspin_constants](#pspin_constants) |" in text and "**PASS**" in text
    assert "1.656998" in text and "Auffinger" in text
    assert "[1/1] pspin_constants ... PASS" in capsys.readouterr().out
    with pytest.raises(KeyError):
        R.main(tmp_path, only=["nope"])


def test_a_failing_or_crashing_check_is_reported_not_raised(tmp_path, monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setitem(R._CHECKS, "broken", R.Check("broken", "a check that crashes", False, broken))
    code = R.main(tmp_path, only=["broken"], progress=False)
    text = (tmp_path / "REPRODUCTIONS.md").read_text()
    assert code == 1
    assert "**FAIL**" in text and "RuntimeError: boom" in text


def test_slow_checks_are_listed_when_left_out(tmp_path):
    slow = [i for i in R.names() if R.check(i).slow]
    assert slow
    code = R.main(tmp_path, only=[slow[0], "pspin_constants"], include_slow=False, progress=False)
    text = (tmp_path / "REPRODUCTIONS.md").read_text()
    assert code == 0 and slow[0] in text.split("Not run")[1].splitlines()[0]
    assert np.isfinite(len(text))
