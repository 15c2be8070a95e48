"""LSTM training throughput: dlfunc vs Keras 3 (JAX backend) vs PyTorch ``nn.LSTM``, in one run.

The same model everywhere -- LSTM(hidden) over (batch, T, features), last state,
Dense(10) -- trained with Adam on softmax cross-entropy. Each framework is
warmed up (compilation excluded), then timed over ``--steps`` optimizer steps
on the default device (CPU or GPU) in rounds that interleave the frameworks
(best round counts), and the script prints train steps/s and the ratios
dlfunc / other (> 1: dlfunc is faster).

    python benchmarks/rnn.py                 # hidden 128, T 64, batch 32
    python benchmarks/rnn.py --steps 200 --only dlfunc,torch

What each one runs:

* dlfunc: ``models.RNNClassifier("lstm", hidden)`` and ``dlfunc.train.train_step``
  (one jit-compiled, buffer-donating step; the unroll is a ``lax.scan``);
  dlfunc-cudnn: the same with ``implementation="cudnn"`` (GPU only).
* keras: ``Sequential([LSTM, Dense])``, ``compile(jit_compile=True)``, ``fit`` on
  ``steps`` batches (what a Keras user runs; includes Keras' per-step loop).
* torch: ``nn.LSTM(batch_first=True)`` + ``nn.Linear``, ``torch.optim.Adam``, eager
  loop (cuDNN on a GPU, oneDNN on a CPU).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def data(args, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(args.batch, args.seq, args.features)).astype(np.float32)
  y = rng.integers(0, 10, size=(args.batch,)).astype(np.int32)
  return x, y


def bench_dlfunc(args, implementation="scan"):
  """Builds and warms up; returns ``run(n)``, which takes n train steps and waits for them."""
  import jax
  from dlfunc import models, optim
  from dlfunc.train import create_train_state, train_step
  x, y = data(args)
  model = models.RNNClassifier("lstm", hidden_size=args.hidden, num_classes=10, implementation=implementation)
  state = create_train_state(model, optim.adam(1e-3), x, jax.random.PRNGKey(0))
  batch = (jax.device_put(x), jax.device_put(y))
  box = [state]

  def run(n):
    state = box[0]
    for _ in range(n):
      state, m = train_step(state, batch)
    jax.block_until_ready((state.params, m))
    box[0] = state
  run(args.warmup)
  return run


def bench_keras(args):
  import keras
  x, y = data(args)
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((args.seq, args.features)), keras.layers.LSTM(args.hidden),
                            keras.layers.Dense(10)])
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
  xs, ys = np.tile(x, (args.steps, 1, 1)), np.tile(y, args.steps)

  def run(n):
    model.fit(xs[:n * args.batch], ys[:n * args.batch], batch_size=args.batch, epochs=1, verbose=0, shuffle=False)
  run(args.warmup)
  return run


def bench_torch(args):
  import torch
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  x, y = (torch.from_numpy(a).to(dev) for a in data(args))
  y = y.long()

  class Net(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.lstm = torch.nn.LSTM(args.features, args.hidden, batch_first=True)
      self.head = torch.nn.Linear(args.hidden, 10)

    def forward(self, x):
      _, (h, _) = self.lstm(x)
      return self.head(h[-1])

  net = Net().to(dev)
  opt = torch.optim.Adam(net.parameters(), 1e-3)
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()
    return loss

  def run(n):
    for _ in range(n):
      loss = step()
    loss.item()
    if dev == "cuda":
      torch.cuda.synchronize()
  run(args.warmup)
  return run


def check_cudnn(args) -> None:
  """Prints how far the cuDNN LSTM is from the scan (outputs, final state and gradients)."""
  import jax
  import jax.numpy as jnp
  from dlfunc import nn
  x, _ = data(args)
  p = nn.init_cell("lstm", jax.random.key(0), args.features, args.hidden)
  p["bias"] = p["bias"] + 0.1

  def f(p, impl, reverse):
    y, (h, c) = nn.unroll("lstm", p, x, implementation=impl, reverse=reverse)
    return jnp.sum(jnp.sin(y)) + jnp.sum(c), (y, h, c)
  for reverse in (False, True):
    (_, a), ga = jax.value_and_grad(f, has_aux=True)(p, "scan", reverse)
    (_, b), gb = jax.value_and_grad(f, has_aux=True)(p, "cudnn", reverse)
    out = max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b))
    grad = max(float(jnp.max(jnp.abs(ga[k] - gb[k])) / (jnp.max(jnp.abs(ga[k])) + 1e-12)) for k in ga)
    print(f"cudnn vs scan (reverse={reverse}): max |output diff| {out:.2e}, max relative grad diff {grad:.2e}")


def bench_dlfunc_cudnn(args):
  import jax
  if jax.default_backend() != "gpu":
    raise ImportError("implementation='cudnn' needs an NVIDIA GPU")
  return bench_dlfunc(args, "cudnn")


BENCHES = {"dlfunc": bench_dlfunc, "dlfunc-cudnn": bench_dlfunc_cudnn, "keras": bench_keras, "torch": bench_torch}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--seq", type=int, default=64)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--features", type=int, default=32)
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--repeats", type=int, default=3, help="best of this many timed runs per framework")
  p.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
  args = p.parse_args(argv)
  import jax
  print(f"LSTM(hidden={args.hidden}) T={args.seq} batch={args.batch} features={args.features}; "
        f"{args.steps} steps, best of {args.repeats}; jax device: {jax.devices()[0].device_kind}")
  if "dlfunc-cudnn" in args.only and jax.default_backend() == "gpu":
    check_cudnn(args)
  runners = {}
  for name in args.only.split(","):
    try:
      runners[name] = BENCHES[name](args)
    except ImportError as e:
      print(f"{name:>12}: skipped ({e})")
  # Rounds interleave the frameworks, so a burst of load elsewhere hits them alike; best round counts.
  results = {name: 0.0 for name in runners}
  for _ in range(args.repeats):
    for name, run in runners.items():
      t0 = time.perf_counter()
      run(args.steps)
      results[name] = max(results[name], args.steps / (time.perf_counter() - t0))
  for name, v in results.items():
    print(f"{name:>12}: {v:9.1f} train steps/s", flush=True)
  for ours in ("dlfunc", "dlfunc-cudnn"):
    for name, v in results.items():
      if ours in results and not name.startswith("dlfunc"):
        print(f"{ours} / {name}: {results[ours] / v:.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
