r"""SGD, momentum, Nesterov, RMSprop, Adam and AdamW as chains of dlfunc's own transforms.

Same names, arguments and defaults as optax 0.2.8 (``optax.sgd``, ``optax.rmsprop``,
``optax.adam``, ``optax.adamw``), and tested against optax, Keras 3 and PyTorch.
Every optimizer is ``chain(direction..., scale_by_learning_rate(lr))``: the
transforms before the learning rate decide the *direction* of the step, the
last one its size and sign.

Quick reference of defaults that differ between libraries:

=========  ===================================  ==================================  ====================================
optimizer  optax / dlfunc                       Keras 3                             PyTorch
=========  ===================================  ==================================  ====================================
SGD        lr required                          ``learning_rate=0.01``              ``lr=1e-3``
RMSprop    ``decay=0.9, eps=1e-8``, eps inside  ``rho=0.9, epsilon=1e-7``, inside   ``alpha=0.99, eps=1e-8``, *outside*
Adam       ``eps=1e-8`` (outside the root)      ``epsilon=1e-7`` is epsilon-hat     ``eps=1e-8``, same as optax
AdamW      ``weight_decay=1e-4``                ``weight_decay=0.004``              ``weight_decay=1e-2``
=========  ===================================  ==================================  ====================================
"""

from __future__ import annotations

from typing import Any, Optional

from dlfunc.optim._base import GradientTransformation, ScalarOrSchedule, chain, check_learning_rate, check_range
from dlfunc.optim._transforms import (
  add_decayed_weights,
  momentum_or_identity,
  scale_by_adam,
  scale_by_learning_rate,
  scale_by_rms,
  scale_by_stddev,
)


def _check_momentum(name, momentum, nesterov):
  check_range(name, "momentum", momentum, 0.0, 1.0, allow_none=True)
  if nesterov and momentum is None:
    raise ValueError(f"{name}: nesterov=True needs a momentum; pass e.g. momentum=0.9 (optax silently ignores it).")


def _check_adam(name, b1, b2, eps, eps_root):
  check_range(name, "b1", b1, 0.0, 1.0)
  check_range(name, "b2", b2, 0.0, 1.0)
  check_range(name, "eps", eps, 0.0)
  check_range(name, "eps_root", eps_root, 0.0)


