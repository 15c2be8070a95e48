"""Pretrain the small backbone that assignment 09 fine-tunes, and save it as ``backbone.npz``.

Run once, from the repository root (the output is committed):

    .venv/bin/python assignments/09/make_backbone.py

The backbone (the ``features`` function given in the notebook) is two 3x3 SAME
convolutions with ReLU and one 2x2 max-pooling, 8x8x1 -> 4x4x32 -> 512 features. It
is trained with a Dense(10) head and Adam for 30 epochs on the digits **0-4**
only (train split); the digits 5-9 stay unseen, for the students' few-label
fine-tuning. Only the backbone is saved (keys ``conv1/kernel``, ``conv1/bias``,
``conv2/kernel``, ``conv2/bias``, float32, about 20 kB).
"""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

OUT = pathlib.Path(__file__).resolve().parent / "backbone.npz"
PRETRAIN_CLASSES = (0, 1, 2, 3, 4)


def conv(p, x):
  y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + p["bias"]


def pool(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def features(backbone, x):
  """The notebook's given backbone: (N, 8, 8, 1) -> (N, 512)."""
  x = pool(jax.nn.relu(conv(backbone["conv1"], x)))
  x = jax.nn.relu(conv(backbone["conv2"], x))
  return x.reshape(x.shape[0], -1)


def init(key):
  k1, k2, k3 = jax.random.split(key, 3)
  he = jax.nn.initializers.he_normal()
  return {"backbone": {"conv1": {"kernel": he(k1, (3, 3, 1, 16)), "bias": jnp.zeros(16)},
                       "conv2": {"kernel": he(k2, (3, 3, 16, 32)), "bias": jnp.zeros(32)}},
          "head": {"w": jax.nn.initializers.glorot_uniform()(k3, (512, 10)), "b": jnp.zeros(10)}}


def logits(params, x):
  return features(params["backbone"], x) @ params["head"]["w"] + params["head"]["b"]


def main():
  from dlfunc.data import batches, load
  tr, te = load("digits", "train"), load("digits", "test")
  keep, keep_t = np.isin(tr.y, PRETRAIN_CLASSES), np.isin(te.y, PRETRAIN_CLASSES)
  x, y = np.asarray(tr.x)[keep], np.asarray(tr.y)[keep]
  params, opt = init(jax.random.key(0)), optax.adam(3e-3)
  state = opt.init(params)

  @jax.jit
  def step(params, state, xb, yb):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(logits(p, xb), yb).mean()  # noqa: E731
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  for epoch in range(30):
    for xb, yb in batches(x, y, 32, seed=0, epoch=epoch):
      params, state = step(params, state, xb, yb)
  acc = float(np.mean(np.asarray(logits(params, te.x[keep_t])).argmax(-1) == te.y[keep_t]))
  flat = {f"{layer}/{name}": np.asarray(v, np.float32) for layer, leaves in params["backbone"].items()
          for name, v in leaves.items()}
  np.savez_compressed(OUT, **flat)
  print(f"test accuracy on digits 0-4: {acc:.3f}; wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
  main()
