"""Experiments by name: the model registry, ``train_and_evaluate`` and ``evaluate_workdir``.

As in the Flax examples, the library function ``train_and_evaluate(config, workdir)``
does the work and the CLI only parses flags. The built-in models (``mlp``,
``cnn``, ``lenet``, ``rnn``, ``lstm``, ``gru``, ``cnn1d``, the autoencoders and
the VAE) are registered here, with their defaults (``_specs.py``); optimizers
come from the one registry of :mod:`dlfunc.optim` (``OPTIMIZERS``). Other modules
extend the registries::

    from dlfunc.train import register_model
    register_model("deep-lstm", lambda num_classes=10: RNNClassifier("lstm", 256, num_classes),
                   dataset="digits-seq", epochs=20, lr=3e-3)

and ``dlfunc train --model deep-lstm`` works.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
import optax

from dlfunc.optim import OPTIMIZERS, get_optimizer, register_optimizer
from dlfunc.train._checkpoint import Checkpointer
from dlfunc.train._distributed import is_main_process
from dlfunc.train._fit import EarlyStopping, fit
from dlfunc.train._state import LossFn, create_train_state, evaluate

__all__ = [
  "MODELS",
  "OPTIMIZERS",
  "ModelSpec",
  "TrainConfig",
  "evaluate_workdir",
  "register_model",
  "register_optimizer",
  "train_and_evaluate",
  "write_figures",
]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A model the CLI can train by name, with the defaults that train it well.

  Attributes:
    factory: ``factory(num_classes=K) -> flax.linen.Module`` (may ignore ``num_classes``).
    dataset, optimizer, lr, epochs, batch_size, schedule: defaults for ``TrainConfig``.
    loss_fn: ``loss_fn(outputs, targets)``; ``None`` is sparse softmax cross-entropy.
    targets: ``"labels"`` (classifiers) or ``"inputs"`` (autoencoders reconstruct x).
    description: one line for ``dlfunc train --help``.
    figures: ``figures(model, variables, test_split, out_dir) -> [paths]``, the
      model's own figures (:func:`write_figures`), or ``None``.
  """

  factory: Callable[..., Any]
  dataset: str = "digits"
  optimizer: str = "adam"
  lr: float = 1e-3
  epochs: int = 10
  batch_size: int = 32
  schedule: str = "cosine"
  loss_fn: LossFn | None = None
  targets: str = "labels"
  description: str = ""
  figures: Callable[..., list[str]] | None = None


#: Registry: model name -> :class:`ModelSpec`.
MODELS: dict[str, ModelSpec] = {}
SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "bfloat16", "float16")


def register_model(name: str, factory: Callable[..., Any], *, overwrite: bool = False, **defaults) -> ModelSpec:
  """Adds a model under ``name`` for ``train_and_evaluate`` and ``dlfunc train --model``."""
  if name in MODELS and not overwrite:
    raise ValueError(f"model {name!r} is already registered; pass overwrite=True to replace it.")
  spec = ModelSpec(factory=factory, **defaults)
  if spec.targets not in ("labels", "inputs"):
    raise ValueError(f"targets must be 'labels' or 'inputs', got {spec.targets!r}.")
  MODELS[name] = spec
  return spec


def _lookup(registry: dict, kind: str, name: str):
  if name not in registry:
    raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}.")
  return registry[name]


