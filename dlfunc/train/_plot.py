"""The training-curve PNG (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import os


def plot_history(history: list[dict], path: str | os.PathLike) -> str:
  """Draws loss (and accuracy, when present) per epoch, train and validation, to ``path``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [h["epoch"] for h in history]
  panels = [k for k in ("loss", "accuracy") if any(k in h for h in history)]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
  for ax, key in zip(axes[0], panels):
    for prefix, style in (("", "-o"), ("val_", "--s")):
      values = [h.get(prefix + key) for h in history]
      if any(v is not None for v in values):
        ax.plot(epochs, values, style, markersize=3, label=("validation " if prefix else "train ") + key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(os.fspath(path), dpi=100)
  plt.close(fig)
  return os.fspath(path)
