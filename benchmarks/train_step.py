"""Train-step throughput: dlfunc's ``train_step`` beside hand-written JAX+optax, PyTorch eager and Keras.

Models (both on MNIST-shaped input, 28x28x1, random data -- throughput does not
depend on the values; all use Adam(1e-3) and softmax cross-entropy on logits):

* the seed MLP, batch 128: flatten -> Dense(128) + ReLU -> Dense(10)   (PyTorch ``NeuralNet`` 784-128-10)
* the seed CNN, batch 64:  Conv(32, 3x3, VALID) + ReLU -> flatten -> Dense(10)

PyTorch runs with its faster intra-op thread count (1 or all cores, measured
at start). Every step returns loss and accuracy (dlfunc's metrics; the hand-written JAX step
computes the same two). Implementations are measured in interleaved rounds
(A B C D, B C D A, ...: the order rotates), so drifting machine load hits all of them alike; the
best round (least disturbed, as ``timeit`` reports) gives the ratios, and the
median is printed beside it.

``dlfunc bf16`` is the same model with ``dtype=jnp.bfloat16`` (mixed precision:
bfloat16 matmuls and convolutions, float32 parameters, Adam state and loss).
On a CPU without native bfloat16 arithmetic it is expected to be slower.

Ratios mean something only on an idle machine: the 1-, 5- and 15-minute load
averages are printed beside the figures (before and after each model), and
when the 1-minute load is above 1 (``--max-load``) the figures are printed
with "load too high, no ratio" instead of ratios; ``--force`` prints the ratios
anyway, labelled as measured under load.

``--cpu-time`` times each block by the CPU time of the process (all its
threads) instead of the wall clock. Pinned to one core (``taskset -c 0``) it
compares the work each implementation does, which the load of a shared machine
disturbs much less than wall time; PyTorch then tries only the thread counts
the process may use (``os.sched_getaffinity``). With ``--cpu-time`` the rates
are "steps per CPU-second".

    python benchmarks/train_step.py [--steps 30] [--rounds 15] [--models mlp,cnn] [--no-bf16]
    taskset -c 0 python benchmarks/train_step.py --cpu-time --force --models cnn
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlfunc import models, optim
from dlfunc.train import create_train_state, train_step

SHAPE = (28, 28, 1)
BATCH = {"mlp": 128, "cnn": 64}
CLOCK = {"clock": time.perf_counter}  # --cpu-time: time.process_time


def _cores() -> int:
  """The cores this process may run on (fewer than ``os.cpu_count()`` under ``taskset``)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


# ---------------------------------------------------------------------------- dlfunc


def dlfunc_runner(name, x, y, dtype=jnp.float32):
  model = models.MLP(dtype=dtype) if name == "mlp" else models.CNN(dtype=dtype)
  holder = {"state": create_train_state(model, optim.adam(1e-3), x, jax.random.PRNGKey(0))}
  xd, yd = jax.device_put(x), jax.device_put(y)

  def run(n):
    s = holder["state"]
    for _ in range(n):
      s, m = train_step(s, (xd, yd))
    jax.block_until_ready(m["loss"])
    holder["state"] = s
  return run


# ---------------------------------------------------------------------------- hand-written JAX + optax


def _glorot(key, shape):
  fan_in, fan_out = np.prod(shape[:-1]), shape[-1] * (np.prod(shape[:-2]) if len(shape) > 2 else 1)
  lim = np.sqrt(6.0 / (fan_in + fan_out))
  return jax.random.uniform(key, shape, jnp.float32, -lim, lim)