def sgd(
  learning_rate: ScalarOrSchedule,
  momentum: Optional[Any] = None,
  nesterov: bool = False,
  accumulator_dtype: Optional[Any] = None,
) -> GradientTransformation:
  r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

  .. math::

    \text{plain:}\quad \theta_{t+1} = \theta_t - \eta_t g_t; \qquad
    \text{momentum } \mu:\quad m_t = g_t + \mu m_{t-1},\quad
    \theta_{t+1} = \theta_t - \eta_t \begin{cases} m_t \\ g_t + \mu m_t & \text{(Nesterov)}\end{cases}

  Built as ``chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))``.

  Args:
    learning_rate: :math:`\eta > 0`, a float or an optax schedule ``step -> eta``.
    momentum: :math:`\mu \in [0, 1)`, or ``None`` for plain SGD.
    nesterov: Nesterov's look-ahead momentum (needs ``momentum``; optax ignores
      ``nesterov=True`` without momentum, dlfunc says so with an error).
    accumulator_dtype: dtype of the momentum buffer (default: the params' dtype).

  Returns:
    An ``optax.GradientTransformation``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from dlfunc import optim
    >>> tx = optim.sgd(0.1, momentum=0.9)
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> optim.apply_updates(params, updates)["w"]
    Array([ 0.8, -1.6], dtype=float32)

  .. warning::
    **PyTorch** ``SGD(momentum=mu)`` (with ``dampening=0``, its default) is the same
    rule. Its ``weight_decay`` is a coupled L2 term added to the gradient *before*
    the momentum: ``chain(add_decayed_weights(wd), sgd(lr, momentum))`` reproduces it.
    **Keras** ``SGD`` keeps a velocity that already contains the learning rate,
    :math:`v_t = \mu v_{t-1} - \eta g_t`; with a constant learning rate this is
    the same trajectory, but with a schedule Keras' velocity remembers old
    learning rates and the two differ. Keras' ``weight_decay`` is decoupled
    (:math:`\theta \mathrel{-}= \eta\lambda\theta`, outside the momentum).
  """
  check_learning_rate("sgd", learning_rate)
  _check_momentum("sgd", momentum, nesterov)
  return chain(momentum_or_identity(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(learning_rate))


def rmsprop(
  learning_rate: ScalarOrSchedule,
  decay: Any = 0.9,
  eps: Any = 1e-8,
  initial_scale: Any = 0.0,
  eps_in_sqrt: bool = True,
  centered: bool = False,
  momentum: Optional[Any] = None,
  nesterov: bool = False,
  bias_correction: bool = False,
) -> GradientTransformation:
  r"""RMSprop: divide the gradient by a running root-mean-square of past gradients.

  .. math::

    v_t = \rho v_{t-1} + (1-\rho) g_t^2, \qquad
    \theta_{t+1} = \theta_t - \eta_t \frac{g_t}{\sqrt{v_t + \epsilon}}

  With ``centered=True`` :math:`v_t` is replaced by :math:`v_t - \bar g_t^2` (an
  estimate of the variance, :math:`\bar g_t` the running mean of :math:`g`); with
  ``momentum`` the scaled step :math:`\eta_t g_t/\sqrt{\cdot}` goes through a
  momentum buffer (:func:`trace`). Built as
  ``chain(scale_by_rms or scale_by_stddev, scale_by_learning_rate, trace)``.

  Args:
    learning_rate: :math:`\eta > 0`, a float or a schedule.
    decay: :math:`\rho \in [0, 1)` (Keras' ``rho``, PyTorch's ``alpha``).
    eps: :math:`\epsilon \ge 0`.
    initial_scale: :math:`v_0` (0 in PyTorch and Keras, 1 in TF1).
    eps_in_sqrt: ``True``: :math:`\sqrt{v + \epsilon}` (optax, Keras); ``False``:
      :math:`\sqrt{v} + \epsilon` (PyTorch).
    centered: use the centered (variance) form (Graves 2013).
    momentum: momentum :math:`\mu \in [0, 1)` applied after scaling, or ``None``.
    nesterov: Nesterov form of that momentum (needs ``momentum``).
    bias_correction: debias :math:`v_t` (and :math:`\bar g_t`) by :math:`1-\rho^t`.

  Example — epsilon's placement matters when gradients are as small as :math:`\sqrt\epsilon`
  (one step with :math:`\rho = 0`, so :math:`v = g^2`):

    >>> import jax.numpy as jnp
    >>> from dlfunc import optim
    >>> g = jnp.array([1e-4])
    >>> for in_sqrt in (True, False):  # -g / sqrt(g**2 + eps)  vs  -g / (|g| + eps)
    ...   tx = optim.rmsprop(1.0, decay=0.0, eps=1e-8, eps_in_sqrt=in_sqrt)
    ...   print(round(float(tx.update(g, tx.init(g))[0][0]), 4))
    -0.7071
    -0.9999

  .. warning::
    *Where epsilon goes* differs: optax 0.2.8 (``eps_in_sqrt=True``, default) and
    Keras 3 use :math:`g/\sqrt{v+\epsilon}`; PyTorch uses :math:`g/(\sqrt v+\epsilon)`
    — pass ``eps_in_sqrt=False`` to match it. With :math:`\epsilon=10^{-8}` and
    :math:`v \approx 10^{-8}` the two steps differ by a factor ~1.4.
    *Defaults* differ too: Keras ``RMSprop(rho=0.9, epsilon=1e-7)``; PyTorch
    ``RMSprop(lr=0.01, alpha=0.99, eps=1e-8)``. Keras' and PyTorch's momentum
    buffers accumulate the already-scaled step, as here (same for a constant
    learning rate).
  """
  check_learning_rate("rmsprop", learning_rate)
  check_range("rmsprop", "decay", decay, 0.0, 1.0)
  check_range("rmsprop", "eps", eps, 0.0)
  check_range("rmsprop", "initial_scale", initial_scale, 0.0)
  _check_momentum("rmsprop", momentum, nesterov)
  scale_by = scale_by_stddev if centered else scale_by_rms
  return chain(
    scale_by(
      decay=decay, eps=eps, initial_scale=initial_scale, eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction
    ),
    scale_by_learning_rate(learning_rate),
    momentum_or_identity(momentum, nesterov),
  )


def adam(
  learning_rate: ScalarOrSchedule,
  b1: Any = 0.9,
  b2: Any = 0.999,
  eps: Any = 1e-8,
  eps_root: Any = 0.0,
  mu_dtype: Optional[Any] = None,
  *,
  nesterov: bool = False,
) -> GradientTransformation:
  r"""Adam (Kingma & Ba 2015): momentum divided by a running RMS, both bias-corrected.

  .. math::

    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
    v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
    \theta_{t+1} = \theta_t - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \bar\epsilon} + \epsilon}

  Built as ``chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
  scale_by_learning_rate(learning_rate))``.

  Args:
    learning_rate: :math:`\eta > 0`, a float or a schedule.
    b1: :math:`\beta_1 \in [0, 1)`. b2: :math:`\beta_2 \in [0, 1)`.
    eps: :math:`\epsilon \ge 0` outside the root. eps_root: :math:`\bar\epsilon \ge 0` inside it.
    mu_dtype: dtype of the first moment. nesterov: NAdam (Dozat 2016).

  Example — an optimizer is a chain, and its state one NamedTuple per link:

    >>> import jax.numpy as jnp
    >>> from dlfunc import optim
    >>> state = optim.adam(1e-3).init({"w": jnp.zeros(3)})
    >>> [type(s).__name__ for s in state]
    ['ScaleByAdamState', 'EmptyState']
    >>> state[0].count, state[0].mu["w"].shape
    (Array(0, dtype=int32), (3,))

  .. warning::
    **PyTorch** ``Adam(weight_decay=wd)`` is *not* AdamW: it adds :math:`wd\,\theta`
    to the gradient before the moments (a coupled L2 penalty, which Adam then
    rescales per coordinate). Reproduce it with
    ``chain(add_decayed_weights(wd), adam(lr))``; use :func:`adamw` (or PyTorch's
    ``AdamW``) for decoupled decay. Its ``eps=1e-8`` is the same as here.
    **Keras** ``Adam(epsilon=1e-7)`` is the paper's :math:`\hat\epsilon`, added to
    :math:`\sqrt{v_t}` *before* bias correction; it equals
    :math:`\epsilon = \hat\epsilon/\sqrt{1-\beta_2^t}` here, so Keras and dlfunc
    agree exactly only with ``epsilon=0`` (and nearly when gradients are much
    larger than epsilon). Keras' ``Adam(weight_decay=...)`` is decoupled (= AdamW).
  """
  check_learning_rate("adam", learning_rate)
  _check_adam("adam", b1, b2, eps, eps_root)
  return chain(
    scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
    scale_by_learning_rate(learning_rate),
  )


def adamw(
  learning_rate: ScalarOrSchedule,
  b1: Any = 0.9,
  b2: Any = 0.999,
  eps: Any = 1e-8,
  eps_root: Any = 0.0,
  mu_dtype: Optional[Any] = None,
  weight_decay: ScalarOrSchedule = 1e-4,
  mask: Any = None,
  *,
  nesterov: bool = False,
) -> GradientTransformation:
  r"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay.

  .. math::

    \theta_{t+1} = \theta_t - \eta_t \left(\frac{\hat m_t}{\sqrt{\hat v_t + \bar\epsilon} + \epsilon}
                   + \lambda\, \theta_t\right)

  The decay :math:`\lambda\theta` is added *after* Adam's rescaling, so every
  weight shrinks by the same factor :math:`1-\eta_t\lambda` per step, whatever
  its gradient history. Built as ``chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
  scale_by_learning_rate(learning_rate))``.

  Args:
    learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov: as :func:`adam`.
    weight_decay: :math:`\lambda \ge 0` (a float or a schedule). Default 1e-4 as optax.
    mask: pytree of bools (or a callable ``params -> bools``), ``True`` where to decay;
      commonly kernels only, not biases or norm scales.

  .. warning::
    Defaults differ: PyTorch ``AdamW(weight_decay=0.01)``, Keras ``AdamW(weight_decay=0.004)``,
    optax/dlfunc ``1e-4``. The rule is the same in all three (decay multiplied
    by the learning rate, applied to :math:`\theta_t`); Keras additionally uses
    epsilon-hat (see :func:`adam`).
  """
  check_learning_rate("adamw", learning_rate)
  _check_adam("adamw", b1, b2, eps, eps_root)
  check_range("adamw", "weight_decay", weight_decay, 0.0)
  return chain(
    scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
    add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(learning_rate),
  )
