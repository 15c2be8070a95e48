"""Losses: each returns the mean over the batch (a scalar).

Cross-entropies take logits where possible: ``log_softmax`` / ``softplus`` of
logits is finite for logits of magnitude 1e4, while ``log(softmax(...))`` is not.

Mixed precision: bfloat16/float16 inputs (the logits of a model computing in
bfloat16) are upcast to float32 first, so every loss is computed and returned in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dlfunc.nn import log_softmax
from dlfunc.nn._checks import concrete_range

Array = jax.Array


def _f32(a) -> Array:
  """``a`` as an array, with 16-bit floats (bfloat16 or float16 logits of a mixed-precision model) upcast to
  float32: a loss sums over the batch, and in bfloat16 (8 significant bits) that sum loses most of its digits."""
  a = jnp.asarray(a)
  if jnp.issubdtype(a.dtype, jnp.floating) and jnp.finfo(a.dtype).bits < 32:
    return a.astype(jnp.float32)
  return a


def _same_shape(name: str, a: Array, b: Array, an: str, bn: str) -> None:
  if a.shape != b.shape:
    raise ValueError(
      f"{name}: {an} has shape {tuple(a.shape)} but {bn} has shape {tuple(b.shape)}; they must match "
      f"(no silent broadcasting: reshape one of them, e.g. targets.reshape({an}.shape))."
    )


def _penalty_sum(params, fn) -> Array:
  leaves = [jnp.asarray(w) for w in jax.tree_util.tree_leaves(params)]
  if not leaves:
    return jnp.zeros(())
  return sum((jnp.sum(fn(w)) for w in leaves[1:]), jnp.sum(fn(leaves[0])))


def mse(predictions: Array, targets: Array) -> Array:
  r"""Mean squared error, :math:`\frac1n\sum (\hat y - y)^2` over every element.

  Equals ``mean(optax.squared_error(...))`` (``optax.l2_loss`` carries a factor 1/2)
  and Keras' ``MeanSquaredError``.

  Example:
    >>> float(mse(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
    2.0
  """
  predictions, targets = _f32(predictions), _f32(targets)
  _same_shape("mse", predictions, targets, "predictions", "targets")
  return jnp.mean(jnp.square(predictions - targets))


def mae(predictions: Array, targets: Array) -> Array:
  r"""Mean absolute error, :math:`\frac1n\sum |\hat y - y|`.

  Example:
    >>> float(mae(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
    1.0
  """
  predictions, targets = _f32(predictions), _f32(targets)
  _same_shape("mae", predictions, targets, "predictions", "targets")
  return jnp.mean(jnp.abs(predictions - targets))


def softmax_cross_entropy(logits: Array, probs: Array, *, label_smoothing: float = 0.0) -> Array:
  r"""Cross-entropy between ``softmax(logits)`` and target distributions ``probs``.

  :math:`-\frac1N \sum_n \sum_k p_{nk} \log \mathrm{softmax}(z_n)_k`. With
  ``label_smoothing = a`` the targets become :math:`(1-a)p + a/K` (as
  ``optax.smooth_labels`` and Keras' ``label_smoothing``).

  Args:
    logits: ``(..., K)`` unnormalised scores (not probabilities).
    probs: ``(..., K)`` target distributions (e.g. one-hot).
    label_smoothing: ``a`` in ``[0, 1)``.

  Returns:
    The mean over the batch (every axis but the last).

  Warning:
    Keras' ``categorical_crossentropy`` defaults to ``from_logits=False`` and
    expects probabilities; pass it ``from_logits=True`` to compare.

  Example:
    >>> float(softmax_cross_entropy(jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]])))  # log 2
    0.6931471824645996
  """
  logits, probs = _f32(logits), _f32(probs)
  _same_shape("softmax_cross_entropy", logits, probs, "logits", "probs")
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"softmax_cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}.")
  if label_smoothing:
    probs = (1.0 - label_smoothing) * probs + label_smoothing / logits.shape[-1]
  return -jnp.mean(jnp.sum(probs * log_softmax(logits, axis=-1), axis=-1))


def sparse_softmax_cross_entropy(logits: Array, labels: Array) -> Array:
  r"""Cross-entropy with integer class labels: :math:`-\frac1N\sum_n \log \mathrm{softmax}(z_n)_{y_n}`.

  Equivalent to Keras' ``SparseCategoricalCrossentropy(from_logits=True)``,
  PyTorch's ``F.cross_entropy`` and the mean of
  ``optax.softmax_cross_entropy_with_integer_labels``.

  Args:
    logits: ``(..., K)``.
    labels: integers in ``[0, K)``, shaped like ``logits`` without its last axis.

  Returns:
    The mean over the batch. A label outside ``[0, K)`` is an error for a
    concrete array; under ``jit`` it gives NaN (never a wrapped or clamped label).

  Example:
    >>> float(sparse_softmax_cross_entropy(jnp.array([[0.0, 1e4]]), jnp.array([0])))
    10000.0
  """
  logits, labels = _f32(logits), _f32(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"sparse_softmax_cross_entropy: labels must be integers, got dtype {labels.dtype}.")
  if labels.shape != logits.shape[:-1]:
    raise ValueError(
      f"sparse_softmax_cross_entropy: labels shape {tuple(labels.shape)} must equal logits shape "
      f"without its class axis, {tuple(logits.shape[:-1])}."
    )
  k = logits.shape[-1]
  lo, hi = concrete_range(labels)  # traced labels (inside jit) are not checked: they give NaN below instead
  if lo < 0 or hi >= k:
    raise ValueError(
      f"sparse_softmax_cross_entropy: labels must be in [0, {k}) for {k} classes "
      f"(logits shape {tuple(logits.shape)}), got labels from {lo} to {hi}."
    )
  logp = log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(logp, labels[..., None], axis=-1, mode="fill", wrap_negative_indices=False)
  return -jnp.mean(picked)


def binary_cross_entropy(probs: Array, targets: Array, *, eps: float = 1e-7) -> Array:
  r"""Binary cross-entropy on probabilities, clipped to ``[eps, 1 - eps]`` as Keras does.

  :math:`-\frac1n\sum y\log p + (1-y)\log(1-p)` with :math:`p` clipped. Matches
  Keras' ``binary_crossentropy`` (``from_logits=False``); PyTorch's
  ``F.binary_cross_entropy`` clamps the log at -100 instead.

  Prefer :func:`binary_cross_entropy_with_logits` when you have logits: it is exact
  where this one clips.

  Example:
    >>> round(float(binary_cross_entropy(jnp.array([0.0]), jnp.array([1.0]))), 4)  # -log(1e-7)
    16.1181
  """
  probs, targets = _f32(probs), _f32(targets)
  _same_shape("binary_cross_entropy", probs, targets, "probs", "targets")
  p = jnp.clip(probs, eps, 1.0 - eps)
  return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p))


def binary_cross_entropy_with_logits(logits: Array, targets: Array) -> Array:
  r"""Binary cross-entropy on logits, :math:`\max(z,0) - z y + \log(1 + e^{-|z|})`.

  Finite for any logit; matches ``optax.sigmoid_binary_cross_entropy`` (mean)
  and PyTorch's ``F.binary_cross_entropy_with_logits``.

  Example:
    >>> float(binary_cross_entropy_with_logits(jnp.array([-1e4]), jnp.array([1.0])))
    10000.0
  """
  logits, targets = _f32(logits), _f32(targets)
  _same_shape("binary_cross_entropy_with_logits", logits, targets, "logits", "targets")
  return jnp.mean(jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def l1_penalty(params, scale: float = 1.0) -> Array:
  r""":math:`\lambda \sum |w|` over every leaf of a parameter pytree (Keras' ``L1(l1=scale)``).

  Example:
    >>> float(l1_penalty({"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}, scale=0.1))
    0.6000000238418579
  """
  return scale * _penalty_sum(params, jnp.abs)


def l2_penalty(params, scale: float = 1.0) -> Array:
  r""":math:`\lambda \sum w^2` over every leaf (no factor 1/2, as Keras' ``L2(l2=scale)``).

  Warning:
    Adding this to the loss of an Adam model is *not* AdamW's decoupled weight
    decay; and PyTorch's ``weight_decay=wd`` in SGD equals ``l2_penalty(scale=wd / 2)``.

  Example:
    >>> float(l2_penalty({"w": jnp.array([1.0, -2.0])}, scale=0.5))
    2.5
  """
  return scale * _penalty_sum(params, jnp.square)


__all__ = [
  "mse",
  "mae",
  "softmax_cross_entropy",
  "sparse_softmax_cross_entropy",
  "binary_cross_entropy",
  "binary_cross_entropy_with_logits",
  "l1_penalty",
  "l2_penalty",
]


def gaussian_kl(mean: Array, logvar: Array) -> Array:
  r"""KL divergence :math:`KL(\mathcal N(\mu, \sigma^2) \,\|\, \mathcal N(0, I))` per example.

  :math:`-\tfrac12 \sum_j (1 + \log\sigma_j^2 - \mu_j^2 - \sigma_j^2)`, summed over the last axis.
  Returns shape ``mean.shape[:-1]``.
  """
  mean, logvar = _f32(mean), _f32(logvar)
  _same_shape("gaussian_kl", mean, logvar, "mean", "logvar")
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), axis=-1)


def vae_loss(logits: Array, targets: Array, mean: Array, logvar: Array, *, beta: float = 1.0) -> Array:
  r"""Negative ELBO of a VAE with a Bernoulli decoder, averaged over the batch.

  .. math:: \frac1N \sum_n \Big[\sum_d \mathrm{BCE}(z_{nd}, x_{nd})
            + \beta\, KL\big(q(z|x_n) \,\|\, \mathcal N(0, I)\big)\Big]

  The reconstruction term is summed over every value of an example (not
  averaged: averaging would weigh the KL term ``D`` times too much) and
  computed from logits, so it is finite for any logit.

  Args:
    logits: decoder logits, ``(N, ...)``; ``targets``: the inputs in [0, 1], same shape.
    mean, logvar: the encoder's ``(N, latent)`` posterior parameters.
    beta: weight of the KL term (``beta > 1``: the beta-VAE).

  Warning:
    Keras' VAE example sums the BCE the same way; PyTorch's classic example
    uses ``F.binary_cross_entropy(..., reduction='sum')`` over the whole batch,
    i.e. ``N`` times this value.
  """
  logits, targets = _f32(logits), _f32(targets)
  _same_shape("vae_loss", logits, targets, "logits", "targets")
  if mean.shape[0] != logits.shape[0]:
    raise ValueError(f"vae_loss: mean has {mean.shape[0]} examples but logits have {logits.shape[0]}.")
  bce = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  recon = jnp.sum(bce.reshape((bce.shape[0], -1)), axis=-1)
  return jnp.mean(recon + beta * gaussian_kl(mean, logvar))


__all__ += ["gaussian_kl", "vae_loss"]
