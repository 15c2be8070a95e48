"""``fit``: the Python loop around ``train_step`` -- batches, progress bar, evaluation,
early stopping, checkpoints, resume, the training-curve PNG and data parallelism."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
import optax

from dlfunc.train._checkpoint import Checkpointer
from dlfunc.train._distributed import is_main_process
from dlfunc.train._sharding import data_parallel
from dlfunc.train._state import (
  LossFn,
  TrainState,
  batches,
  create_train_state,
  evaluate,
  num_examples,
  pair_of,
  shapes,
  take,
  train_step,
)


class TrainingDiverged(FloatingPointError):
  """The loss (or the parameters) became NaN or infinite; training stopped."""


@dataclasses.dataclass
class EarlyStopping:
  """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

  Args:
    patience: epochs without improvement before stopping.
    monitor: a history key; default ``val_loss`` with ``eval_data``, else ``loss``.
    min_delta: smallest change that counts as an improvement.
    mode: ``"min"`` or ``"max"``; default ``"max"`` for keys containing "accuracy".
    restore_best: return the state of the best epoch (kept in host memory), as
      Keras' ``restore_best_weights=True``.
  """

  patience: int = 5
  monitor: str | None = None
  min_delta: float = 0.0
  mode: str | None = None
  restore_best: bool = False


def _positive_int(name: str, value, flag: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
    raise ValueError(f"{name} must be a positive integer, got {value!r}; pass e.g. {flag}.")
  return int(value)


def _as_arrays(data, what: str) -> tuple[Any, np.ndarray]:
  """``(x, y)`` with ``x`` an array or a pytree of arrays (``(x, mask)``, a dict) of one row per example."""
  x, y = pair_of(data, what)
  n = num_examples(x, f"{what}: the inputs")
  if n != len(y):
    raise ValueError(f"{what}: x has {n} examples but y has {len(y)}; they must match.")
  if n == 0:
    raise ValueError(f"{what} is empty (0 examples); pass at least one batch of examples.")
  return x, y


def _check_model_and_optimizer(model, optimizer) -> None:
  if isinstance(model, type):
    raise TypeError(f"model is the class {model.__name__}, not a module; create one: {model.__name__}(...).")
  if not (hasattr(model, "init") and hasattr(model, "apply")):
    raise TypeError(f"model must be a Flax Linen module (with .init and .apply), got {type(model).__name__}.")
  if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    name = getattr(optimizer, "__name__", type(optimizer).__name__)
    hint = f"call it: optimizer={name}(1e-3)" if callable(optimizer) else "e.g. optimizer=dlfunc.optim.adam(1e-3)"
    raise TypeError(f"optimizer must be an optax GradientTransformation, got {name}; {hint}.")


def _check_labels(state: TrainState, x, y: np.ndarray, what: str) -> None:
  """For the default loss: integer labels inside the model's output range."""
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(
      f"{what}: the default loss (sparse softmax cross-entropy) needs integer class labels, got "
      f"{y.dtype}; for regression or autoencoders pass loss_fn=, e.g. dlfunc.losses.mse."
    )
  spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), x)
  out = jax.eval_shape(lambda v, xb: state.apply_fn(v, xb, train=False), state.variables, spec)
  if not isinstance(out, jax.ShapeDtypeStruct):
    return  # Several outputs: the loss decides what they mean.
  k = out.shape[-1]
  lo, hi = int(y.min()), int(y.max())
  if lo < 0 or hi >= k:
    raise ValueError(
      f"{what}: labels must lie in [0, {k - 1}] for a model with {k} outputs, got labels in "
      f"[{lo}, {hi}]; set the model's num_classes to {hi + 1} or fix the labels."
    )


def _all_finite(host_tree) -> bool:
  return all(
    np.all(np.isfinite(a))
    for a in jax.tree_util.tree_leaves(host_tree)
    if np.issubdtype(np.asarray(a).dtype, np.inexact)
  )


