"""Reports: one module per kind (leaderboard tables, plots)."""

from __future__ import annotations

import pathlib


def save_figure(fig, path, dpi: int = 110, tight: bool = False) -> pathlib.Path:
    """Write a matplotlib figure to ``path`` (parents created) and close it; ``tight`` lays it out
    first (``tight_layout``); the saved box is always tight around what was drawn."""
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
