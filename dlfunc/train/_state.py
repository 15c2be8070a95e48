"""The train state and the jit-compiled train / eval steps.

One pytree carries everything that changes during training (step, params,
optimizer state, batch-norm statistics, the run's PRNG key); the model's
``apply``, the optimizer and the loss ride along as static fields, so
``train_step(state, batch)`` is one pure, jit-compiled function.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, Mapping, cast

import flax.linen as linen
import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlfunc import losses

# ``loss_fn(outputs, y) -> loss``; it may also take ``params=`` and may return ``(loss, aux_metrics)`` (see _loss).
LossFn = Callable[..., Any]


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

  if TYPE_CHECKING:  # added by flax.struct.dataclass at runtime; declared here for type checkers

    def replace(self, **updates: Any) -> TrainState:
      """A copy with the given fields replaced (``state.replace(step=...)``), as any flax.struct dataclass."""
      ...

  @property
  def variables(self) -> dict:
    """``{"params": ..., "batch_stats": ...}`` for ``model.apply``."""
    v = {"params": self.params}
    if self.batch_stats:
      v["batch_stats"] = self.batch_stats
    return v

  @classmethod
  def create(
    cls, *, apply_fn: Callable, params, tx: optax.GradientTransformation, batch_stats=None, rng=None, **kwargs
  ) -> "TrainState":
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
    elif jnp.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      batch_stats={} if batch_stats is None else batch_stats,
      rng=jnp.asarray(rng, jnp.uint32),
      apply_fn=apply_fn,
      tx=tx,
      **kwargs,
    )

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


def num_examples(x, what: str = "inputs") -> int:
  """The common leading size of every leaf of ``x`` (an array, or a pytree such as ``(x, mask)`` or a dict)."""
  leaves = jax.tree_util.tree_flatten_with_path(x)[0]
  if not leaves:
    raise ValueError(f"{what} hold no arrays; pass an array or a tuple/dict of arrays with one row per example.")
  sizes = {jax.tree_util.keystr(path) or "x": (np.shape(a)[0] if np.ndim(a) else None) for path, a in leaves}
  if len(set(sizes.values())) != 1 or None in sizes.values():
    raise ValueError(f"{what}: every array needs the same leading (example) axis, got sizes {sizes}.")
  return cast(int, next(iter(sizes.values())))  # None was ruled out above


def take(x, index):
  """``x[index]`` for every leaf of the pytree ``x``."""
  return jax.tree.map(lambda a: a[index], x)


def shapes(x):
  """Per-example shapes of ``x``: ``(8, 8, 1)`` for an array, a tuple of such tuples for a pytree."""
  if isinstance(x, (np.ndarray, jax.Array)):
    return tuple(x.shape[1:])
  return tuple(tuple(a.shape[1:]) for a in jax.tree.leaves(x))


def describe(x) -> str:
  """The shapes of ``x`` in words: ``(32, 8, 8, 1)`` or ``{'ids': (32, 16), 'mask': (32, 16)}``."""
  if isinstance(x, (np.ndarray, jax.Array)):
    return str(tuple(x.shape))
  return str(jax.tree.map(lambda a: tuple(np.shape(a)), x))


def batches(x, y, batch_size: int, **kwargs):
  """:func:`dlfunc.data.batches` for inputs ``x`` that may be a pytree of arrays (same batches, same order)."""
  from dlfunc.data import batches as array_batches  # Local: keeps dlfunc.train importable on its own.

  if isinstance(x, np.ndarray):
    yield from array_batches(x, y, batch_size, **kwargs)
    return
  for index, *rest in array_batches(np.arange(num_examples(x)), y, batch_size, **kwargs):
    yield (take(x, index), *rest)


def _init_error(model, sample_x, e: BaseException) -> ValueError:
  name = type(model).__name__
  if "unexpected keyword argument 'train'" in str(e):
    return ValueError(
      f"{name}.__call__ has no train argument, which fit and train_step pass; define it as "
      "def __call__(self, x, train: bool = False) (and hand train on to dropout and batch norm)."
    )
  if "images are NHWC" in str(e):  # dlfunc.models' own check already says what to change.
    return ValueError(_one_line(e))
  return ValueError(f"{name} cannot take inputs of shape {describe(sample_x)}: {_one_line(e)}")


def _given_variables(model, init_key, sample_x, variables) -> dict:
  """``variables`` checked leaf by leaf against what ``model.init`` would make, copied (the state is donated)."""
  from dlfunc.train._checkpoint import first_difference, tree_signature

  if not isinstance(variables, Mapping) or "params" not in variables:
    got = f"keys {list(variables)}" if isinstance(variables, Mapping) else type(variables).__name__
    raise ValueError(f"variables must be a dict of collections with 'params' (as model.init returns), got {got}.")
  unknown = sorted(set(variables) - {"params", "batch_stats"})
  if unknown:
    raise ValueError(
      f"variables holds collections {unknown} that the train state cannot carry; pass only 'params' and 'batch_stats'."
    )
  try:
    wanted = jax.eval_shape(functools.partial(model.init, train=False), init_key, sample_x)
  except (ValueError, TypeError) as e:
    raise _init_error(model, sample_x, e) from None
  given = jax.tree.map(jnp.array, dict(variables))  # jnp.array copies: fit donates its state's buffers.
  wanted = {k: v for k, v in wanted.items() if k in ("params", "batch_stats")}
  difference = first_difference(tree_signature(given), tree_signature(wanted), names=("variables", "the model"))
  if difference:
    raise ValueError(
      f"variables do not fit {type(model).__name__}: {difference}; pass the variables of this "
      "model (same architecture and input shape)."
    )
  return given


def create_train_state(
  model: linen.Module,
  optimizer: optax.GradientTransformation,
  sample_x,
  key,
  *,
  loss_fn: LossFn | None = None,
  variables: Mapping | None = None,
) -> TrainState:
  """Initialises ``model`` on ``sample_x`` and ``optimizer`` on its params.

  Args:
    model: any Flax Linen module called as ``model.apply(variables, x, train=...)``;
      a ``batch_stats`` collection and a ``dropout`` rng are used when present.
    optimizer: an ``optax.GradientTransformation`` (e.g. ``dlfunc.optim.adam(1e-3)``).
    sample_x: a batch of inputs (only its shapes and dtypes matter): an array,
      or any pytree of arrays (``(x, mask)``, a dict) passed as is to ``model.apply``.
    key: a ``jax.random`` key (typed or raw uint32[2]); split into init and run keys.
    loss_fn: see :func:`train_step` (default: sparse softmax cross-entropy on integer labels).
    variables: start from these (``{"params": ..., "batch_stats": ...}``, e.g. a
      pretrained model's) instead of ``model.init``; checked leaf by leaf against
      the model's, and copied.

  Returns:
    A :class:`TrainState` at step 0.
  """
  if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  init_key, run_key = jax.random.split(jnp.asarray(key, jnp.uint32))
  sample_x = jax.tree.map(jnp.asarray, sample_x)
  if variables is not None:
    variables = _given_variables(model, init_key, sample_x, variables)
  else:
    try:
      try:
        hash(model)
        variables = _init_variables(model, init_key, sample_x)
      except TypeError:  # An unhashable module (e.g. holding a dict): compile an uncached init.
        variables = jax.jit(functools.partial(model.init, train=False))(init_key, sample_x)
    except (ValueError, TypeError) as e:
      raise _init_error(model, sample_x, e) from None
  variables = dict(cast(Mapping[str, Any], variables))
  params = variables.pop("params", {})
  batch_stats = variables.pop("batch_stats", {})
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer.init(params),
    batch_stats=batch_stats,
    rng=run_key,
    apply_fn=model.apply,
    tx=optimizer,
    loss_fn=loss_fn or default_loss,
    input_shape=shapes(sample_x),
  )


def _check_input(state: TrainState, x) -> None:
  """Runs at trace time (shapes are static), so it costs nothing per step."""
  if not state.input_shape or shapes(x) == tuple(state.input_shape):
    return
  if isinstance(x, (np.ndarray, jax.Array)) and all(isinstance(d, int) for d in state.input_shape):
    raise ValueError(
      f"the model was initialised for inputs of shape (batch, {', '.join(map(str, state.input_shape))})"
      f", got {tuple(x.shape)}; reshape the data or re-create the train state for this shape."
    )
  raise ValueError(
    f"the model was initialised for inputs with per-example shapes {state.input_shape}, got "
    f"{describe(x)}; reshape the data or re-create the train state for this shape."
  )


def _loss(state: TrainState, outputs, y, params) -> tuple[Any, dict]:
  """``(loss, aux_metrics)`` from ``state.loss_fn``, which may take ``params=`` and may return ``(loss, aux)``."""
  fn = state.loss_fn
  try:
    takes_params = "params" in inspect.signature(fn).parameters
  except (TypeError, ValueError):  # A builtin or C function: no signature to read.
    takes_params = False
  out = fn(outputs, y, params=params) if takes_params else fn(outputs, y)
  if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
    loss, aux = out
    clash = sorted(set(aux) & {"loss", "accuracy", "count"})
    if clash:
      raise ValueError(f"loss_fn's auxiliary metrics may not be named {clash}; rename them.")
    return loss, dict(aux)
  return out, {}


def _is_classification(outputs, y) -> bool:
  return isinstance(outputs, jax.Array) and jnp.issubdtype(y.dtype, jnp.integer) and outputs.ndim == y.ndim + 1


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

  ``x`` is whatever the model takes -- an array, or a pytree such as ``(x, mask)``
  or ``{"ids": ..., "mask": ...}`` -- and is passed as is to ``model.apply``.
  The loss is ``state.loss_fn(outputs, y)``, a batch mean. It may also take the
  parameters, as a keyword argument named ``params`` (for a penalty), and may
  return ``(loss, {"name": value, ...})``: the auxiliary metrics are returned
  with the loss (``fit`` averages them into its history)::

      def loss_fn(outputs, y, params):
        ce = dlfunc.losses.sparse_softmax_cross_entropy(outputs, y)
        l2 = sum(jnp.sum(w ** 2) for w in jax.tree.leaves(params))
        return ce + 1e-4 * l2, {"cross_entropy": ce, "l2": l2}

  Returns ``(new_state, metrics)`` with ``metrics["loss"]`` (the loss before the
  update), the auxiliary metrics, and ``metrics["accuracy"]`` for classification
  (integer ``y`` and outputs with one more axis). The input ``state`` must not
  be used afterwards: its buffers are reused for the new one (``donate_argnums``).
  """
  x, y = batch
  _check_input(state, x)

  def loss_of(params):
    outputs, new_stats = _forward(state, params, x, train=True)
    loss, aux = _loss(state, outputs, y, params)
    return loss, (outputs, new_stats, aux)

  (loss, (outputs, new_stats, aux)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
  metrics = {"loss": loss, **aux}
  if _is_classification(outputs, y):
    metrics["accuracy"] = jnp.mean(jnp.argmax(outputs, -1) == y)
  return state.apply_gradients(grads=grads, batch_stats=new_stats), metrics


@jax.jit
def eval_step(state: TrainState, batch) -> dict:
  """Sums over one padded batch ``(x, y, mask)``: ``loss_sum``, ``correct``, ``count`` (and ``<aux>_sum``).

  The loss is computed per example (``loss_fn`` on slices of one), so padded
  examples (mask 0) drop out exactly, for any loss that averages over the batch.
  """
  x, y, mask = batch
  _check_input(state, x)
  outputs, _ = _forward(state, state.params, x, train=False)
  one = lambda a: a[None]  # noqa: E731
  per_example, aux = jax.vmap(lambda o, t: _loss(state, jax.tree.map(one, o), t[None], state.params))(outputs, y)
  out = {"loss_sum": jnp.sum(per_example * mask), "count": jnp.sum(mask)}
  out.update({f"{k}_sum": jnp.sum(v * mask) for k, v in aux.items()})
  if _is_classification(outputs, y):
    out["correct"] = jnp.sum((jnp.argmax(outputs, -1) == y) * mask)
  return out


def evaluate(state: TrainState, data, *, batch_size: int = 256, sharding=None) -> dict:
  """Loss (and accuracy for classification) of ``state`` on all of ``data = (x, y)``.

  Batches are padded to ``batch_size`` and masked, so every call compiles once
  and no example is dropped. ``x`` may be a pytree of arrays, as in :func:`train_step`.

  Returns:
    ``{"loss": float, "accuracy": float}`` (``accuracy`` only for classification),
    plus the mean of each auxiliary metric of the loss.
  """
  if not isinstance(state, TrainState):
    raise TypeError(
      f"evaluate takes a TrainState (from fit or create_train_state) first, got "
      f"{type(state).__name__}; for raw variables use dlfunc.models.Predictor(model, variables)."
    )
  x, y = pair_of(data, "evaluate: data")
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"evaluate: batch_size must be a positive integer, got {batch_size!r}; pass e.g. 256.")
  n = num_examples(x, "evaluate: inputs")
  if n == 0:
    raise ValueError("evaluate: data is empty (0 examples); pass at least one example.")
  if len(y) != n:
    raise ValueError(f"evaluate: x has {n} examples but y has {len(y)}; they must match.")
  batch_size = min(batch_size, n)
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
  out.update({k[:-4]: float(v / totals["count"]) for k, v in totals.items() if k.endswith("_sum") and k != "loss_sum"})
  return out


def pair_of(data, what: str):
  """``(x, y)`` from a pair or a ``dlfunc.data.Split``, with ``x`` any pytree of arrays; one-line errors."""
  if isinstance(data, Mapping):
    keys = list(data)
    example = f"(d[{keys[0]!r}], d[{keys[1]!r}])" if len(keys) >= 2 else "(inputs, labels)"
    raise TypeError(
      f"{what} is a dict with keys {keys}; pass a pair (inputs, labels), e.g. {example} "
      "(the inputs may themselves be a dict or tuple of arrays)."
    )
  try:
    x, y = data
  except (TypeError, ValueError):
    raise TypeError(
      f"{what} must be a pair (x, y) of arrays or a dlfunc.data.Split, got {type(data).__name__}."
    ) from None
  return jax.tree.map(np.asarray, x), np.asarray(y)
