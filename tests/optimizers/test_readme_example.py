"""The README's "Use an optimizer in your own training loop" example runs, and does what it says.

The first fenced Python block under that heading is executed as it stands (a flax nnx MLP,
saddle-free Newton with a learning-rate schedule, a jitted step with the batch's ``value_fn``);
then its results are checked: the full-data loss fell well below its start, the optimizer
spent exactly its Krylov budget (k = 10 HVPs per step: the MLP has far more than 10
parameters, so Lanczos never breaks down, and no extra values or gradients), and the trained
parameters are back in the module.
"""

import pathlib
import re

import jax
import numpy as np
from flax import nnx

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Use an optimizer in your own training loop"


def _example() -> str:
    text = README.read_text()
    assert HEADING in text, f"README has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "no python block in the section"
    return blocks[0]


def test_readme_training_loop_example_runs(capsys):
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(_example(), str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert out.startswith("loss ") and "extra oracle calls" in out
    first = float(namespace["first"])
    final = float(namespace["loss"](namespace["params"], namespace["x_all"], namespace["y_all"]))
    assert np.isfinite(final) and final < 0.25 * first, (first, final)
    counts = {k: int(v) for k, v in namespace["counts"].items()}
    # per step: k = 10 Lanczos HVPs and the damping line search's 6 values (damping * 10^j, j < 6)
    assert counts == {"values": 6 * 100, "grads": 0, "hvps": 10 * 100}
    model_params = nnx.state(namespace["model"], nnx.Param)
    for a, b in zip(jax.tree.leaves(model_params), jax.tree.leaves(namespace["params"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