class _Monitor:
  """Early-stopping bookkeeping; its state is saved in checkpoints so resume is exact."""

  def __init__(self, cfg: EarlyStopping | None, has_eval: bool, saved: dict | None):
    self.cfg = cfg
    if cfg is None:
      return
    self.key = cfg.monitor or ("val_loss" if has_eval else "loss")
    mode = cfg.mode or ("max" if "accuracy" in self.key else "min")
    self.sign = 1.0 if mode == "min" else -1.0
    saved = saved or {}
    self.best = saved.get("best", math.inf)
    self.best_epoch = saved.get("best_epoch", 0)
    self.wait = saved.get("wait", 0)
    self.best_state = None

  def update(self, record: dict, state) -> bool:
    """Returns True when training should stop."""
    if self.cfg is None:
      return False
    if self.key not in record:
      raise ValueError(
        f"early stopping monitors {self.key!r}, which the history lacks; available: {', '.join(sorted(record))}."
      )
    value = self.sign * record[self.key]
    if value < self.best - self.cfg.min_delta:
      self.best, self.best_epoch, self.wait = value, record["epoch"], 0
      if self.cfg.restore_best:
        self.best_state = jax.device_get(state)
    else:
      self.wait += 1
    return self.wait >= self.cfg.patience

  def saved(self) -> dict | None:
    if self.cfg is None:
      return None
    return {"best": float(self.best), "best_epoch": int(self.best_epoch), "wait": int(self.wait)}


# ---------------------------------------------------------------------------- the pieces of fit
# Read as Flax's examples/mnist/train.py: train_step (in _state.py) -> train_epoch -> fit; the
# argument checks, the resume policy and the end-of-epoch bookkeeping are small functions of their own.


@dataclasses.dataclass
class _Run:
  """The checked arguments of one ``fit`` call."""

  x: Any  # An array or a pytree of arrays with a common leading axis.
  y: np.ndarray
  eval_data: tuple[Any, np.ndarray] | None
  optimizer: optax.GradientTransformation
  epochs: int
  batch_size: int
  early_stopping: EarlyStopping | None


def check_arguments(
  data,
  *,
  eval_data,
  optimizer,
  epochs,
  batch_size,
  workdir,
  resume,
  early_stopping,
  model=None,
  eval_batch_size: int = 256,
) -> _Run:
  """Validates ``fit``'s arguments at the boundary; each error is one line saying what to change."""
  if model is not None:
    _check_model_and_optimizer(model, optimizer)
  epochs = _positive_int("epochs", epochs, "epochs=10 (--epochs 10)")
  batch_size = _positive_int("batch_size", batch_size, "batch_size=32 (--batch-size 32)")
  _positive_int("eval_batch_size", eval_batch_size, "eval_batch_size=256")
  x, y = _as_arrays(data, "training data")
  n = num_examples(x)
  if batch_size > n:
    raise ValueError(
      f"batch_size {batch_size} is larger than the {n} training examples; use a batch size of at most {n}."
    )
  if eval_data is not None:
    ex, ey = _as_arrays(eval_data, "eval_data")
    if jax.tree.structure(ex) != jax.tree.structure(x) or shapes(ex) != shapes(x):
      raise ValueError(
        f"eval_data inputs have shape {shapes(ex)} per example, training data {shapes(x)}; they must match."
      )
    eval_data = (ex, ey)
  if resume and workdir is None:
    raise ValueError("resume=True needs the workdir of the run to continue (--workdir DIR).")
  if isinstance(early_stopping, (int, np.integer)) and not isinstance(early_stopping, bool):
    early_stopping = EarlyStopping(patience=_positive_int("early_stopping patience", early_stopping, "5"))
  elif early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
    raise TypeError(f"early_stopping must be an EarlyStopping or an int patience, got {early_stopping!r}.")
  if optimizer is None:
    from dlfunc import optim

    optimizer = optim.adam(1e-3)
  return _Run(x, y, eval_data, optimizer, epochs, batch_size, early_stopping)


def init_state(model, run: _Run, *, seed: int, loss_fn: LossFn | None, dp, variables=None) -> TrainState:
  """The step-0 state of ``model`` (labels checked against its outputs for the default loss), placed for ``dp``.

  With ``variables`` (``{"params": ..., "batch_stats": ...}``) it starts from them instead of ``model.init``.
  """
  state = create_train_state(
    model,
    run.optimizer,
    take(run.x, slice(0, run.batch_size)),
    jax.random.PRNGKey(seed),
    loss_fn=loss_fn,
    variables=variables,
  )
  if loss_fn is None:
    _check_labels(state, run.x, run.y, "training data")
    if run.eval_data is not None:
      _check_labels(state, *run.eval_data, "eval_data")
  if dp is not None:
    state = dp.replicate(state)  # Across hosts: every process holds the same copy.
  return state


