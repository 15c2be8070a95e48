"""Record the Keras 3 and PyTorch outputs that assignment 07's step tests compare against.

Run once, from the repository root (the output is committed):

    KERAS_BACKEND=jax .venv/bin/python assignments/07/record_fixtures.py

For each cell (SimpleRNN/RNN, LSTM, GRU) and each framework it draws weights
from NumPy's PCG64 (seeded), loads them into the framework's layer, runs

* one step from a random initial state (``h1``, and ``c1`` for the LSTM), and
* a 6-step sequence from the same state (``ys``: every step's output),

and stores the weights converted to the assignment's layout (Keras' ``x W``,
gates LSTM ``i, f, g, o`` and GRU ``z, r, n``, GRU "reset after") next to the
inputs and the outputs, in ``fixtures.npz`` (float32, a few kB). The
conversion from PyTorch is written out here so that it can be read:

* ``kernel = weight_ih.T``, ``recurrent_kernel = weight_hh.T``;
* RNN/LSTM: ``bias = bias_ih + bias_hh`` (they only ever enter as a sum);
* GRU: PyTorch stacks the gates ``r, z, n``; they are reordered to ``z, r, n``,
  and ``bias_ih`` / ``bias_hh`` stay apart (``bias`` / ``recurrent_bias``),
  because ``bias_hh``'s ``n`` part is multiplied by the reset gate.

Versions used for the committed file: Keras 3 (JAX backend) and torch 2.x, CPU.
"""
import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np

F, H, B, T = 3, 4, 2, 6
OUT = pathlib.Path(__file__).resolve().parent / "fixtures.npz"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def draw(seed, shape, scale=0.5):
  return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def inputs(seed):
  return draw(seed, (B, T, F), 1.0), draw(seed + 1, (B, H), 1.0), draw(seed + 2, (B, H), 1.0)


def record_keras(cell, seed):
  import keras
  g = GATES[cell]
  kernel, rec = draw(seed + 10, (F, g * H)), draw(seed + 11, (H, g * H))
  x, h0, c0 = inputs(seed)
  if cell == "rnn":
    layer = keras.layers.SimpleRNN(H, return_sequences=True, return_state=True)
    weights = [kernel, rec, draw(seed + 12, (H,))]
  elif cell == "lstm":
    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    weights = [kernel, rec, draw(seed + 12, (4 * H,))]
  else:
    layer = keras.layers.GRU(H, return_sequences=True, return_state=True, reset_after=True)
    weights = [kernel, rec, draw(seed + 12, (2, 3 * H))]
  layer.build((B, T, F))
  layer.set_weights(weights)
  state = [h0, c0] if cell == "lstm" else [h0]
  one = [np.asarray(o) for o in layer(x[:, :1], initial_state=state)]
  full = [np.asarray(o) for o in layer(x, initial_state=state)]
  params = {"kernel": kernel, "recurrent_kernel": rec}
  if cell == "gru":
    params.update(bias=weights[2][0], recurrent_bias=weights[2][1])
  else:
    params["bias"] = weights[2]
  out = dict(params, x=x, h0=h0, h1=one[1], ys=full[0])
  if cell == "lstm":
    out.update(c0=c0, c1=one[2])
  return out


def record_torch(cell, seed):
  import torch
  g = GATES[cell]
  cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
  layer = cls(F, H, batch_first=True)
  w_ih, w_hh = draw(seed + 20, (g * H, F)), draw(seed + 21, (g * H, H))
  b_ih, b_hh = draw(seed + 22, (g * H,)), draw(seed + 23, (g * H,))
  with torch.no_grad():
    for name, value in (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
      getattr(layer, name).copy_(torch.from_numpy(value))
  x, h0, c0 = inputs(seed)
  state = (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]) if cell == "lstm" else torch.from_numpy(h0)[None]
  with torch.no_grad():
    y1, s1 = layer(torch.from_numpy(x[:, :1]), state)
    ys, _ = layer(torch.from_numpy(x), state)
  if cell == "gru":
    perm = np.concatenate([np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)])  # r,z,n -> z,r,n
    params = {"kernel": w_ih[perm].T.copy(), "recurrent_kernel": w_hh[perm].T.copy(), "bias": b_ih[perm],
              "recurrent_bias": b_hh[perm]}
  else:
    params = {"kernel": w_ih.T.copy(), "recurrent_kernel": w_hh.T.copy(), "bias": b_ih + b_hh}
  out = dict(params, x=x, h0=h0, ys=ys.numpy())
  if cell == "lstm":
    out.update(h1=s1[0][0].numpy(), c0=c0, c1=s1[1][0].numpy())
  else:
    out["h1"] = s1[0].numpy()
  return out


def main():
  arrays = {}
  for i, cell in enumerate(("rnn", "lstm", "gru")):
    for src, fn in (("keras", record_keras), ("torch", record_torch)):
      for k, v in fn(cell, 100 * i + (0 if src == "keras" else 50)).items():
        arrays[f"{src}_{cell}_{k}"] = np.asarray(v, np.float32)
  np.savez_compressed(OUT, **arrays)
  print(f"wrote {len(arrays)} arrays to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
  main()
