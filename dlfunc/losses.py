"""Losses: each returns the mean over the batch (a scalar).

Cross-entropies take logits where possible: ``log_softmax`` / ``softplus`` of
logits is finite for logits of magnitude 1e4, while ``log(softmax(...))`` is not.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dlfunc.nn import log_softmax

Array = jax.Array


def _same_shape(name: str, a: Array, b: Array, an: str, bn: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{name}: {an} has shape {tuple(a.shape)} but {bn} has shape {tuple(b.shape)}; they must match.")


def mse(predictions: Array, targets: Array) -> Array:
  r"""Mean squared error, :math:`\frac1n\sum (\hat y - y)^2` over every element."""
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  _same_shape("mse", predictions, targets, "predictions", "targets")
  return jnp.mean(jnp.square(predictions - targets))


def mae(predictions: Array, targets: Array) -> Array:
  r"""Mean absolute error, :math:`\frac1n\sum |\hat y - y|`."""
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  _same_shape("mae", predictions, targets, "predictions", "targets")
  return jnp.mean(jnp.abs(predictions - targets))


def softmax_cross_entropy(logits: Array, probs: Array, *, label_smoothing: float = 0.0) -> Array:
  r"""Cross-entropy between ``softmax(logits)`` and target distributions ``probs``.

  :math:`-\frac1N \sum_n \sum_k p_{nk} \log \mathrm{softmax}(z_n)_k`. With
  ``label_smoothing = a`` the targets become :math:`(1-a)p + a/K` (as
  ``optax.smooth_labels`` and Keras' ``label_smoothing``).
  """
  logits, probs = jnp.asarray(logits), jnp.asarray(probs)
  _same_shape("softmax_cross_entropy", logits, probs, "logits", "probs")
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"softmax_cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}.")
  if label_smoothing:
    probs = (1.0 - label_smoothing) * probs + label_smoothing / logits.shape[-1]
  return -jnp.mean(jnp.sum(probs * log_softmax(logits, axis=-1), axis=-1))


def sparse_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
  r"""Cross-entropy with integer class labels: :math:`-\frac1N\sum_n \log \mathrm{softmax}(z_n)_{y_n}`.

  Equivalent to Keras' ``SparseCategoricalCrossentropy(from_logits=True)`` and
  PyTorch's ``F.cross_entropy``.
  """
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"sparse_softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}.")
  if labels.shape != logits.shape[:-1]:
    raise ValueError(f"sparse_softmax_cross_entropy: labels shape {tuple(labels.shape)} must equal logits shape "
                     f"without its class axis, {tuple(logits.shape[:-1])}.")
  logp = log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[..., None], axis=-1))


def binary_cross_entropy(probs: Array, targets: Array, *, eps: float = 1e-7) -> Array:
  r"""Binary cross-entropy on probabilities, clipped to ``[eps, 1 - eps]`` as Keras does.

  Prefer :func:`binary_cross_entropy_with_logits` when you have logits: it is exact
  where this one clips.
  """
  probs, targets = jnp.asarray(probs), jnp.asarray(targets)
  _same_shape("binary_cross_entropy", probs, targets, "probs", "targets")
  p = jnp.clip(probs, eps, 1.0 - eps)
  return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p))


def binary_cross_entropy_with_logits(logits: Array, targets: Array) -> Array:
  r"""Binary cross-entropy on logits, :math:`\max(z,0) - z y + \log(1 + e^{-|z|})`.

  Finite for any logit; matches ``optax.sigmoid_binary_cross_entropy`` (mean)
  and PyTorch's ``F.binary_cross_entropy_with_logits``.
  """
  logits, targets = jnp.asarray(logits), jnp.asarray(targets)
  _same_shape("binary_cross_entropy_with_logits", logits, targets, "logits", "targets")
  return jnp.mean(jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def l1_penalty(params, scale: float = 1.0) -> Array:
  r""":math:`\lambda \sum |w|` over every leaf of a parameter pytree."""
  leaves = jax.tree_util.tree_leaves(params)
  return scale * sum((jnp.sum(jnp.abs(w)) for w in leaves), jnp.zeros(()))


def l2_penalty(params, scale: float = 1.0) -> Array:
  r""":math:`\lambda \sum w^2` over every leaf (no factor 1/2, as Keras' ``L2``)."""
  leaves = jax.tree_util.tree_leaves(params)
  return scale * sum((jnp.sum(jnp.square(w)) for w in leaves), jnp.zeros(()))


__all__ = ["mse", "mae", "softmax_cross_entropy", "sparse_softmax_cross_entropy", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "l1_penalty", "l2_penalty"]
