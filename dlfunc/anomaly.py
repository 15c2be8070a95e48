r"""Anomaly detection by reconstruction error.

An autoencoder trained only on *normal* data reconstructs normal inputs well
and unfamiliar ones badly, so the per-example reconstruction error is an
anomaly score. The threshold is a percentile of the scores on the training
data: at the 95th, about 5% of normal examples are flagged (the false-positive
rate you accept).

Example (the CLI's ``dlfunc anomaly --holdout 9``)::

    from dlfunc import anomaly, models
    split = anomaly.holdout_split("digits", holdout=9)
    det, _ = anomaly.fit_detector(models.Autoencoder(16), split.x_train, epochs=60)
    anomaly.evaluate(det, split.x_test, split.is_anomaly)
    # {'precision': ..., 'recall': ..., 'auroc': ..., 'threshold': ...}

The PCA baseline, :func:`pca_scores`, is the linear autoencoder's optimum in
closed form; a nonlinear autoencoder earns its keep only when it beats it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from dlfunc import losses

__all__ = [
  "Detector",
  "HoldoutSplit",
  "holdout_split",
  "reconstruction_errors",
  "fit_detector",
  "scores",
  "auroc",
  "precision_recall",
  "evaluate",
  "pca_scores",
  "holdout_experiment",
]


class Detector(NamedTuple):
  """A trained reconstruction-error detector (a value; no hidden state).

  Attributes:
    model: a module with a ``reconstruct`` method (all dlfunc autoencoders) or
      whose ``__call__`` returns the reconstruction.
    variables: its trained variables.
    threshold: scores above it are flagged.
    percentile: the training-score percentile the threshold was set at.
  """

  model: Any
  variables: Any
  threshold: float
  percentile: float


class HoldoutSplit(NamedTuple):
  """Normal training data and a labelled test set (``is_anomaly`` True for the held-out class)."""

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  is_anomaly: np.ndarray


def holdout_split(dataset: str = "digits", holdout: int = 9) -> HoldoutSplit:
  """Removes class ``holdout`` from the training split; the whole test split, labelled, evaluates.

  The held-out class appears only in the test split, as the anomaly to flag.
  """
  from dlfunc import data

  tr, te = data.load(dataset, "train"), data.load(dataset, "test")
  if not 0 <= holdout < tr.num_classes:
    raise ValueError(f"holdout must be a class label in [0, {tr.num_classes - 1}], got {holdout}.")
  keep = tr.y != holdout
  return HoldoutSplit(
    np.asarray(tr.x[keep]), np.asarray(tr.y[keep]), np.asarray(te.x), np.asarray(te.y), np.asarray(te.y == holdout)
  )


def _reconstruct(model, variables, x):
  if hasattr(model, "reconstruct"):
    return model.apply(variables, x, method="reconstruct")
  return model.apply(variables, x, train=False)


def reconstruction_errors(model, variables, x, *, batch_size: int = 512) -> np.ndarray:
  """Per-example mean squared reconstruction error, shape ``(N,)``."""
  x = np.asarray(x, np.float32)
  fn = jax.jit(lambda v, xb: ((_reconstruct(model, v, xb) - xb) ** 2).reshape(xb.shape[0], -1).mean(-1))
  return np.concatenate([np.asarray(fn(variables, x[i : i + batch_size])) for i in range(0, len(x), batch_size)])


def fit_detector(model, x_normal, *, percentile: float = 95.0, loss_fn=None, **fit_kwargs):
  """Trains ``model`` to reconstruct ``x_normal`` with :func:`dlfunc.train.fit`, then sets the threshold.

  Args:
    model: an autoencoder (``Autoencoder``, ``ConvAutoencoder``, ``VAE``, ...).
    x_normal: normal examples only.
    percentile: threshold at this percentile of the training scores, in (0, 100].
    loss_fn: default ``dlfunc.losses.mse``, or the model's ``loss`` (e.g. ``VAE.loss``).
    **fit_kwargs: passed to ``fit`` (``epochs``, ``batch_size``, ``optimizer``, ``seed``, ...).

  Returns:
    ``(Detector, history)``.
  """
  from dlfunc.train import fit

  if not 0.0 < percentile <= 100.0:
    raise ValueError(f"percentile must be in (0, 100], got {percentile}.")
  x_normal = np.asarray(x_normal, np.float32)
  if loss_fn is None:
    loss_fn = getattr(type(model), "loss", None) or losses.mse
  state, history = fit(model, (x_normal, x_normal), loss_fn=loss_fn, **fit_kwargs)
  variables = state.variables
  threshold = float(np.percentile(reconstruction_errors(model, variables, x_normal), percentile))
  return Detector(model, variables, threshold, float(percentile)), history


def scores(detector: Detector, x) -> np.ndarray:
  """Anomaly scores (reconstruction errors) of ``x``."""
  return reconstruction_errors(detector.model, detector.variables, x)


def auroc(scores, labels) -> float:
  r"""Area under the ROC curve: the probability that a random anomaly scores above a random normal.

  Computed exactly from ranks (Mann-Whitney U, ties counted one half):
  :math:`\mathrm{AUROC} = (R_+ - n_+(n_+ + 1)/2) / (n_+ n_-)`, with :math:`R_+` the
  rank sum of the positives. Equals ``sklearn.metrics.roc_auc_score``.
  """
  s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels).astype(bool).ravel()
  if s.shape != y.shape:
    raise ValueError(f"auroc: {s.size} scores but {y.size} labels; they must match.")
  n_pos, n_neg = int(y.sum()), int((~y).sum())
  if n_pos == 0 or n_neg == 0:
    raise ValueError(f"auroc needs both classes; got {n_pos} anomalies and {n_neg} normal examples.")
  order = np.argsort(s, kind="mergesort")
  ranks = np.empty(len(s))
  sorted_s = s[order]
  # average ranks over ties
  _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
  avg = first + (counts + 1) / 2.0
  ranks[order] = np.repeat(avg, counts)
  return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def precision_recall(flagged, labels) -> tuple[float, float]:
  """Precision and recall of boolean ``flagged`` against boolean ``labels`` (0 when undefined)."""
  f, y = np.asarray(flagged).astype(bool), np.asarray(labels).astype(bool)
  tp = int(np.sum(f & y))
  return (tp / max(int(f.sum()), 1), tp / max(int(y.sum()), 1))


def evaluate(detector: Detector, x, is_anomaly) -> dict:
  """``precision``, ``recall`` (at the detector's threshold), ``auroc`` and ``threshold`` on labelled data."""
  s = scores(detector, x)
  flagged = s > detector.threshold
  p, r = precision_recall(flagged, is_anomaly)
  return {
    "precision": p,
    "recall": r,
    "auroc": auroc(s, is_anomaly),
    "threshold": detector.threshold,
    "flagged": int(flagged.sum()),
  }


def pca_scores(x_train, x, rank: int) -> np.ndarray:
  """Baseline: per-example MSE of ``x`` reconstructed from the top-``rank`` principal components of ``x_train``."""
  a = np.asarray(x_train, np.float64).reshape(len(x_train), -1)
  b = np.asarray(x, np.float64).reshape(len(x), -1)
  if not 0 < rank <= min(a.shape):
    raise ValueError(f"rank must be in [1, {min(a.shape)}], got {rank}.")
  mu = a.mean(0)
  _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
  v = vt[:rank].T
  rec = (b - mu) @ v @ v.T + mu
  return np.mean((rec - b) ** 2, axis=1)


def holdout_experiment(
  dataset: str = "digits",
  holdout: int = 9,
  *,
  latent_dim: int = 16,
  percentile: float = 95.0,
  epochs: int = 60,
  lr: float = 3e-3,
  batch_size: int = 32,
  seed: int = 0,
  progress: bool = False,
  figure: str | None = None,
) -> dict:
  """``dlfunc anomaly``: an autoencoder trained without class ``holdout`` flags it, beside the PCA baseline.

  Trains ``models.Autoencoder(latent_dim)`` on every other class (Adam, cosine
  decay from ``lr``), sets the threshold at ``percentile`` of the training
  scores, and scores the whole test split; the PCA baseline of the same rank
  gets the same threshold rule.

  Args:
    figure: if given, a path where the score histograms (:func:`dlfunc.train.plot_score_histogram`) are drawn.

  Returns:
    :func:`evaluate`'s ``precision``, ``recall``, ``auroc``, ``threshold``,
    ``flagged``, and ``pca_auroc``, ``pca_precision``, ``pca_recall``,
    ``holdout``, ``latent_dim``, ``n_anomalies``, ``n_test``.
  """
  import optax
  from dlfunc import models

  if latent_dim <= 0:
    raise ValueError(f"--latent-dim must be a positive integer, got {latent_dim}.")
  split = holdout_split(dataset, holdout)
  steps = epochs * (len(split.x_train) // batch_size)
  opt = optax.adam(optax.cosine_decay_schedule(lr, max(1, steps)))
  det, _ = fit_detector(
    models.Autoencoder(latent_dim, data_shape=split.x_train.shape[1:]),
    split.x_train,
    percentile=percentile,
    epochs=epochs,
    batch_size=batch_size,
    optimizer=opt,
    seed=seed,
    progress=progress,
  )
  result = evaluate(det, split.x_test, split.is_anomaly)
  pca = pca_scores(split.x_train, split.x_test, latent_dim)
  result["pca_auroc"] = auroc(pca, split.is_anomaly)
  pca_threshold = np.percentile(pca_scores(split.x_train, split.x_train, latent_dim), percentile)
  p_pca, r_pca = precision_recall(pca > pca_threshold, split.is_anomaly)
  result.update(
    pca_precision=p_pca,
    pca_recall=r_pca,
    holdout=holdout,
    latent_dim=latent_dim,
    n_anomalies=int(split.is_anomaly.sum()),
    n_test=len(split.x_test),
  )
  if figure is not None:
    from dlfunc.train import plot_score_histogram

    plot_score_histogram(scores(det, split.x_test), split.is_anomaly, det.threshold, figure, holdout)
  return result
