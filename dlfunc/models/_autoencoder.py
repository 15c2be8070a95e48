"""Autoencoders: dense, convolutional and variational, each with ``encode``, ``decode`` and ``__call__``.

Train them with :func:`dlfunc.train.fit` on ``(x, x)``:

* ``Autoencoder`` / ``ConvAutoencoder``: ``loss_fn=dlfunc.losses.mse``; ``__call__``
  returns the reconstruction (sigmoid output, for data in [0, 1]).
* ``VAE``: ``loss_fn=VAE.loss`` (the negative ELBO, :func:`dlfunc.losses.vae_loss`);
  ``__call__`` returns a :class:`VAEOutput` (logits, mean, logvar).

All three take ``data_shape``, the shape of one example (default ``(8, 8, 1)``,
the embedded digits), since the decoder must know how many values to produce.
Inputs may also come flattened, ``(N, prod(data_shape))``; outputs take the
input's shape.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as linen
import flax.struct as struct
import jax
import jax.numpy as jnp

from dlfunc import losses, nn
from dlfunc.models._layers import Conv, Dense, precision


def _check_latent(name: str, latent_dim) -> None:
  if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim <= 0:
    raise ValueError(f"{name}: latent_dim must be a positive integer, got {latent_dim!r}.")


def _check_data(name: str, x, data_shape) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  d = math.prod(data_shape)
  if x.ndim < 2 or (tuple(x.shape[1:]) != tuple(data_shape) and math.prod(x.shape[1:]) != d):
    raise ValueError(
      f"{name}: expected inputs of shape (batch, {', '.join(map(str, data_shape))}) or (batch, {d}), "
      f"got {tuple(x.shape)}; set data_shape=(...) to the shape of one example."
    )
  return x


def _identity(x):
  return x


class Autoencoder(linen.Module):
  """Dense autoencoder: flatten -> ``hidden`` -> ``latent_dim`` -> reversed ``hidden`` -> ``data_shape``.

  Args:
    latent_dim: width of the code ``z``.
    hidden: encoder widths (the decoder mirrors them).
    data_shape: shape of one example.
    activation: after each hidden layer.
    output_activation: on the reconstruction (``sigmoid`` for [0, 1] data;
      ``None`` for a linear output).

  ``Autoencoder(k, hidden=(), activation=None, output_activation=None)`` is a
  linear autoencoder: trained with MSE it spans the same subspace as PCA of rank ``k``.

  Example:
    >>> import jax
    >>> ae = Autoencoder(latent_dim=16)
    >>> v = ae.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    >>> ae.apply(v, jnp.ones((2, 8, 8, 1)), method="encode").shape
    (2, 16)
  """

  latent_dim: int
  hidden: Sequence[int] = (128,)
  data_shape: Sequence[int] = (8, 8, 1)
  activation: Optional[Callable] = nn.relu
  output_activation: Optional[Callable] = nn.sigmoid
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  def setup(self):
    pr = precision(self)
    _check_latent("Autoencoder", self.latent_dim)
    self.enc = [Dense(w, **pr) for w in self.hidden] + [Dense(self.latent_dim, **pr)]
    self.dec = [Dense(w, **pr) for w in reversed(tuple(self.hidden))] + [Dense(math.prod(self.data_shape), **pr)]

  def _act(self, x):
    return (self.activation or _identity)(x)

  def encode(self, x):
    """``(N, *data_shape)`` -> ``(N, latent_dim)``."""
    x = _check_data("Autoencoder", x, self.data_shape).reshape((x.shape[0], -1))
    for layer in self.enc[:-1]:
      x = self._act(layer(x))
    return self.enc[-1](x)

  def decode(self, z):
    """``(N, latent_dim)`` -> ``(N, *data_shape)``."""
    for layer in self.dec[:-1]:
      z = self._act(layer(z))
    y = (self.output_activation or _identity)(self.dec[-1](z))
    return y.reshape((z.shape[0], *self.data_shape))

  def reconstruct(self, x):
    """``decode(encode(x))`` in the input's shape."""
    return self.decode(self.encode(x)).reshape(jnp.shape(x))

  def __call__(self, x, train: bool = False):  # noqa: ARG002  (every model takes train)
    return self.reconstruct(x)


