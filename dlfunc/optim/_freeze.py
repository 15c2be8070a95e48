r"""Freezing and parameter groups for transfer learning.

* :func:`partition` runs a different transform on each labelled group of
  parameters (a smaller learning rate for a pretrained backbone, a larger one
  for a new head, ``set_to_zero()`` for frozen layers).
* :func:`freeze` is the common case: frozen leaves get zero updates **and no
  optimizer state** (Adam's two moment buffers are never allocated for them),
  so freezing a backbone also saves its optimizer memory.
* :func:`labels_by_path` / :func:`mask_by_path` name groups with regular
  expressions over parameter paths.

Paths are those of the tree the optimizer is given: ``fit`` and ``TrainState``
hand it the ``params`` *collection*, ``model.init(...)["params"]``, so a path
reads ``"Dense_0/kernel"`` -- with no ``"params/"`` in front. :func:`paths`
lists them. A pattern, mask or label that selects no parameter is an error
that shows the real paths, never a silent no-op.

Example:
  >>> import jax, numpy as np
  >>> from dlfunc import models, optim
  >>> params = models.MLP(hidden=(4,)).init(jax.random.key(0), np.zeros((1, 3)))["params"]
  >>> optim.paths(params)
  ['Dense_0/bias', 'Dense_0/kernel', 'Dense_1/bias', 'Dense_1/kernel']
  >>> tx = optim.freeze(optim.adam(1e-3), r"^Dense_0/")  # train only the head, Dense_1
  >>> tx = optim.partition({"slow": optim.adam(1e-5), "fast": optim.adam(1e-3)},
  ...                      optim.labels_by_path(params, {r"^Dense_0/": "slow"}, default="fast"))
  >>> optim.freeze(optim.adam(1e-3), r"^params/Dense_0/").init(params)
  Traceback (most recent call last):
  ...
  ValueError: freeze: the pattern '^params/Dense_0/' selects no parameter; paths are ['Dense_0/bias',
  'Dense_0/kernel', 'Dense_1/bias', 'Dense_1/kernel'] (the optimizer sees model.init(...)['params'],
  whose paths have no 'params/' in front).

How this differs elsewhere: PyTorch freezes with ``requires_grad_(False)``
(gradients are not even computed) or by leaving parameters out of the
optimizer's ``param_groups``; Keras with ``layer.trainable = False``. Here the
gradient is still computed by ``jax.grad`` (XLA removes the work it can prove
is unused under ``jit``) and the optimizer turns it into a zero update.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Union

import jax
import numpy as np
import optax

from dlfunc.optim._base import GradientTransformation, GradientTransformationExtraArgs, PyTree, set_to_zero


class MaskedNode(NamedTuple):
  """A placeholder for a parameter hidden from a transform: a pytree node with no leaves."""


class MaskedState(NamedTuple):
  """State of :func:`masked`: the inner transform's state over the selected leaves only."""

  inner_state: Any


class PartitionState(NamedTuple):
  """State of :func:`partition`: one inner state per label."""

  inner_states: dict


def _path_str(path) -> str:
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      parts.append(k.name)
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    else:
      parts.append(str(k).strip(".[]'\""))
  return "/".join(parts)


def paths(tree: PyTree) -> list[str]:
  """The ``"a/b/c"`` path of every leaf of ``tree``, in ``jax.tree.leaves`` order."""
  return [_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _shown_paths(tree: PyTree, n: int = 6) -> str:
  ps = paths(tree)
  return repr(ps) if len(ps) <= n else f"[{', '.join(map(repr, ps[:n]))}, ...] ({len(ps)} in all)"


def selects_nothing(who: str, what: str, tree: PyTree) -> ValueError:
  """The error for a pattern, mask or label that selects no leaf of ``tree``: names it and shows real paths."""
  hint = ""
  if "params/" in what and not any(q.startswith("params/") for q in paths(tree)):
    hint = " (the optimizer sees model.init(...)['params'], whose paths have no 'params/' in front)"
  return ValueError(f"{who}: {what} selects no parameter; paths are {_shown_paths(tree)}{hint}.")


def _broadcast(name: str, prefix: PyTree, tree: PyTree) -> list:
  """Expand a per-leaf (or prefix) tree of labels/bools to one value per leaf of ``tree``."""
  try:
    full = jax.tree.map(lambda lab, sub: jax.tree.map(lambda _: lab, sub), prefix, tree)
    return jax.tree.structure(tree).flatten_up_to(full)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"{name}: the labels/mask tree must have the structure of the params (or be a prefix of it), "
      f"got {jax.tree.structure(prefix)} for params {jax.tree.structure(tree)}; "
      "build it with labels_by_path(params, ...) or mask_by_path(params, ...)."
    ) from e


