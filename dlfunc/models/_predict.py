"""Compiled inference: ``Predictor(model, variables)(x) == model.apply(variables, x, train=False)``.

On the CPU, XLA's best compilation depends on the network: by default it hands
convolutions and matmuls to YNNPACK "fusions" that can span several layers.
That suits small layers (the seed CNN's training step runs ~1.3x faster with
them) but not ResNet-50 (batch 8, 224x224, 2 cores), whose forward pass runs
~1.5x faster with YNNPACK off, on XLA's own kernels. :class:`Predictor` does what
``torch.backends.cudnn.benchmark`` does for cuDNN: the first call for each input
shape compiles the forward pass both ways, times each on that input, and keeps
the faster program. Both compute the same function (they differ only in
summation order, ~1e-6 relative). On other backends it compiles once with XLA's
defaults.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

# XLA CPU compiler options tried by the autotuner: name -> options for ``Compiled.compile``.
CPU_CANDIDATES: dict[str, dict[str, Any]] = {
  "xla-default": {},
  "ynnpack-off": {"xla_cpu_experimental_ynn_fusion_type": ""},
}


def _signature(args) -> tuple:
  return tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree_util.tree_leaves(args))


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
  jax.block_until_ready(fn())  # the first call pays for allocation and caches
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return best


class Predictor:
  """``model.apply(variables, *inputs, train=False, **kwargs)``, compiled once per input shape.

  Args:
    model: a Flax Linen module taking ``train=`` (every ``dlfunc.models`` model does).
    variables: its variables (``{"params": ..., "batch_stats": ...}``), passed to
      the compiled program as an argument (never baked in as constants).
    autotune: on the CPU, time XLA's default compilation against the one with
      YNNPACK fusions off on the first call of each input shape, and keep the
      faster (default: ``True`` on the CPU, ignored elsewhere). ``False``: XLA's
      defaults, one compilation.
    repeats: timed calls per candidate when autotuning (best of them counts).
    dtype: the compute dtype, e.g. ``jnp.bfloat16``: runs ``model.clone(dtype=dtype)``
      (every ``dlfunc.models`` model takes ``dtype``) on the same float32 variables.
    **kwargs: extra keyword arguments for ``model.apply`` (static).

  Each input may be an array or any pytree of arrays (``(x, mask)``, a dict),
  handed to ``model.apply`` as is. ``choices`` maps each input signature seen
  to the candidate kept, so a run
  can report what it used. Example::

      model, variables = dlfunc.pretrained.load_torchvision("resnet50", "resnet50.pth")
      predict = Predictor(model, variables)
      logits = predict(images)            # (batch, 224, 224, 3) NHWC float32
  """

  def __init__(self, model, variables, *, autotune: bool | None = None, repeats: int = 2, dtype=None, **kwargs):
    if dtype is not None:
      model = model.clone(dtype=dtype)
    self.model = model
    self.variables = variables
    self.autotune = autotune
    self.repeats = int(repeats)
    self.choices: dict[tuple, str] = {}
    self._compiled: dict[tuple, Any] = {}
    self._fn = jax.jit(lambda v, *xs: model.apply(v, *xs, train=False, **kwargs))

  def __call__(self, *inputs):
    inputs = jax.tree_util.tree_map(jnp.asarray, inputs)  # Each input an array or a pytree of them, as is.
    sig = _signature(inputs)
    compiled = self._compiled.get(sig)
    if compiled is None:
      compiled = self._compiled[sig] = self._compile(sig, inputs)
    return compiled(self.variables, *inputs)

  def _compile(self, sig, inputs):
    lowered = self._fn.lower(self.variables, *inputs)
    tune = self.autotune if self.autotune is not None else True
    if not tune or jax.default_backend() != "cpu":
      self.choices[sig] = "xla-default"
      return lowered.compile()
    timed = []
    for name, options in CPU_CANDIDATES.items():
      if options:
        try:
          compiled = lowered.compile(compiler_options=options)
        except Exception:  # noqa: BLE001, S112 -- an option this jaxlib does not know: that candidate is skipped
          continue
      else:
        compiled = lowered.compile()
      timed.append((_best_time(lambda c=compiled: c(self.variables, *inputs), self.repeats), name, compiled))
    _, name, compiled = min(timed, key=lambda t: t[0])
    self.choices[sig] = name
    return compiled
