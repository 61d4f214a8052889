"""``bench perf``: the roofline's flop count, the torch loop against the JAX floor, the compile-share table."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import problems
from bench import perf
from problems.spin_glass import field_flops, local_field


@pytest.mark.parametrize("p,n,threshold", [(2, 5, None), (3, 4, None), (3, 4, 1), (4, 3, None), (4, 3, 1)])
def test_field_flops_equal_xla_count(p, n, threshold):
    # the roofline divides field_flops by the time: it must be what XLA's compiled field computes
    # (threshold 1: the matmul order at these tiny sizes; None: the chain order, n^{p-1} < 2048)
    def field(t, s):
        return local_field(t, threshold)(s)

    t, s = jnp.ones((n,) * p, jnp.float32), jnp.ones(n, jnp.float32)
    cost = jax.jit(field).lower(t, s).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost["flops"] == field_flops(p, n, threshold)
    # and by hand: chain = 2 flops per multiply-add of p - 1 matrix-vector products; matmul = the
    # outer product (n^2 products), one matrix-vector product by it, and for p = 4 one more (n x n)
    chain = sum(2 * n**k for k in range(2, p + 1))
    matmul = n * n + 2 * n**p + (2 * n * n if p == 4 else 0)
    assert field_flops(p, n, threshold) == (matmul if threshold == 1 and p > 2 else chain)


def test_torch_loop_matches_the_jax_floor():
    torch = pytest.importorskip("torch")
    problem = problems.get("rosenbrock", dim=6)
    seeds, steps, lr = [0, 1, 2], 100, 1e-2
    x0 = np.array(perf.floor_start_points(problem, seeds))  # writable, for torch
    final = perf.torch_loop(x0, lr, steps)()
    f_torch = perf.torch_rosenbrock(torch.from_numpy(final)).numpy()
    floor_params = perf.floor_program(problem, lr, steps, seeds)()
    f_jax = np.asarray(jax.vmap(problem.full_loss)(floor_params))
    # the torch loss is the problem's own function (same value at the start points, float32)
    np.testing.assert_allclose(perf.torch_rosenbrock(torch.from_numpy(x0)).numpy(),
                               np.asarray(jax.vmap(problem.full_loss)(jnp.asarray(x0))), rtol=1e-6)
    # same iteration with other float32 roundings (perf.TORCH_LOSS_RTOL's reason); the losses moved
    # far from the start (a wrong update rule would show at percents)
    np.testing.assert_allclose(f_torch, f_jax, rtol=perf.TORCH_LOSS_RTOL)
    np.testing.assert_allclose(final, np.asarray(floor_params), atol=1e-4)
    assert np.all(f_jax < 0.5 * np.asarray(jax.vmap(problem.full_loss)(jnp.asarray(x0))))


def _write_cell(cells, name, problem, compile_s, run_s, landscape_s, rows=3):
    frame = pd.DataFrame({"problem": [problem] * rows, "optimizer": [name] * rows, "compile_s": [compile_s] * rows,
                          "compile_cached": [compile_s == 0.0] * rows, "cell_run_s": [run_s] * rows,
                          "landscape_s": [landscape_s] * rows, "loss": np.arange(rows, dtype=float)})
    frame.to_parquet(cells / f"{name}__{abs(hash((problem, name))):016x}.parquet")


def test_compile_share_of_a_synthetic_store(tmp_path, capsys):
    assert perf.compile_table(str(tmp_path)) is None
    assert "compile section skipped" in capsys.readouterr().out
    cells = tmp_path / "cells"
    cells.mkdir()
    _write_cell(cells, "adam", "a", 3.0, 1.0, 0.0)
    _write_cell(cells, "sgd", "a", 1.0, 2.0, 1.0)
    _write_cell(cells, "adam", "b", 2.0, 6.0, 2.0)
    per, by_cell = perf.compile_share(str(tmp_path))
    assert len(by_cell) == 3
    rows = per.set_index("problem")
    assert rows.loc["a", "cells"] == 2 and rows.loc["a", "compile_s"] == 4.0
    assert rows.loc["a", "compile_share"] == pytest.approx(4.0 / 8.0)
    assert rows.loc["b", "compile_share"] == pytest.approx(2.0 / 10.0)
    assert rows.loc["all", "compile_s"] == 6.0 and rows.loc["all", "compile_median_s"] == 2.0
    assert rows.loc["all", "compile_share"] == pytest.approx(6.0 / 18.0)
    perf.compile_table(str(tmp_path))
    out = capsys.readouterr().out
    assert "| **all** | 3 | 6.0 | 2.00 | 3.00 | 9.0 | 3.0 | 33% |" in out


def test_unknown_section_is_refused():
    with pytest.raises(ValueError, match="unknown perf sections"):
        perf.report(["roofline", "bogus"])


def test_compile_phases_of_a_quick_cell(capsys):
    # the smallest quick-suite program: its XLA compile splits into the phases the trace names,
    # each a part of the whole (a renamed profiler event would show as a zero here)
    (row,) = perf.compile_phases(["strict_saddle:sgd"])
    assert row["kernels"] > 10
    for phase in ("HLO passes", "thunk emission", "fusion emitters", "LLVM codegen"):
        assert 0 < row[phase] < row["compile_s"] * 2 + 1, phase  # fusion emitters: summed over 2 threads
    assert row["HLO passes"] + row["thunk emission"] + row["LLVM codegen"] <= row["compile_s"]
    assert "| strict_saddle:sgd |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no cell"):
        perf.compile_phases(["strict_saddle:no_such_optimizer"])