@dataclasses.dataclass
class TrainConfig:
  """What ``dlfunc train`` runs; ``None`` fields take the model's defaults (:class:`ModelSpec`)."""

  model: str = "mlp"
  dataset: str | None = None
  optimizer: str | None = None
  lr: float | None = None
  epochs: int | None = None
  batch_size: int | None = None
  schedule: str | None = None
  seed: int = 0
  data_dir: str | None = None
  early_stopping: int | None = None
  progress: bool = True
  dtype: str = "float32"  # Compute dtype (parameters stay float32): float32, bfloat16 or float16.

  def resolved(self) -> "_ResolvedConfig":
    """A copy with every default filled in and every value checked (one-line errors)."""
    spec = _lookup(MODELS, "model", self.model)
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    for f in ("dataset", "optimizer", "lr", "epochs", "batch_size", "schedule"):
      if values[f] is None:
        values[f] = getattr(spec, f)
    c = _ResolvedConfig(**values)
    from dlfunc import data

    if c.dataset not in data.DATASETS and not c.dataset.startswith("tfds:"):
      _lookup(data.DATASETS, "data set", c.dataset)
    _lookup(OPTIMIZERS, "optimizer", c.optimizer)
    if c.schedule not in SCHEDULES:
      raise ValueError(f"unknown schedule {c.schedule!r}; choose one of: {', '.join(SCHEDULES)}.")
    if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
      raise ValueError(f"the learning rate must be a positive number, got {c.lr!r}; pass e.g. --lr 0.001.")
    for f, flag in (("epochs", "--epochs 10"), ("batch_size", "--batch-size 32")):
      v = getattr(c, f)
      if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{f} must be a positive integer, got {v!r}; pass e.g. {flag}.")
    if c.dtype not in DTYPES:
      raise ValueError(
        f"unknown compute dtype {c.dtype!r}; choose one of: {', '.join(DTYPES)} (parameters stay float32 either way)."
      )
    if c.early_stopping is not None and c.early_stopping <= 0:
      raise ValueError(f"early-stopping patience must be a positive integer, got {c.early_stopping!r}.")
    return c


@dataclasses.dataclass
class _ResolvedConfig(TrainConfig):
  """A :class:`TrainConfig` after :meth:`TrainConfig.resolved`: no ``None`` left among the defaults."""

  dataset: str = "digits"
  optimizer: str = "adam"
  lr: float = 1e-3
  epochs: int = 10
  batch_size: int = 32
  schedule: str = "cosine"


