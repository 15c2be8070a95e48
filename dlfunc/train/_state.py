"""The train state and the jit-compiled train / eval steps.

One pytree carries everything that changes during training (step, params,
optimizer state, batch-norm statistics, the run's PRNG key); the model's
``apply``, the optimizer and the loss ride along as static fields, so
``train_step(state, batch)`` is one pure, jit-compiled function.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as linen
import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlfunc import losses

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def default_loss(outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Sparse softmax cross-entropy on logits: the default for classification."""
  return losses.sparse_softmax_cross_entropy(outputs, labels)


@struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree.

  Attributes:
    step: int32 scalar, optimizer steps taken.
    params: the model's ``params`` collection.
    opt_state: the optimizer's state pytree.
    batch_stats: the model's ``batch_stats`` collection (``{}`` when it has none).
    rng: uint32[2] key of the run; step ``s`` draws dropout from ``fold_in(rng, s)``,
      so a resumed run draws exactly the masks an uninterrupted one would.
    apply_fn, tx, loss_fn: static -- the model's ``apply``, the optimizer, the loss.
    input_shape: static -- shape of one example the model was initialised for.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  batch_stats: Any
  rng: jax.Array
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)
  loss_fn: LossFn = struct.field(pytree_node=False, default=default_loss)
  input_shape: tuple = struct.field(pytree_node=False, default=())

  @property
  def variables(self) -> dict:
    """``{"params": ..., "batch_stats": ...}`` for ``model.apply``."""
    v = {"params": self.params}
    if self.batch_stats:
      v["batch_stats"] = self.batch_stats
    return v

  @classmethod
  def create(cls, *, apply_fn: Callable, params, tx: optax.GradientTransformation, batch_stats=None, rng=None,
             **kwargs) -> "TrainState":
    """A state at step 0, as ``flax.training.train_state.TrainState.create``.

    Args:
      apply_fn: the model's ``apply``.
      params: the ``params`` collection (``model.init(...)["params"]``).
      tx: the optimizer; its state is ``tx.init(params)``.
      batch_stats: the ``batch_stats`` collection, if the model has one.
      rng: the run's key for dropout (default ``jax.random.PRNGKey(0)``).
      **kwargs: other fields (``loss_fn``, ``input_shape``).

    Example:
      >>> import jax, numpy as np
      >>> from dlfunc import models, optim
      >>> model = models.MLP(hidden=(4,))
      >>> params = model.init(jax.random.key(0), np.zeros((1, 3)))["params"]
      >>> state = TrainState.create(apply_fn=model.apply, params=params, tx=optim.sgd(0.1))
      >>> grads = jax.tree.map(np.ones_like, params)
      >>> state = state.apply_gradients(grads=grads)
      >>> int(state.step), state.params["Dense_0"]["bias"]
      (1, Array([-0.1, -0.1, -0.1, -0.1], dtype=float32))
    """
    if rng is None:
      rng = jax.random.PRNGKey(0)
    elif jax.dtypes.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               batch_stats={} if batch_stats is None else batch_stats, rng=jnp.asarray(rng, jnp.uint32),
               apply_fn=apply_fn, tx=tx, **kwargs)

  def apply_gradients(self, *, grads, **kwargs) -> "TrainState":
    """One optimizer step with ``grads``: ``step + 1``, new ``params`` and ``opt_state``, as flax.training's.

    ``kwargs`` replace other fields at the same time (``batch_stats=`` after a
    training-mode forward pass).
    """
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)


def _one_line(e: BaseException) -> str:
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model: linen.Module, key, x):
  # One compiled init per (model, input shape): equal Linen modules hash equal,
  # so re-creating a state for the same model reuses the compiled program.
  return model.init(key, x, train=False)


def create_train_state(model: linen.Module, optimizer: optax.GradientTransformation, sample_x, key,
                       *, loss_fn: LossFn | None = None) -> TrainState:
  """Initialises ``model`` on ``sample_x`` and ``optimizer`` on its params.

  Args:
    model: any Flax Linen module called as ``model.apply(variables, x, train=...)``;
      a ``batch_stats`` collection and a ``dropout`` rng are used when present.
    optimizer: an ``optax.GradientTransformation`` (e.g. ``dlfunc.optim.adam(1e-3)``).
    sample_x: a batch of inputs (only its shape and dtype matter).
    key: a ``jax.random`` key (typed or raw uint32[2]); split into init and run keys.
    loss_fn: ``loss_fn(outputs, targets) -> scalar`` averaged over the batch
      (default: sparse softmax cross-entropy on integer labels).

  Returns:
    A :class:`TrainState` at step 0.
  """
  if jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  init_key, run_key = jax.random.split(jnp.asarray(key, jnp.uint32))
  sample_x = jnp.asarray(sample_x)
  try:
    try:
      hash(model)
      variables = _init_variables(model, init_key, sample_x)
    except TypeError:  # An unhashable module (e.g. holding a dict): compile an uncached init.
      variables = jax.jit(functools.partial(model.init, train=False))(init_key, sample_x)
  except (ValueError, TypeError) as e:
    raise ValueError(f"{type(model).__name__} cannot take inputs of shape {tuple(sample_x.shape)}: "
                     f"{_one_line(e)}") from None
  variables = dict(variables)
  params = variables.pop("params", {})
  batch_stats = variables.pop("batch_stats", {})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                    batch_stats=batch_stats, rng=run_key, apply_fn=model.apply, tx=optimizer,
                    loss_fn=loss_fn or default_loss, input_shape=tuple(sample_x.shape[1:]))