def resume_or_start(ckpt: Checkpointer | None, state: TrainState, *, resume: bool, log) -> tuple[TrainState, dict]:
  """The resume policy: ``(state, saved)`` to start from, ``saved`` holding ``history``, ``epoch``, ``early_stopping``.

  Without a workdir, or with ``resume`` and no valid checkpoint, the run starts at
  epoch 0. A workdir that holds checkpoints without ``resume`` is an error, so
  no run is overwritten by accident.
  """
  fresh = {"history": [], "epoch": 0, "early_stopping": None}
  if ckpt is None:
    return state, fresh
  if not resume:
    if ckpt.epochs():
      raise ValueError(
        f"{ckpt.directory} already holds checkpoints (epochs {ckpt.epochs()}); pass resume=True "
        "(--resume) to continue that run, or choose a new workdir."
      )
    return state, fresh
  restored = ckpt.restore_latest(state, log=log)
  if restored is None:
    log(f"dlfunc: no valid checkpoint in {ckpt.directory}; starting from epoch 0.")
    return state, fresh
  state, meta = restored
  saved = {
    "history": list(meta.get("history", [])),
    "epoch": int(meta["epoch"]),
    "early_stopping": meta.get("early_stopping"),
  }
  log(f"dlfunc: resuming from the checkpoint of epoch {saved['epoch']} in {ckpt.directory}.")
  return state, saved


def train_epoch(
  state: TrainState, x, y, *, batch_size: int, seed: int, epoch: int, dp=None, bar=None, step_fn=None
) -> tuple[TrainState, list[dict]]:
  """One pass of ``train_step`` over the epoch's batches; returns ``(state, per-step metrics on the host)``.

  The batches are ``dlfunc.data.batches(x, y, batch_size, seed=seed, epoch=epoch)``
  (a pure function of its arguments, so a resumed run sees the same ones; ``x``
  may be a pytree of arrays); with ``dp`` they are split over the devices.
  ``bar``, a tqdm bar, advances one per step. ``step_fn`` replaces :func:`train_step`.
  """
  step_fn = step_fn or train_step
  t0 = last_draw = time.perf_counter()
  metrics = []
  for i, batch in enumerate(batches(x, y, batch_size, seed=seed, epoch=epoch)):
    if dp is not None:
      batch = dp.put_batch(batch)  # Across hosts: each process feeds only its rows.
    state, m = step_fn(state, batch)
    metrics.append(m)
    if bar is None:
      continue
    bar.update(1)
    now = time.perf_counter()
    if not bar.disable and now - last_draw > 0.5:
      last_draw = now
      shown = {k: f"{float(v):.4f}" for k, v in m.items()}
      shown["ex/s"] = f"{(i + 1) * batch_size / (now - t0):.0f}"
      bar.set_postfix(shown, refresh=False)
  return state, jax.device_get(metrics)


def check_finite(host_metrics: list[dict], host_state, *, epoch: int, steps_per_epoch: int, ckpt) -> None:
  """Raises :class:`TrainingDiverged` when an epoch's loss or its parameters are NaN/inf, naming the step.

  Parameters are checked only when ``host_state`` is given (a checkpoint is due and
  copies them anyway); otherwise NaN parameters show up as the next NaN loss.
  """
  if not isinstance(host_metrics[0], Mapping) or "loss" not in host_metrics[0]:
    got = sorted(host_metrics[0]) if isinstance(host_metrics[0], Mapping) else type(host_metrics[0]).__name__
    raise ValueError(
      f"the train step's metrics must be a dict with a 'loss' entry, got {got}; return "
      "(state, {'loss': loss, ...}) from your train_step."
    )
  losses = np.asarray([h["loss"] for h in host_metrics])
  bad = np.flatnonzero(~np.isfinite(losses))
  if not bad.size and (host_state is None or _all_finite((host_state.params, host_state.batch_stats))):
    return
  first = epoch * steps_per_epoch + 1
  where = (
    f"the loss became NaN/inf at step {first + int(bad[0])} (epoch {epoch + 1})"
    if bad.size
    else f"the parameters became NaN/inf during epoch {epoch + 1} (steps {first}-{first + steps_per_epoch - 1})"
  )
  kept = (
    f"the last good checkpoint (epoch {epoch}) is kept in {ckpt.directory}"
    if ckpt is not None and epoch > 0
    else "no checkpoint was written"
  )
  raise TrainingDiverged(
    f"{where}; training stopped and {kept}; lower the learning rate or check the data for NaN/inf."
  )


