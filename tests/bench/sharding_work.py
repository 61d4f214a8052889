"""Run by ``test_sharding.py`` in a subprocess whose XLA_FLAGS fake 4 CPU devices (the flag must be
set before jax is imported, so it cannot run inside the test process). Prints one JSON line.

Each case runs one cell's compiled program on 4 devices and on 1, in this one process, and reports
where the 4-device outputs live and whether they equal the 1-device outputs bit for bit.
"""

import json
import sys

import jax
import numpy as np

from bench import grid as grids
from bench import program

CASES = [  # (problem, optimizer, hyperparameters, seeds): H x S runs
    # 3 x 2 = 6 runs over 4 devices: padded to 4 x 2
    ("rosenbrock(dim=2)", "adam", {"learning_rate": [1e-3, 1e-2, 1e-1]}, [0, 1]),
    # the problem's constants (the coupling tensor) passed replicated; 1 x 6 runs, padded to 1 x 8
    ("spin_glass(p=3,n=8,instance=0)", "adam", None, [0, 1, 2, 3, 4, 5]),
]


def main() -> None:
    import problems

    out = []
    for name, optimizer, hp, seeds in CASES:
        problem = problems.get(name)
        g = grids.expand(optimizer, hp)
        keys = np.asarray(seeds, np.uint32)
        many, _, _ = program.compile_cell(problem, g, 20, 10, "float32", len(seeds), devices=4)
        one, _, _ = program.compile_cell(problem, g, 20, 10, "float32", len(seeds), devices=1)
        raw = many.raw(g.arrays(), keys)
        a = jax.tree_util.tree_map(np.asarray, many(g.arrays(), keys))
        b = jax.tree_util.tree_map(np.asarray, one(g.arrays(), keys))
        leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
        out.append({
            "case": f"{optimizer}-{name}",
            "devices": len(jax.devices()),
            "mesh": list(many.mesh.devices.shape),
            "padded": list(raw.loss.shape[:2]),
            "device_set": len(raw.loss.sharding.device_set),
            "params_device_set": len(raw.params.sharding.device_set),
            "shards": sorted(list(s.data.shape[:2]) for s in raw.loss.addressable_shards),
            "one_device_set": len(one.raw(g.arrays(), keys).loss.sharding.device_set),
            "shapes_equal": [x.shape for x in leaves_a] == [x.shape for x in leaves_b],
            "counts_equal": all(np.array_equal(getattr(a, f), getattr(b, f))
                                for f in ("counts", "hit_step", "diverged_step", "target_hit_step")),
            "max_loss_rel": float(np.max(np.abs(a.loss - b.loss) / np.maximum(np.abs(b.loss), 1.0))),
            "bitwise": all(np.array_equal(x, y, equal_nan=True) for x, y in zip(leaves_a, leaves_b)),
        })
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