def _optimizer(c: _ResolvedConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  lr: Any = float(c.lr)
  if c.schedule == "cosine":
    lr = optax.cosine_decay_schedule(float(c.lr), max(1, c.epochs * steps_per_epoch))
  return get_optimizer(c.optimizer, lr)


def _targets(spec: ModelSpec, split) -> tuple[np.ndarray, np.ndarray]:
  x, y = split
  return (x, x) if spec.targets == "inputs" else (x, y)


def _write_json(path: str, obj: dict) -> None:
  if not is_main_process():  # Multi-host: process 0 writes the files.
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def _build_model(spec: ModelSpec, c: TrainConfig, num_classes: int):
  """The spec's model; with a 16-bit ``c.dtype``, computing in it over float32 parameters (mixed precision)."""
  model = spec.factory(num_classes=num_classes)
  if c.dtype != "float32":
    model = model.clone(dtype=jnp.dtype(c.dtype))
  return model


def train_and_evaluate(
  config: TrainConfig, workdir: str | os.PathLike | None = None, *, resume: bool = False
) -> tuple[Any, dict]:
  """Trains ``config.model`` on the train split of ``config.dataset``, evaluates on test.

  Args:
    config: a :class:`TrainConfig`; ``None`` fields take the model's defaults.
    workdir: if given: ``config.json``, Orbax checkpoints, ``training_curve.png``
      and ``result.json`` go there.
    resume: continue the run in ``workdir`` from its last completed epoch.

  Returns:
    ``(state, summary)``; ``summary`` holds ``model``, ``dataset``, ``epochs``
    (completed), ``test_accuracy`` (classifiers), ``test_loss``, ``wall_seconds``
    and the resolved hyperparameters.
  """
  t0 = time.perf_counter()
  c = config.resolved()
  spec = MODELS[c.model]
  from dlfunc import data

  train, test = data.load(c.dataset, "train", c.data_dir), data.load(c.dataset, "test", c.data_dir)
  train_xy, test_xy = _targets(spec, train), _targets(spec, test)
  if c.batch_size > len(train_xy[0]):
    raise ValueError(
      f"batch size {c.batch_size} is larger than the {len(train_xy[0])} training examples of "
      f"{c.dataset}; pass --batch-size {min(32, len(train_xy[0]))}."
    )
  steps_per_epoch = len(train_xy[0]) // c.batch_size
  saved = {k: v for k, v in dataclasses.asdict(c).items() if k != "progress"}
  if workdir is not None:
    workdir = os.fspath(workdir)
    if is_main_process():  # Multi-host: Orbax makes the directory on process 0 and waits for it.
      os.makedirs(workdir, exist_ok=True)
    cfg_path = os.path.join(workdir, "config.json")
    if resume and os.path.exists(cfg_path):
      with open(cfg_path) as f:
        old = json.load(f)
      changed = [
        k
        for k in ("model", "dataset", "optimizer", "lr", "batch_size", "schedule", "seed", "epochs", "dtype")
        if old.get(k, "float32" if k == "dtype" else None) != saved[k]
      ]
      if changed:
        raise ValueError(
          f"--resume with different settings than the run in {workdir}: "
          + ", ".join(f"{k} {old.get(k)!r} -> {saved[k]!r}" for k in changed)
          + "; use the same flags or a new --workdir."
        )
    _write_json(cfg_path, saved)
  model = _build_model(spec, c, train.num_classes)
  early = EarlyStopping(patience=c.early_stopping) if c.early_stopping else None
  state, history = fit(
    model,
    train_xy,
    eval_data=test_xy,
    optimizer=_optimizer(c, steps_per_epoch),
    epochs=c.epochs,
    batch_size=c.batch_size,
    seed=c.seed,
    workdir=workdir,
    resume=resume,
    progress=c.progress,
    loss_fn=spec.loss_fn,
    early_stopping=early,
  )
  metrics = evaluate(state, test_xy)
  summary = {
    "model": c.model,
    "dataset": c.dataset,
    "epochs": len(history),
    "optimizer": c.optimizer,
    "lr": c.lr,
    "batch_size": c.batch_size,
    "seed": c.seed,
    "dtype": c.dtype,
  }
  if "accuracy" in metrics:
    summary["test_accuracy"] = metrics["accuracy"]
  summary["test_loss"] = metrics["loss"]
  if history and "accuracy" in history[-1]:
    summary["train_accuracy"] = history[-1]["accuracy"]
  summary["wall_seconds"] = time.perf_counter() - t0
  if workdir is not None:
    _write_json(os.path.join(workdir, "result.json"), dict(summary, history=history))
  return state, summary


def evaluate_workdir(workdir: str | os.PathLike, *, split: str = "test", data_dir: str | None = None) -> dict:
  """Evaluates the newest valid checkpoint of the run in ``workdir`` on ``split``."""
  t0 = time.perf_counter()
  workdir = os.fspath(workdir)
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(
      f"{workdir} holds no dlfunc run (no config.json); train first with `dlfunc train --workdir {workdir}`."
    )
  with open(cfg_path) as f:
    saved = json.load(f)
  c = TrainConfig(**{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}})
  if data_dir is not None:
    c.data_dir = data_dir
  c = c.resolved()
  spec = MODELS[c.model]
  from dlfunc import data
  import jax

  split_data = data.load(c.dataset, split, c.data_dir)
  x, y = _targets(spec, split_data)
  steps_per_epoch = len(data.load(c.dataset, "train", c.data_dir)) // c.batch_size
  model = _build_model(spec, c, split_data.num_classes)
  target = create_train_state(
    model, _optimizer(c, steps_per_epoch), x[: c.batch_size], jax.random.PRNGKey(c.seed), loss_fn=spec.loss_fn
  )
  ckpt = Checkpointer(workdir)
  try:
    restored = ckpt.restore_latest(target)
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"no valid checkpoint in {ckpt.directory}; train (or --resume) first.")
  state, meta = restored
  metrics = evaluate(state, (x, y))
  out = {"model": c.model, "dataset": c.dataset, "split": split, "epochs": int(meta["epoch"])}
  out.update({f"{split}_{k}": v for k, v in metrics.items()})
  out["wall_seconds"] = time.perf_counter() - t0
  return out


def write_figures(
  model: str, state, out_dir: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None
) -> list[str]:
  """Draws the figures of registered ``model`` (its ``ModelSpec.figures``) into ``out_dir``; returns their paths.

  For the autoencoders: ``reconstructions.png`` (test images above their
  reconstructions) and ``latent.png`` (the test codes in 2-D, by class). A model
  without figures returns ``[]``. ``state`` is the trained state of
  :func:`train_and_evaluate`; ``dataset`` defaults to the model's.
  """
  spec = _lookup(MODELS, "model", model)
  if spec.figures is None:
    return []
  from dlfunc import data

  test = data.load(dataset or spec.dataset, "test", data_dir)
  return spec.figures(spec.factory(num_classes=test.num_classes), state.variables, test, os.fspath(out_dir))


def _register_builtins() -> None:
  from dlfunc.train._specs import builtin_models

  for name, spec in builtin_models().items():
    register_model(name, **spec)


_register_builtins()
