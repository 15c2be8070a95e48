"""CLI plugin: the sequence models and autoencoders for ``dlfunc train``, and ``dlfunc anomaly``.

Imported by :mod:`dlfunc.cli` (``PLUGINS``). It registers

* ``--model rnn|lstm|gru|cnn1d`` (default data set ``digits-seq``),
* ``--model autoencoder|conv-autoencoder|vae`` (``digits``, targets = inputs), whose
  run also writes ``reconstructions.png`` (originals above reconstructions) and
  ``latent.png`` (the test codes in 2-D, coloured by class),
* ``dlfunc anomaly --holdout 9``: trains an autoencoder on every other digit,
  prints precision / recall / AUROC beside the PCA baseline, and writes
  ``anomaly_scores.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from dlfunc import losses, models
from dlfunc.train import MODELS, register_model

AUTOENCODERS = ("autoencoder", "conv-autoencoder", "vae")


def _register() -> None:
  seq = dict(dataset="digits-seq", lr=5e-3, epochs=15, batch_size=32)
  specs = {
      "rnn": (lambda num_classes=10: models.RNNClassifier("rnn", 64, num_classes), seq,
              "Elman RNN (64) over the 8 rows, last state -> dense"),
      "lstm": (lambda num_classes=10: models.RNNClassifier("lstm", 64, num_classes, readout="all"), seq,
               "LSTM (64) over the 8 rows, all steps -> dense"),
      "gru": (lambda num_classes=10: models.RNNClassifier("gru", 64, num_classes), seq,
              "GRU (64) over the 8 rows, last state -> dense"),
      "cnn1d": (lambda num_classes=10: models.CNN1D(num_classes=num_classes), dict(seq, lr=3e-3, epochs=10),
                "1-D CNN: conv 32, conv 64 (k3, pad 1) + relu -> dense"),
      "autoencoder": (lambda num_classes=10: models.Autoencoder(16), dict(lr=3e-3, epochs=60, loss_fn=losses.mse,
                                                                          targets="inputs"),
                      "dense autoencoder 64-128-16-128-64, MSE"),
      "conv-autoencoder": (lambda num_classes=10: models.ConvAutoencoder(16),
                           dict(lr=3e-3, epochs=30, loss_fn=losses.mse, targets="inputs"),
                           "conv autoencoder, latent 16, MSE"),
      "vae": (lambda num_classes=10: models.VAE(2), dict(lr=3e-3, epochs=40, loss_fn=models.VAE.loss,
                                                        targets="inputs"),
              "variational autoencoder, latent 2, negative ELBO"),
  }
  for name, (factory, defaults, description) in specs.items():
    if name not in MODELS:
      register_model(name, factory, description=description, **defaults)


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_reconstructions(x, recon, path, n: int = 10) -> str:
  """A 2 x ``n`` grid: originals (top row) and their reconstructions (bottom row)."""
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
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_latent(z, y, path) -> str:
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
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def autoencoder_figures(model_name: str, state, dataset: str, out_dir: str, data_dir=None) -> list[str]:
  """Writes ``reconstructions.png`` and ``latent.png`` for a trained autoencoder."""
  from dlfunc import data
  test = data.load(dataset, "test", data_dir)
  model = MODELS[model_name].factory(num_classes=test.num_classes)
  v = state.variables
  x = np.asarray(test.x)
  recon = np.asarray(model.apply(v, x, method="reconstruct"))
  z = model.apply(v, x, method="encode")
  z = np.asarray(z[0] if isinstance(z, tuple) else z)
  os.makedirs(out_dir, exist_ok=True)
  return [plot_reconstructions(x, recon, os.path.join(out_dir, "reconstructions.png")),
          plot_latent(z, test.y, os.path.join(out_dir, "latent.png"))]


def after_train(state, summary: dict, args: argparse.Namespace) -> None:
  """``dlfunc train`` hook: figures for the autoencoders (into ``--workdir`` or the current directory)."""
  if summary.get("model") not in AUTOENCODERS:
    return
  out = args.workdir or "."
  for path in autoencoder_figures(summary["model"], state, summary["dataset"], out, args.data_dir):
    print(f"wrote {path}")


def plot_score_histogram(scores, is_anomaly, threshold, path, holdout) -> str:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 3.8))
  bins = np.linspace(0, float(np.percentile(scores, 99.5)), 40)
  ax.hist(scores[~is_anomaly], bins=bins, alpha=0.6, label="normal (other digits)")
  ax.hist(scores[is_anomaly], bins=bins, alpha=0.6, label=f"held out ({holdout})")
  ax.axvline(threshold, color="k", ls="--", label="threshold")
  ax.set_xlabel("reconstruction MSE (anomaly score)")
  ax.set_ylabel("test examples")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _anomaly_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--holdout", type=int, default=9, help="class held out of training, the anomaly (default 9)")
  p.add_argument("--dataset", default="digits", help="image data set (default digits)")
  p.add_argument("--latent-dim", type=int, default=16, help="autoencoder code width, and the PCA rank (default 16)")
  p.add_argument("--percentile", type=float, default=95.0,
                 help="threshold at this percentile of the training scores (default 95)")
  p.add_argument("--epochs", type=int, default=60, help="epochs (default 60)")
  p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate, cosine decay (default 0.003)")
  p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
  p.add_argument("--out-dir", default=".", help="where anomaly_scores.png goes (default: current directory)")
  p.add_argument("--data-dir", default=None, help="TFDS data dir")
  p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _anomaly(args: argparse.Namespace, t0: float | None = None) -> int:
  import optax
  from dlfunc import anomaly
  t0 = time.perf_counter() if t0 is None else t0
  if args.latent_dim <= 0:
    raise ValueError(f"--latent-dim must be a positive integer, got {args.latent_dim}.")
  split = anomaly.holdout_split(args.dataset, args.holdout)
  steps = args.epochs * (len(split.x_train) // 32)
  opt = optax.adam(optax.cosine_decay_schedule(args.lr, max(1, steps)))
  det, _ = anomaly.fit_detector(models.Autoencoder(args.latent_dim, data_shape=split.x_train.shape[1:]),
                                split.x_train, percentile=args.percentile, epochs=args.epochs, batch_size=32,
                                optimizer=opt, seed=args.seed, progress=not args.no_progress)
  result = anomaly.evaluate(det, split.x_test, split.is_anomaly)
  pca = anomaly.pca_scores(split.x_train, split.x_test, args.latent_dim)
  result["pca_auroc"] = anomaly.auroc(pca, split.is_anomaly)
  p_pca, r_pca = anomaly.precision_recall(
      pca > np.percentile(anomaly.pca_scores(split.x_train, split.x_train, args.latent_dim), args.percentile),
      split.is_anomaly)
  result.update(pca_precision=p_pca, pca_recall=r_pca, holdout=args.holdout, latent_dim=args.latent_dim)
  os.makedirs(args.out_dir, exist_ok=True)
  path = plot_score_histogram(anomaly.scores(det, split.x_test), split.is_anomaly, det.threshold,
                              os.path.join(args.out_dir, "anomaly_scores.png"), args.holdout)
  print(f"held-out class {args.holdout}: {int(split.is_anomaly.sum())} anomalies among {len(split.x_test)} test "
        f"examples; threshold {det.threshold:.5f} ({args.percentile:g}th percentile of training scores)")
  print(f"autoencoder (latent {args.latent_dim}): precision {result['precision']:.3f}  recall {result['recall']:.3f}"
        f"  AUROC {result['auroc']:.3f}")
  print(f"PCA baseline (rank {args.latent_dim}):   precision {p_pca:.3f}  recall {r_pca:.3f}"
        f"  AUROC {result['pca_auroc']:.3f}")
  print(f"wrote {path}  ({time.perf_counter() - t0:.1f} s)")
  if args.json:
    print(json.dumps(result))
  return 0


def _cli_modules() -> list:
  """``dlfunc.cli``, and ``__main__`` too when the CLI runs as ``python -m dlfunc.cli`` (a second copy)."""
  from dlfunc import cli
  mods = [cli]
  main = sys.modules.get("__main__")
  if main is not None and main is not cli and hasattr(main, "register_command") and hasattr(main, "COMMANDS"):
    mods.append(main)
  return mods


def _register_command() -> None:
  for cli in _cli_modules():
    if "anomaly" not in cli.COMMANDS:
      cli.register_command("anomaly", "flag a held-out class by autoencoder reconstruction error",
                           _anomaly_arguments, _anomaly)
    hooks = getattr(cli, "AFTER_TRAIN", None)
    if hooks is not None and after_train not in hooks:
      hooks.append(after_train)


_register()
_register_command()