def _check_input(state: TrainState, x) -> None:
  """Runs at trace time (shapes are static), so it costs nothing per step."""
  if state.input_shape and tuple(x.shape[1:]) != tuple(state.input_shape):
    raise ValueError(f"the model was initialised for inputs of shape (batch, {', '.join(map(str, state.input_shape))})"
                     f", got {tuple(x.shape)}; reshape the data or re-create the train state for this shape.")


def _is_classification(outputs, y) -> bool:
  return jnp.issubdtype(y.dtype, jnp.integer) and outputs.ndim == y.ndim + 1


def _forward(state: TrainState, params, x, *, train: bool):
  """Returns ``(outputs, new_batch_stats)``."""
  variables = {"params": params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  if not train:
    return state.apply_fn(variables, x, train=False), state.batch_stats
  rngs = {"dropout": jax.random.fold_in(state.rng, state.step)}
  if state.batch_stats:
    outputs, updates = state.apply_fn(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    return outputs, updates["batch_stats"]
  return state.apply_fn(variables, x, train=True, rngs=rngs), state.batch_stats


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
  """One optimizer step on ``batch = (x, y)``; jit-compiled, ``state``'s buffers donated.

  Returns ``(new_state, metrics)`` with ``metrics["loss"]`` (the loss before the
  update) and ``metrics["accuracy"]`` for classification (integer ``y`` and
  outputs with one more axis). The input ``state`` must not be used afterwards:
  its buffers are reused for the new one (``donate_argnums``).
  """
  x, y = batch
  _check_input(state, x)

  def loss_of(params):
    outputs, new_stats = _forward(state, params, x, train=True)
    return state.loss_fn(outputs, y), (outputs, new_stats)

  (loss, (outputs, new_stats)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
  metrics = {"loss": loss}
  if _is_classification(outputs, y):
    metrics["accuracy"] = jnp.mean(jnp.argmax(outputs, -1) == y)
  return state.apply_gradients(grads=grads, batch_stats=new_stats), metrics


@jax.jit
def eval_step(state: TrainState, batch) -> dict:
  """Sums over one padded batch ``(x, y, mask)``: ``loss_sum``, ``correct``, ``count``.

  The loss is computed per example (``loss_fn`` on slices of one), so padded
  examples (mask 0) drop out exactly, for any loss that averages over the batch.
  """
  x, y, mask = batch
  _check_input(state, x)
  outputs, _ = _forward(state, state.params, x, train=False)
  per_example = jax.vmap(lambda o, t: state.loss_fn(o[None], t[None]))(outputs, y)
  out = {"loss_sum": jnp.sum(per_example * mask), "count": jnp.sum(mask)}
  if _is_classification(outputs, y):
    out["correct"] = jnp.sum((jnp.argmax(outputs, -1) == y) * mask)
  return out


def evaluate(state: TrainState, data, *, batch_size: int = 256, sharding=None) -> dict:
  """Loss (and accuracy for classification) of ``state`` on all of ``data = (x, y)``.

  Batches are padded to ``batch_size`` and masked, so every call compiles once
  and no example is dropped.

  Returns:
    ``{"loss": float, "accuracy": float}`` (``accuracy`` only for classification).
  """
  from dlfunc.data import batches  # Local: keeps dlfunc.train importable on its own.
  x, y = data
  x, y = np.asarray(x), np.asarray(y)
  if batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
  batch_size = min(batch_size, len(x))
  if sharding is not None:
    n = sharding.num_devices
    batch_size = -(-batch_size // n) * n
  totals: dict[str, float] = {}
  for b in batches(x, y, batch_size, shuffle=False, drop_remainder=False):
    if sharding is not None:
      b = jax.device_put(b, sharding)
    for k, v in eval_step(state, b).items():
      totals[k] = totals.get(k, 0.0) + v
  totals = jax.device_get(totals)
  out = {"loss": float(totals["loss_sum"] / totals["count"])}
  if "correct" in totals:
    out["accuracy"] = float(totals["correct"] / totals["count"])
  return out
