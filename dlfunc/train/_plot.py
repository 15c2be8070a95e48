"""Figures as PNG files (matplotlib, Agg backend: no display needed): training curves, autoencoders, anomaly scores.

Each function writes one file and returns its path.
"""

from __future__ import annotations

import os

import numpy as np


def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _save(fig, path) -> str:
  fig.tight_layout()
  fig.savefig(os.fspath(path), dpi=100)
  _plt().close(fig)
  return os.fspath(path)


def plot_history(history: list[dict], path: str | os.PathLike) -> str:
  """Draws loss (and accuracy, when present) per epoch, train and validation, to ``path``."""
  plt = _plt()
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
  return _save(fig, path)


def plot_reconstructions(x, recon, path: str | os.PathLike, n: int = 10) -> str:
  """A 2 x ``n`` grid of images: originals ``x`` (top row) and their reconstructions ``recon`` (bottom row)."""
  plt = _plt()
  fig, axes = plt.subplots(2, n, figsize=(n, 2.2))
  for i in range(n):
    for row, img in enumerate((x[i], recon[i])):
      ax = axes[row, i]
      ax.imshow(np.asarray(img).reshape(np.asarray(img).shape[:2]), cmap="gray_r", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_ylabel("input")
  axes[1, 0].set_ylabel("output")
  return _save(fig, path)


def plot_latent(z, y, path: str | os.PathLike) -> str:
  """The codes ``z`` in 2-D (first two principal components when wider), coloured by class ``y``."""
  plt = _plt()
  z = np.asarray(z, np.float64)
  label = ("z[0]", "z[1]")
  if z.shape[1] > 2:
    zc = z - z.mean(0)
    z = zc @ np.linalg.svd(zc, full_matrices=False)[2][:2].T
    label = ("PC 1 of z", "PC 2 of z")
  fig, ax = plt.subplots(figsize=(5.5, 4.5))
  sc = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=8, vmin=-0.5, vmax=9.5)
  fig.colorbar(sc, ax=ax, ticks=range(10), label="class")
  ax.set_xlabel(label[0])
  ax.set_ylabel(label[1])
  return _save(fig, path)


def plot_score_histogram(scores, is_anomaly, threshold: float, path: str | os.PathLike, holdout) -> str:
  """Histograms of anomaly ``scores`` for normal and held-out (``is_anomaly``) examples, and the ``threshold``."""
  plt = _plt()
  scores, is_anomaly = np.asarray(scores), np.asarray(is_anomaly, bool)
  fig, ax = plt.subplots(figsize=(6, 3.8))
  bins = np.linspace(0, float(np.percentile(scores, 99.5)), 40).tolist()
  ax.hist(scores[~is_anomaly], bins=bins, alpha=0.6, label="normal (other digits)")
  ax.hist(scores[is_anomaly], bins=bins, alpha=0.6, label=f"held out ({holdout})")
  ax.axvline(threshold, color="k", ls="--", label="threshold")
  ax.set_xlabel("reconstruction MSE (anomaly score)")
  ax.set_ylabel("test examples")
  ax.legend()
  return _save(fig, path)


def autoencoder_figures(model, variables, split, out_dir: str | os.PathLike) -> list[str]:
  """``reconstructions.png`` and ``latent.png`` of a trained autoencoder on ``split`` (a ``data.Split``).

  ``model`` needs ``reconstruct`` and ``encode`` methods (every dlfunc
  autoencoder; a VAE's ``encode`` returns ``(mean, log_var)`` and the mean is drawn).
  """
  x = np.asarray(split.x)
  recon = np.asarray(model.apply(variables, x, method="reconstruct"))
  z = model.apply(variables, x, method="encode")
  z = np.asarray(z[0] if isinstance(z, tuple) else z)
  os.makedirs(out_dir, exist_ok=True)
  return [
    plot_reconstructions(x, recon, os.path.join(out_dir, "reconstructions.png")),
    plot_latent(z, split.y, os.path.join(out_dir, "latent.png")),
  ]
