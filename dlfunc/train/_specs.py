"""The built-in experiments of ``train_and_evaluate`` and ``dlfunc train --model``: each model with its defaults.

Registered when :mod:`dlfunc.train` is imported, so ``train_and_evaluate(TrainConfig(model="vae"))``
works in any program, with or without the CLI. Sequence models default to
``digits-seq`` (each 8x8 digit as 8 steps of 8 features); autoencoders
reconstruct their inputs (``targets="inputs"``) and draw
``reconstructions.png`` and ``latent.png`` (:func:`dlfunc.train.write_figures`).
"""

from __future__ import annotations

from typing import Any


def builtin_models() -> dict[str, dict[str, Any]]:
  """``{name: dict(factory=..., description=..., **defaults)}`` for :func:`dlfunc.train.register_model`."""
  from dlfunc import losses, models
  from dlfunc.train._plot import autoencoder_figures

  seq = dict(dataset="digits-seq", lr=5e-3, epochs=15, batch_size=32)
  ae = dict(lr=3e-3, loss_fn=losses.mse, targets="inputs", figures=autoencoder_figures)
  return {
    "mlp": dict(
      factory=lambda num_classes=10: models.MLP(num_classes=num_classes),
      lr=3e-3,
      epochs=40,
      description="the seed MLP: flatten -> 128 relu -> classes",
    ),
    "cnn": dict(
      factory=lambda num_classes=10: models.CNN(num_classes=num_classes),
      lr=3e-3,
      epochs=20,
      description="the seed CNN: conv 32 3x3 + relu -> dense",
    ),
    "lenet": dict(
      factory=lambda num_classes=10: models.LeNet(num_classes=num_classes),
      lr=3e-3,
      epochs=10,
      description="LeNet: 2 x [conv, batch norm, relu, max-pool], dense, dropout",
    ),
    "rnn": dict(
      seq,
      factory=lambda num_classes=10: models.RNNClassifier("rnn", 64, num_classes),
      description="Elman RNN (64) over the 8 rows, last state -> dense",
    ),
    "lstm": dict(
      seq,
      factory=lambda num_classes=10: models.RNNClassifier("lstm", 64, num_classes, readout="all"),
      description="LSTM (64) over the 8 rows, all steps -> dense",
    ),
    "gru": dict(
      seq,
      factory=lambda num_classes=10: models.RNNClassifier("gru", 64, num_classes),
      description="GRU (64) over the 8 rows, last state -> dense",
    ),
    "cnn1d": dict(
      seq,
      lr=3e-3,
      epochs=10,
      factory=lambda num_classes=10: models.CNN1D(num_classes=num_classes),
      description="1-D CNN: conv 32, conv 64 (k3, pad 1) + relu -> dense",
    ),
    "autoencoder": dict(
      ae,
      epochs=60,
      factory=lambda num_classes=10: models.Autoencoder(16),
      description="dense autoencoder 64-128-16-128-64, MSE",
    ),
    "conv-autoencoder": dict(
      ae,
      epochs=30,
      factory=lambda num_classes=10: models.ConvAutoencoder(16),
      description="conv autoencoder, latent 16, MSE",
    ),
    "vae": dict(
      ae,
      epochs=40,
      loss_fn=models.VAE.loss,
      factory=lambda num_classes=10: models.VAE(2),
      description="variational autoencoder, latent 2, negative ELBO",
    ),
  }
