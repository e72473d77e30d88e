"""PNG of a law fit: observed vs predicted loss, and loss against each attribute and the volume."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ziya_jax.laws.fit import Points


def plot_fit(points: Points, predicted: np.ndarray, params: dict, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    ax = axes[0, 0]
    lo, hi = float(min(points.loss.min(), predicted.min())), float(max(points.loss.max(), predicted.max()))
    ax.scatter(points.loss, predicted, s=14)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("observed loss")
    ax.set_ylabel("predicted loss")
    ax.set_title("observed vs predicted")
    for ax, (name, values) in zip((axes[0, 1], axes[1, 0], axes[1, 1]),
                                  (("coherence (CH)", points.ch), ("readability (RA)", points.ra),
                                   ("similarity (SIM)", points.sim))):
        ax.scatter(values, points.loss, s=14, label="observed")
        ax.scatter(values, predicted, s=14, marker="x", label="predicted")
        ax.set_xlabel(name)
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    p = params
    fig.suptitle(f"L = D^-{p['alpha']:.4g} + {p['E']:.4g},  D = ({p['A']:.3g} CH + {p['B']:.3g} RA + "
                 f"{p['C']:.3g} SIM) V + {p['F']:.3g}", fontsize=10)
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