def _select(tree: PyTree, keep: list) -> PyTree:
  """Replace the leaves where ``keep`` is False by :class:`MaskedNode`."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef.unflatten([x if k else MaskedNode() for x, k in zip(leaves, keep)])


def _merge(original: PyTree, selected: PyTree, keep: list) -> PyTree:
  """Put the leaves of ``selected`` (a masked tree) back where ``keep`` is True."""
  leaves, treedef = jax.tree.flatten(original)
  new = iter(jax.tree.leaves(selected))
  return treedef.unflatten([next(new) if k else x for x, k in zip(leaves, keep)])


def masked(inner: GradientTransformation, mask: Union[PyTree, Callable[[PyTree], PyTree]]) -> GradientTransformation:
  """Apply ``inner`` only where ``mask`` is True; other updates pass through unchanged.

  The inner state is built over the selected leaves only (the others are
  :class:`MaskedNode`, which has no leaves), as ``optax.masked`` does.

  Args:
    inner: the transform to restrict.
    mask: pytree of Python bools with the params' structure (or a prefix of it),
      or a callable ``params -> mask``. A mask with no ``True`` is an error.
  """

  def keep_of(tree):
    m = mask(tree) if callable(mask) else mask
    keep = _broadcast("masked", m, tree)
    for k in keep:
      if not isinstance(k, (bool, np.bool_)):
        raise TypeError(
          f"masked: mask leaves must be Python bools, got {type(k).__name__}; "
          "build the mask outside jit, e.g. with mask_by_path(params, pattern)."
        )
    if keep and not any(keep):
      raise selects_nothing("masked", "the mask", tree)
    return [bool(k) for k in keep]

  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return MaskedState(inner_state=inner.init(_select(params, keep_of(params))))

  def update_fn(updates, state, params=None, **extra_args):
    keep = keep_of(updates)
    sub_params = None if params is None else _select(params, keep)
    sub_updates, inner_state = inner.update(_select(updates, keep), state.inner_state, sub_params, **extra_args)
    return _merge(updates, sub_updates, keep), MaskedState(inner_state=inner_state)

  return GradientTransformationExtraArgs(init_fn, update_fn)


def partition(
  transforms: Mapping[Hashable, GradientTransformation],
  param_labels: Union[PyTree, Callable[[PyTree], PyTree]],
  *,
  _who: str = "partition",
  _must_select: tuple | None = None,
) -> GradientTransformation:
  """Run ``transforms[label]`` on the parameters labelled ``label`` (like ``optax.partition``).

  Each group's transform sees only its own leaves, so its state (momentum,
  Adam moments) exists only for them; a group mapped to ``set_to_zero()``
  keeps no state at all.

  Args:
    transforms: ``{label: transform}``, e.g. ``{"backbone": adam(1e-5), "head": adam(1e-3)}``
      for per-group learning rates, or ``{"train": adam(1e-3), "frozen": set_to_zero()}``.
    param_labels: a pytree of labels with the params' structure (or a prefix of
      it, e.g. ``{"backbone": "frozen", "head": "train"}``), or a callable
      ``params -> labels`` such as ``lambda p: labels_by_path(p, {...})``.
      Every label of ``transforms`` must label at least one parameter.

  Returns:
    An ``optax.GradientTransformation`` with a :class:`PartitionState`.

  .. note::
    PyTorch's equivalent is one optimizer with several ``param_groups``
    (``[{"params": backbone.parameters(), "lr": 1e-5}, {"params": head.parameters()}]``).
  """
  if not transforms:
    raise ValueError("partition: transforms is empty; pass e.g. {'train': adam(1e-3), 'frozen': set_to_zero()}.")
  transforms = {label: optax.with_extra_args_support(tx) for label, tx in transforms.items()}

  def keeps_of(tree):
    labels = param_labels(tree) if callable(param_labels) else param_labels
    per_leaf = _broadcast("partition", labels, tree)
    unknown = sorted({repr(lab) for lab in per_leaf if lab not in transforms})
    if unknown:
      raise ValueError(
        f"{_who}: parameter labels {', '.join(unknown)} have no transform; "
        f"transforms has {sorted(map(repr, transforms))}. Add them or relabel the parameters."
      )
    keeps = {label: [lab == label for lab in per_leaf] for label in transforms}
    for label in transforms if _must_select is None else _must_select:
      if per_leaf and not any(keeps[label]):
        raise selects_nothing(_who, f"the label {label!r}", tree)
    return keeps

  def init_fn(params):
    keeps = keeps_of(params)
    return PartitionState({label: tx.init(_select(params, keeps[label])) for label, tx in transforms.items()})

  def update_fn(updates, state, params=None, **extra_args):
    keeps = keeps_of(updates)
    out, new_states = updates, {}
    for label, tx in transforms.items():
      keep = keeps[label]
      sub_params = None if params is None else _select(params, keep)
      sub_updates, new_states[label] = tx.update(
        _select(updates, keep), state.inner_states[label], sub_params, **extra_args
      )
      out = _merge(out, sub_updates, keep)
    return out, PartitionState(new_states)

  return GradientTransformationExtraArgs(init_fn, update_fn)


def labels_by_path(params: PyTree, rules: Mapping[str, Hashable], default: Hashable = None) -> PyTree:
  r"""Label each leaf by the first regular expression that matches its path.

  Paths join dict keys (and attribute names / list indices) with ``/``. Pass
  the tree the optimizer sees: for a Flax model that is the ``params``
  collection, whose paths read ``"Dense_0/kernel"`` (no ``"params/"`` prefix).
  Matching uses ``re.search`` (anywhere in the path; anchor with ``^``/``$``).

  Args:
    params: the parameter pytree (only its structure and key names are used).
    rules: ``{regex: label}``, tried in order; a rule that labels no leaf is an error.
    default: label for leaves no rule matches; ``None`` makes an unmatched leaf an error.

  Returns:
    A pytree of labels with the structure of ``params``, for :func:`partition`.

  Example:
    >>> import jax, numpy as np
    >>> from dlfunc import models
    >>> params = models.MLP(hidden=(4,)).init(jax.random.key(0), np.zeros((1, 3)))["params"]
    >>> labels_by_path(params, {r"kernel$": "decay"}, default="no_decay")
    {'Dense_0': {'bias': 'no_decay', 'kernel': 'decay'}, 'Dense_1': {'bias': 'no_decay', 'kernel': 'decay'}}
    >>> labels_by_path(params, {r"^fc/": "head"}, default="body")
    Traceback (most recent call last):
    ...
    ValueError: labels_by_path: the rule '^fc/' selects no parameter; paths are ['Dense_0/bias',
    'Dense_0/kernel', 'Dense_1/bias', 'Dense_1/kernel'].
  """
  return _labels_by_path(params, rules, default, "labels_by_path", "the rule")


def _labels_by_path(params: PyTree, rules: Mapping[str, Hashable], default: Hashable, who: str, what: str) -> PyTree:
  compiled = []
  for pattern, label in rules.items():
    try:
      compiled.append((re.compile(pattern), label))
    except re.error as e:
      raise ValueError(f"{who}: {pattern!r} is not a valid regular expression ({e}).") from None
  used = [False] * len(compiled)

  def label_of(path, _):
    s = _path_str(path)
    for i, (rx, label) in enumerate(compiled):
      if rx.search(s):
        used[i] = True
        return label
    if default is None:
      raise ValueError(
        f"{who}: no rule matches parameter {s!r}; add a rule for it or pass default=...; rules: {list(rules)}."
      )
    return default

  labels = jax.tree_util.tree_map_with_path(label_of, params)
  for (pattern, _), hit in zip(rules.items(), used):
    if not hit and jax.tree.leaves(params):
      raise selects_nothing(who, f"{what} {pattern!r}", params)
  return labels


def mask_by_path(params: PyTree, pattern: str, *, _who: str = "mask_by_path") -> PyTree:
  """A pytree of bools: ``True`` where the leaf's path matches the regex ``pattern`` (``re.search``).

  A pattern that matches no path is an error (see :func:`labels_by_path` for the paths).

  Example:
    >>> mask_by_path({"Dense_0": {"kernel": 1.0, "bias": 0.0}}, r"kernel$")
    {'Dense_0': {'bias': False, 'kernel': True}}
  """
  return _labels_by_path(params, {pattern: True}, False, _who, "the pattern")


def freeze(
  optimizer: GradientTransformation, frozen: Union[str, PyTree, Callable[[PyTree], PyTree]]
) -> GradientTransformation:
  r"""Freeze some parameters: zero updates and no optimizer state for them.

  Equivalent to ``partition({"trainable": optimizer, "frozen": set_to_zero()}, labels)``.
  Frozen parameters stay bit-identical under ``apply_updates`` (:math:`\theta + 0`).

  Args:
    optimizer: the optimizer for the trainable parameters, e.g. ``adam(1e-3)``.
    frozen: which parameters to freeze — a regex over leaf paths as the
      optimizer sees them (``r"^backbone/"``, ``r"^Dense_0/"``: no ``params/``
      prefix, see :func:`paths`), a pytree of bools with ``True`` = frozen
      (the params' structure or a prefix of it, e.g. ``{"backbone": True, "head": False}``),
      or a callable ``params -> such a pytree``. Selecting no parameter is an error.

  Example:
    >>> import jax.numpy as jnp
    >>> from dlfunc import optim
    >>> params = {"backbone": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
    >>> tx = optim.freeze(optim.sgd(0.5, momentum=0.9), r"^backbone/")
    >>> state = tx.init(params)
    >>> state.inner_states["frozen"]
    EmptyState()
    >>> updates, state = tx.update(params, state, params)
    >>> optim.apply_updates(params, updates)
    {'backbone': {'w': Array([1., 1.], dtype=float32)}, 'head': {'w': Array([0.5, 0.5], dtype=float32)}}

  .. warning::
    Freezing the parameters does not freeze batch-norm *statistics*: run a
    frozen backbone with ``train=False`` (inference mode) so its running
    mean/variance stay fixed too (Keras does this for ``trainable=False``
    BatchNormalization layers; PyTorch needs ``module.eval()``).
  """

  def to_labels(m):
    if not isinstance(m, (bool, np.bool_)):
      raise TypeError(
        f"freeze: mask leaves must be Python bools (True = frozen), got {type(m).__name__}; "
        "build the mask outside jit, e.g. with mask_by_path(params, pattern)."
      )
    return "frozen" if m else "trainable"

  if isinstance(frozen, str):
    pattern = frozen
    labels = lambda tree: jax.tree.map(to_labels, mask_by_path(tree, pattern, _who="freeze"))  # noqa: E731
  elif callable(frozen):
    labels = lambda tree: jax.tree.map(to_labels, frozen(tree))  # noqa: E731
  else:
    labels = jax.tree.map(to_labels, frozen)
  return partition({"trainable": optimizer, "frozen": set_to_zero()}, labels, _who="freeze", _must_select=("frozen",))