def epoch_record(epoch: int, host_metrics: list[dict], seconds: float, examples: int, val: dict | None) -> dict:
  """One history entry: the epoch's mean training metrics (``loss``, ``accuracy``, a loss's auxiliary metrics),
  ``val_*`` from ``val``, and throughput."""
  keys = [k for k in ("loss", "accuracy") if k in host_metrics[0]] + sorted(set(host_metrics[0]) - {"loss", "accuracy"})
  record = {"epoch": epoch + 1} | {k: float(np.mean([h[k] for h in host_metrics])) for k in keys}
  record.update({"val_" + k: v for k, v in (val or {}).items()})
  record["seconds"] = seconds
  record["examples_per_second"] = examples / seconds
  return record


def _show_record(bar, record: dict) -> None:
  shown = {k: f"{v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds", "examples_per_second")}
  bar.set_postfix(shown | {"ex/s": f"{record['examples_per_second']:.0f}"}, refresh=True)


def _finish(ckpt: Checkpointer, workdir, history: list[dict]) -> None:
  """Writes the training curve next to the checkpoints and closes them (also after an error)."""
  if history and is_main_process():  # Multi-host: process 0 writes the files.
    from dlfunc.train._plot import plot_history

    plot_history(history, os.path.join(os.fspath(workdir), "training_curve.png"))
  ckpt.close()