def jax_runner(name, x, y):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  if name == "mlp":
    params = {"w1": _glorot(k1, (784, 128)), "b1": jnp.zeros(128), "w2": _glorot(k2, (128, 10)), "b2": jnp.zeros(10)}

    def forward(p, x):
      h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["w1"] + p["b1"])
      return h @ p["w2"] + p["b2"]
  else:
    params = {"k": _glorot(k1, (3, 3, 1, 32)), "b": jnp.zeros(32), "w": _glorot(k2, (26 * 26 * 32, 10)),
              "c": jnp.zeros(10)}

    def forward(p, x):
      h = jax.lax.conv_general_dilated(x, p["k"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      h = jax.nn.relu(h + p["b"])
      return h.reshape(h.shape[0], -1) @ p["w"] + p["c"]

  tx = optax.adam(1e-3)

  def step(p, o, x, y):
    def loss_fn(p):
      logits = forward(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits
    (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

  step = jax.jit(step, donate_argnums=(0, 1))
  holder = {"p": params, "o": tx.init(params)}
  xd, yd = jax.device_put(x), jax.device_put(y)

  def run(n):
    p, o = holder["p"], holder["o"]
    for _ in range(n):
      p, o, m = step(p, o, xd, yd)
    jax.block_until_ready(m["loss"])
    holder["p"], holder["o"] = p, o
  return run


# ---------------------------------------------------------------------------- PyTorch eager


def torch_runner(name, x, y):
  import torch
  from torch import nn
  torch.manual_seed(0)
  if name == "mlp":
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
  else:
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 26 * 26, 10))
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW
  yt = torch.from_numpy(y.astype(np.int64))
  loss_fn = nn.CrossEntropyLoss()

  def run(n):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      logits = net(xt)
      loss = loss_fn(logits, yt)
      loss.backward()
      opt.step()
      _ = (logits.argmax(1) == yt).float().mean()
    loss.item()

  # PyTorch's intra-op threads spin-wait; on a busy machine one thread can beat
  # several. Give it its better setting, measured here, so the comparison is fair.
  timings = {}
  for threads in sorted({1, _cores()}):
    torch.set_num_threads(threads)
    run(2)
    t0 = CLOCK["clock"]()
    run(5)
    timings[threads] = CLOCK["clock"]() - t0
  best = min(timings, key=timings.get)
  torch.set_num_threads(best)
  print(f"  (PyTorch {name}: {best} intra-op thread(s), the faster of {sorted(timings)})")
  return run


# ---------------------------------------------------------------------------- Keras 3 (JAX backend)


def keras_runner(name, x, y):
  import keras
  keras.utils.set_random_seed(0)
  if name == "mlp":
    layers = [keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
  else:
    layers = [keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Flatten(), keras.layers.Dense(10)]
  model = keras.Sequential([keras.Input(SHAPE), *layers])
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

  def run(n):
    for _ in range(n):
      out = model.train_on_batch(x, y, return_dict=True)
    float(out["loss"])
  return run


# ---------------------------------------------------------------------------- harness


def dlfunc_bf16_runner(name, x, y):
  return dlfunc_runner(name, x, y, dtype=jnp.bfloat16)


def available_runners(bf16: bool = True):
  runners = {"dlfunc": dlfunc_runner, "jax+optax": jax_runner}
  if bf16:
    runners["dlfunc bf16"] = dlfunc_bf16_runner
  try:
    import torch  # noqa: F401
    runners["pytorch eager"] = torch_runner
  except ImportError:
    print("PyTorch not installed: skipped")
  try:
    import keras  # noqa: F401
    runners["keras"] = keras_runner
  except ImportError:
    print("Keras not installed: skipped")
  return runners


def bench(name, steps, rounds, bf16=True):
  rng = np.random.default_rng(0)
  b = BATCH[name]
  x = rng.random((b, *SHAPE), dtype=np.float32)
  y = rng.integers(0, 10, b).astype(np.int32)
  runs = {label: make(name, x, y) for label, make in available_runners(bf16).items()}
  for run in runs.values():  # Compile and warm up.
    run(3)
  rates = {label: [] for label in runs}
  labels = list(runs)
  for r in range(rounds):
    # Rotate who goes first: whoever follows PyTorch (whose idle threads spin for a
    # while) or Keras would otherwise always pay for it.
    for label in labels[r % len(labels):] + labels[:r % len(labels)]:
      run = runs[label]
      t0 = CLOCK["clock"]()
      run(steps)
      rates[label].append(steps / (CLOCK["clock"]() - t0))
  return ({label: max(r) for label, r in rates.items()}, {label: statistics.median(r) for label, r in rates.items()})


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=30, help="steps per timed block")
  p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (best and median reported)")
  p.add_argument("--models", default="mlp,cnn")
  p.add_argument("--no-bf16", action="store_true", help="leave out the bfloat16-compute dlfunc row")
  p.add_argument("--max-load", type=float, default=1.0,
                 help="report no ratios when the 1-minute load average exceeds this (default 1)")
  p.add_argument("--force", action="store_true",
                 help="print the ratios even above --max-load (labelled as measured under load)")
  p.add_argument("--cpu-time", action="store_true",
                 help="time by process CPU time, not wall time (use pinned to one core: taskset -c 0)")
  a = p.parse_args()
  if a.cpu_time:
    CLOCK["clock"] = time.process_time
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)), "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
  print(f"input 28x28x1 (MNIST-shaped), Adam(1e-3), {a.steps} steps x {a.rounds} interleaved rounds")
  unit = "steps/CPU-s" if a.cpu_time else "steps/s"
  print(f"timed by {'process CPU time' if a.cpu_time else 'wall clock'} ({unit}); "
        f"this process may use {_cores()} of {os.cpu_count()} cores")
  for name in a.models.split(","):
    before = os.getloadavg()
    res, med = bench(name, a.steps, a.rounds, bf16=not a.no_bf16)
    after = os.getloadavg()
    base = res["dlfunc"]
    load = max(before[0], after[0])
    busy = load > a.max_load
    hide = busy and not a.force
    print(f"\n{name.upper()} (batch {BATCH[name]})")
    print(f"  load average (1, 5, 15 min): {_load(before)} before, {_load(after)} after")
    ratio_head = "dlfunc / it (best)" if not hide else ""
    print(f"  {'implementation':<16}{'best ' + unit:>17}{'median':>10}   {ratio_head}")
    for label, rate in res.items():
      print(f"  {label:<16}{rate:>17.1f}{med[label]:>10.1f}   " + ("" if hide else f"{base / rate:>6.2f}x"))
    if hide:
      print(f"  load too high, no ratio (1-minute load {load:.2f} > {a.max_load:g}): "
            "these figures are under load; rerun on an idle machine to compare (or --force)")
      continue
    if busy:
      print(f"  UNDER LOAD (1-minute load {load:.2f} > {a.max_load:g}, --force): the ratios below are not "
            "idle-machine figures" + ("" if a.cpu_time else "; --cpu-time pinned to one core is steadier"))
    print(f"  dlfunc vs hand-written JAX+optax: {base / res['jax+optax']:.3f} (target >= 0.95)")
    if "pytorch eager" in res:
      print(f"  dlfunc vs PyTorch eager: {base / res['pytorch eager']:.2f}x (target >= 1.3)")
    if "dlfunc bf16" in res:
      print(f"  dlfunc bfloat16 compute vs float32: {res['dlfunc bf16'] / base:.2f}x")


def _load(avg) -> str:
  return " ".join(f"{v:.2f}" for v in avg)


if __name__ == "__main__":
  main()
