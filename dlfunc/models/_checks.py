"""Input checks shared by the image models: one line saying what to change, at trace time (free per step)."""

from __future__ import annotations


def check_nhwc(name: str, x) -> None:
  """Raise when ``x`` looks like NCHW images: a channel axis of size 1-4 in front of larger spatial axes.

  dlfunc's (and Flax's, Keras's) images are ``(batch, height, width, channels)``;
  PyTorch's are ``(batch, channels, height, width)``. A convolution takes either
  shape without complaint and trains to chance on the wrong one, so the models
  check. The test reads only static shapes, so under ``jit`` it costs nothing.

  Example:
    >>> import numpy as np
    >>> check_nhwc("LeNet", np.zeros((8, 28, 28, 1)))
    >>> check_nhwc("LeNet", np.zeros((8, 1, 28, 28)))
    Traceback (most recent call last):
    ...
    ValueError: LeNet got images of shape (8, 1, 28, 28), channels first (NCHW);
    images are NHWC: x.transpose(0, 2, 3, 1).
  """
  shape = tuple(getattr(x, "shape", ()))
  if len(shape) == 4 and 1 <= shape[1] <= 4 and shape[2] > 4 and shape[3] > 4:
    raise ValueError(
      f"{name} got images of shape {shape}, channels first (NCHW); images are NHWC: x.transpose(0, 2, 3, 1)."
    )