def fit(
  model,
  data,
  *,
  eval_data=None,
  optimizer: optax.GradientTransformation | None = None,
  epochs: int = 10,
  batch_size: int = 32,
  seed: int = 0,
  workdir: str | os.PathLike | None = None,
  resume: bool = False,
  progress: bool = True,
  loss_fn: LossFn | None = None,
  early_stopping: EarlyStopping | int | None = None,
  eval_batch_size: int = 256,
  log: Callable[[str], Any] | None = None,
  variables: Mapping | None = None,
  train_step: Callable | None = None,
) -> tuple[TrainState, list[dict]]:
  """Trains ``model`` on ``data`` with mini-batch gradient descent.

  Each epoch visits the examples in the order ``dlfunc.data.epoch_permutation(n,
  seed=seed, epoch=e)`` in batches of exactly ``batch_size`` (the last
  ``n % batch_size`` are dropped -- a different set each epoch), so
  ``train_step`` compiles once. The run is a pure function of its arguments:
  the same seed gives the same parameters, and a resumed run ends where an
  uninterrupted one would.

  ``fit`` is a short driver over pieces usable on their own: :func:`check_arguments`,
  :func:`init_state`, :func:`resume_or_start`, :func:`train_epoch` (the loop over
  ``train_step``), :func:`check_finite` and :func:`epoch_record`.

  Args:
    model: a Flax Linen module called as ``apply(variables, x, train=...)``
      (with or without ``batch_stats`` and dropout).
    data: ``(x, y)`` or a :class:`dlfunc.data.Split`. ``x`` is an array or any
      pytree of arrays with a common leading axis -- ``(tokens, mask)``,
      ``{"ids": ..., "mask": ...}`` -- passed as is to ``model.apply``.
    eval_data: optional ``(x, y)`` evaluated after every epoch (``val_*`` keys).
    optimizer: an optax ``GradientTransformation``; default ``dlfunc.optim.adam(1e-3)``.
    epochs, batch_size: positive integers.
    seed: seeds initialisation, shuffling and dropout.
    workdir: if given, an Orbax checkpoint per epoch in ``workdir/checkpoints``
      and ``workdir/training_curve.png``.
    resume: continue from the newest valid checkpoint in ``workdir``.
    progress: draw a tqdm bar (stderr) with loss, accuracy and examples/s.
    loss_fn: ``loss_fn(outputs, y) -> scalar`` (batch mean); default sparse
      softmax cross-entropy. Accuracy is reported when ``y`` holds integer labels
      and the outputs have one more axis. It may take ``params`` (a keyword
      argument of that name, for a penalty) and return ``(loss, {"name": value})``:
      the auxiliary metrics are averaged into the history (see :func:`train_step`).
    early_stopping: an :class:`EarlyStopping`, or an int patience on ``val_loss``
      (``loss`` without ``eval_data``).
    eval_batch_size: batch size of the per-epoch evaluation.
    log: ``log(message)`` for notices (default: print to stderr).
    variables: start from these (``{"params": ..., "batch_stats": ...}``: a
      pretrained or earlier model's) instead of initialising; checked leaf by
      leaf against the model's and copied. Freeze parts of them with
      ``dlfunc.optim.freeze``.
    train_step: your own ``train_step(state, batch) -> (state, metrics)`` in
      place of :func:`dlfunc.train.train_step`, run by the same loop (batches,
      progress bar, evaluation, checkpoints, sharding); ``batch`` is ``(x, y)``,
      ``metrics`` a dict with ``"loss"``. It is jit-compiled unless it already is
      (jit it yourself with ``donate_argnums=0`` to reuse the state's memory).
      Build it from ``state.apply_fn``, ``state.variables`` and
      ``state.apply_gradients(grads=...)``.

  Returns:
    ``(state, history)``: the final :class:`TrainState` and one dict per epoch
    (``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``,
    ``examples_per_second``).

  Raises:
    ValueError: bad arguments (one line saying what to change).
    TrainingDiverged: the loss became NaN/inf; says at which step. The last good
      checkpoint in ``workdir`` is kept.

  Example:
    >>> from dlfunc import data, models
    >>> state, history = fit(models.MLP(), data.load("digits"), epochs=1, progress=False)
    >>> sorted(history[0])[:3]
    ['accuracy', 'epoch', 'examples_per_second']
  """
  log = log or (lambda m: print(m, file=sys.stderr))
  run = check_arguments(
    data,
    eval_data=eval_data,
    optimizer=optimizer,
    epochs=epochs,
    batch_size=batch_size,
    workdir=workdir,
    resume=resume,
    early_stopping=early_stopping,
    model=model,
    eval_batch_size=eval_batch_size,
  )
  step_fn = train_step if train_step is None or hasattr(train_step, "lower") else jax.jit(train_step)
  dp = data_parallel(run.batch_size)
  state = init_state(model, run, seed=seed, loss_fn=loss_fn, dp=dp, variables=variables)
  from dlfunc.data import num_batches
  from tqdm.auto import tqdm

  steps_per_epoch = num_batches(num_examples(run.x), run.batch_size)
  history: list[dict] = []
  with contextlib.ExitStack() as cleanup:
    ckpt = Checkpointer(workdir) if workdir is not None else None
    if ckpt is not None:
      cleanup.callback(_finish, ckpt, workdir, history)  # Also after an error: the curve so far, closed files.
    state, saved = resume_or_start(ckpt, state, resume=resume, log=log)
    history.extend(saved["history"])
    monitor = _Monitor(run.early_stopping, run.eval_data is not None, saved["early_stopping"])
    bar = cleanup.enter_context(
      tqdm(
        total=run.epochs * steps_per_epoch,
        initial=saved["epoch"] * steps_per_epoch,
        disable=not progress or not is_main_process(),  # Multi-host: one bar, process 0's.
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.25,
        leave=True,
      )
    )
    for epoch in range(saved["epoch"], run.epochs):
      bar.set_description(f"epoch {epoch + 1}/{run.epochs}")
      t0 = time.perf_counter()
      state, host = train_epoch(
        state, run.x, run.y, batch_size=run.batch_size, seed=seed, epoch=epoch, dp=dp, bar=bar, step_fn=step_fn
      )
      host_state = jax.device_get(state) if ckpt is not None else None
      check_finite(host, host_state, epoch=epoch, steps_per_epoch=steps_per_epoch, ckpt=ckpt)
      seconds = time.perf_counter() - t0
      val = (
        None
        if run.eval_data is None
        else evaluate(state, run.eval_data, batch_size=eval_batch_size, sharding=dp.batch if dp else None)
      )
      history.append(epoch_record(epoch, host, seconds, steps_per_epoch * run.batch_size, val))
      _show_record(bar, history[-1])
      stop = monitor.update(history[-1], state)
      if ckpt is not None:  # Across hosts, Orbax saves the global arrays collectively.
        ckpt.save(
          epoch + 1,
          state if dp is not None and dp.multi_process else host_state,
          {"history": history, "early_stopping": monitor.saved()},
        )
      if stop and monitor.cfg is not None:  # stop is True only with early stopping configured
        log(
          f"dlfunc: early stopping after epoch {epoch + 1}: {monitor.key} has not improved for "
          f"{monitor.cfg.patience} epochs (best at epoch {monitor.best_epoch})."
        )
        break
  if monitor.cfg is not None and monitor.cfg.restore_best and monitor.best_state is not None:
    state = jax.device_put(monitor.best_state, dp.replicated if dp else None)
  return state, history