def _upsample(x, size):
  """Nearest-neighbour x2 along H and W, cropped to ``size`` (undoes a stride-2 SAME conv)."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x[:, : size[0], : size[1]]


class ConvAutoencoder(linen.Module):
  """Convolutional autoencoder for images ``(N, H, W, C)``.

  Encoder: a 3x3 stride-2 SAME conv + ReLU per entry of ``channels``, flatten,
  ``Dense(latent_dim)``. Decoder: ``Dense`` back to the last feature map, then
  per level a nearest-neighbour x2 upsample + 3x3 SAME conv + ReLU, and a final
  3x3 conv to ``C`` channels with a sigmoid. (Upsample + conv instead of a
  transposed conv: same job, no checkerboard artefacts.)
  """

  latent_dim: int
  channels: Sequence[int] = (16, 32)
  data_shape: Sequence[int] = (8, 8, 1)
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  def setup(self):
    pr = precision(self)
    _check_latent("ConvAutoencoder", self.latent_dim)
    if len(self.data_shape) != 3:
      raise ValueError(f"ConvAutoencoder: data_shape must be (height, width, channels), got {tuple(self.data_shape)}.")
    h, w, _ = self.data_shape
    sizes = [(h, w)]
    for _ in self.channels:
      sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
    self.sizes = sizes
    self.enc_convs = [
      Conv(c, (3, 3), strides=2, padding="SAME", kernel_init=nn.he_uniform, **pr) for c in self.channels
    ]
    self.enc_dense = Dense(self.latent_dim, **pr)
    self.dec_dense = Dense(math.prod(sizes[-1]) * self.channels[-1], **pr)
    rev = list(reversed(tuple(self.channels)))
    self.dec_convs = [Conv(c, (3, 3), padding="SAME", kernel_init=nn.he_uniform, **pr) for c in rev[1:] + rev[-1:]]
    self.out_conv = Conv(self.data_shape[-1], (3, 3), padding="SAME", **pr)

  def encode(self, x):
    x = _check_data("ConvAutoencoder", x, self.data_shape).reshape((-1, *self.data_shape))
    for conv in self.enc_convs:
      x = nn.relu(conv(x))
    return self.enc_dense(nn.flatten(x))

  def decode(self, z):
    x = nn.relu(self.dec_dense(z)).reshape((z.shape[0], *self.sizes[-1], self.channels[-1]))
    for conv, size in zip(self.dec_convs, reversed(self.sizes[:-1])):
      x = nn.relu(conv(_upsample(x, size)))
    return nn.sigmoid(self.out_conv(x))

  def reconstruct(self, x):
    return self.decode(self.encode(x)).reshape(jnp.shape(x))

  def __call__(self, x, train: bool = False):  # noqa: ARG002  (every model takes train)
    return self.reconstruct(x)


@struct.dataclass
class VAEOutput:
  """What :class:`VAE` returns: Bernoulli ``logits`` of the reconstruction, and ``q(z|x)``'s ``mean``, ``logvar``.

  A pytree; indexing (``out[i]``, ``out[None]``) indexes every field along the batch axis.
  """

  logits: Any
  mean: Any
  logvar: Any

  def __getitem__(self, idx):
    return VAEOutput(self.logits[idx], self.mean[idx], self.logvar[idx])

  @property
  def reconstruction(self):
    """Mean of the Bernoulli decoder, ``sigmoid(logits)``, in [0, 1]."""
    return nn.sigmoid(self.logits)


class VAE(linen.Module):
  r"""Variational autoencoder (Kingma & Welling) with a Gaussian encoder and Bernoulli decoder.

  ``encode(x) -> (mean, logvar)`` of :math:`q(z|x) = \mathcal N(\mu, \mathrm{diag}\, e^{\log\sigma^2})`;
  training samples :math:`z = \mu + e^{\log\sigma^2 / 2} \odot \epsilon`, :math:`\epsilon \sim \mathcal N(0, I)`
  (the reparameterisation trick, so gradients flow through :math:`\mu, \sigma`); evaluation uses
  :math:`z = \mu`. ``decode(z)`` gives the reconstruction in [0, 1].

  Args:
    latent_dim: width of ``z``.
    hidden: encoder widths (mirrored by the decoder).
    data_shape: shape of one example.
    rng_collection: the rng stream :math:`\epsilon` is drawn from when ``train=True``;
      ``"dropout"`` by default because that is the stream :func:`dlfunc.train.fit` supplies.

  Train with ``fit(VAE(2), (x, x), loss_fn=VAE.loss)``.
  """

  latent_dim: int
  hidden: Sequence[int] = (128,)
  data_shape: Sequence[int] = (8, 8, 1)
  rng_collection: str = "dropout"
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  def setup(self):
    pr = precision(self)
    _check_latent("VAE", self.latent_dim)
    self.enc = [Dense(w, **pr) for w in self.hidden]
    self.mean_head = Dense(self.latent_dim, **pr)
    self.logvar_head = Dense(self.latent_dim, kernel_init=nn.zeros, **pr)
    self.dec = [Dense(w, **pr) for w in reversed(tuple(self.hidden))] + [Dense(math.prod(self.data_shape), **pr)]

  def encode(self, x):
    """``(mean, logvar)``, each ``(N, latent_dim)``."""
    x = _check_data("VAE", x, self.data_shape).reshape((x.shape[0], -1))
    for layer in self.enc:
      x = nn.relu(layer(x))
    return self.mean_head(x), self.logvar_head(x)

  def decode_logits(self, z):
    for layer in self.dec[:-1]:
      z = nn.relu(layer(z))
    return self.dec[-1](z).reshape((z.shape[0], *self.data_shape))

  def decode(self, z):
    """``(N, latent_dim)`` -> reconstruction ``(N, *data_shape)`` in [0, 1]."""
    return nn.sigmoid(self.decode_logits(z))

  def reconstruct(self, x):
    """Deterministic reconstruction ``decode(mean)`` in the input's shape."""
    return self.decode(self.encode(x)[0]).reshape(jnp.shape(x))

  def __call__(self, x, train: bool = False) -> VAEOutput:
    mean, logvar = self.encode(x)
    z = mean
    if train:
      eps = jax.random.normal(self.make_rng(self.rng_collection), mean.shape, mean.dtype)
      z = mean + jnp.exp(0.5 * logvar) * eps
    return VAEOutput(self.decode_logits(z).reshape(jnp.shape(x)), mean, logvar)

  @staticmethod
  def loss(outputs: VAEOutput, targets) -> jax.Array:
    """The negative ELBO for :func:`dlfunc.train.fit` (``loss_fn=VAE.loss``)."""
    return losses.vae_loss(outputs.logits, targets, outputs.mean, outputs.logvar)
