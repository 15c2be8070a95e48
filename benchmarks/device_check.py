"""A short check that dlfunc trains on whatever accelerator JAX sees (GPU/TPU).

Run on a machine with an accelerator:

    PYTHONPATH=. python benchmarks/device_check.py

It needs no TensorFlow Datasets (the digits come straight from scikit-learn),
trains the seed MLP and LeNet with ``dlfunc.train.fit`` on the default device,
checks the accuracy bars, and times ``train_step`` against a hand-written
JAX+optax step on the same device (and PyTorch eager on CUDA when present).
Prints one JSON object as its last line.
"""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from dlfunc import losses, models, optim, train


def _digits():
  d = load_digits()
  x = (d.images / 16.0).astype(np.float32)[..., None]
  y = d.target.astype(np.int32)
  idx = np.random.default_rng(0).permutation(len(y))
  cut = int(0.8 * len(y))
  return (x[idx[:cut]], y[idx[:cut]]), (x[idx[cut:]], y[idx[cut:]])


def _rate(step, state, batch, n=300):
  for _ in range(5):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(n):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  return n / (time.perf_counter() - t)


def _hand_written(model, tx, x, y):
  params = model.init(jax.random.key(0), x)["params"]
  opt_state = tx.init(params)

  @jax.jit
  def step(carry, batch):
    p, s = carry
    def loss(p):
      return losses.sparse_softmax_cross_entropy(model.apply({"params": p}, batch[0]), batch[1])
    l, g = jax.value_and_grad(loss)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), l
  return step, (params, opt_state)


def _torch_rate(kind, x, y, n=300):
  try:
    import torch
  except ImportError:
    return None
  if not torch.cuda.is_available():
    return None
  dev = "cuda"
  if kind == "mlp":
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
  else:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(32 * 6 * 6, 10))
  net = net.to(dev)
  opt = torch.optim.Adam(net.parameters(), 1e-3)
  xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2), device=dev)
  yt = torch.tensor(np.asarray(y), device=dev, dtype=torch.long)
  def one():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(xt), yt)
    loss.backward()
    opt.step()
  for _ in range(5):
    one()
  torch.cuda.synchronize()
  t = time.perf_counter()
  for _ in range(n):
    one()
  torch.cuda.synchronize()
  return n / (time.perf_counter() - t)


def main():
  out = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
  (xtr, ytr), (xte, yte) = _digits()
  for name, model, epochs, bar in (("mlp", models.MLP(), 40, 0.95), ("lenet", models.LeNet(), 30, 0.97)):
    t = time.perf_counter()
    state, _ = train.fit(model, (xtr, ytr), optimizer=optim.adam(1e-3), epochs=epochs, batch_size=32,
                         progress=False)
    m = train.evaluate(state, (xte, yte))
    out[f"{name}_test_accuracy"] = round(float(m["accuracy"]), 4)
    out[f"{name}_fit_seconds"] = round(time.perf_counter() - t, 2)
    out[f"{name}_params_on"] = str(next(iter(jax.tree_util.tree_leaves(state.params)[0].devices())))
    assert m["accuracy"] >= bar, f"{name}: accuracy {m['accuracy']:.4f} below {bar} on {out['backend']}"
  for name, model, bs in (("mlp", models.MLP(), 128), ("cnn", models.CNN(), 64)):
    x, y = jnp.asarray(xtr[:bs]), jnp.asarray(ytr[:bs])
    state = train.create_train_state(model, optim.adam(1e-3), x, jax.random.key(0))
    ours = _rate(train.train_step, state, (x, y))
    step, carry = _hand_written(model, optax.adam(1e-3), x, y)
    ref = _rate(step, carry, (x, y))
    out[f"{name}_steps_per_s"] = {"dlfunc": round(ours, 1), "jax_optax": round(ref, 1),
                                  "ratio_vs_jax_optax": round(ours / ref, 3)}
    tr = _torch_rate(name, xtr[:bs], ytr[:bs])
    if tr:
      out[f"{name}_steps_per_s"].update(torch_eager=round(tr, 1), ratio_vs_torch=round(ours / tr, 3))
  print(json.dumps(out))


if __name__ == "__main__":
  main()
