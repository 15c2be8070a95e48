r"""The small transforms that dlfunc's optimizers are chained from.

Each function returns an ``optax.GradientTransformation`` whose state is one
NamedTuple defined here. Notation: :math:`g_t` is the incoming update at step
:math:`t = 1, 2, \ldots` (the gradient, or what earlier transforms made of
it), :math:`\theta_t` the parameters, and every operation is element-wise.

================================  ==========================================================
transform                          update rule
================================  ==========================================================
``scale(s)``                       :math:`u = s\,g`
``scale_by_learning_rate(lr)``     :math:`u = -\eta_t\,g`  (``lr`` a float or a schedule)
``trace(mu)``                      :math:`m_t = g_t + \mu m_{t-1}`, :math:`u = m_t`
``scale_by_rms(decay, eps)``       :math:`v_t = \rho v_{t-1} + (1-\rho) g_t^2`, :math:`u = g_t/\sqrt{v_t+\epsilon}`
``scale_by_stddev(decay, eps)``    as above over :math:`v_t - \bar g_t^2` (centered RMSprop)
``scale_by_adam(b1, b2, eps)``     :math:`u = \hat m_t / (\sqrt{\hat v_t} + \epsilon)`
``add_decayed_weights(wd)``        :math:`u = g + \lambda\,\theta`
================================  ==========================================================
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from dlfunc.optim._base import (
  EmptyState,
  GradientTransformation,
  ScalarOrSchedule,
  check_learning_rate,
  check_range,
  identity,
  safe_increment,
  transformation,
  zero_count,
)

Array = jax.Array


def _canonical_dtype(dtype):
  return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def _cast(tree, dtype):
  return tree if dtype is None else jax.tree.map(lambda t: t.astype(dtype), tree)


def _abs_sq(g: Array) -> Array:
  """:math:`|g|^2`: ``g ** 2`` for real arrays, ``Re(g * conj(g))`` for complex ones."""
  return g**2 if jnp.isrealobj(g) else jnp.real(g * jnp.conj(g))


def _ema(updates, moments, decay, fn=lambda g: g):
  r""":math:`(1 - \beta)\,f(g) + \beta\,m` leaf by leaf."""
  return jax.tree.map(lambda g, m: (1 - decay) * fn(g) + decay * m, updates, moments)


def _debias(moments, decay, count):
  r"""Bias correction :math:`m / (1 - \beta^t)`.

  The power is taken in the default float dtype (float32, or float64 with x64)
  and only then cast to ``m``'s dtype: :math:`0.999^t` in bfloat16 rounds to 1.
  """
  dtype = jnp.result_type(float)
  correction = 1 - jnp.asarray(decay, dtype) ** count.astype(dtype)
  return jax.tree.map(lambda m: m / correction.astype(m.dtype), moments)


def _times(s, g):
  """``s * g`` keeping ``g``'s dtype when ``s`` is an array (a Python number is weakly typed anyway)."""
  return s * g if isinstance(s, (int, float)) else jnp.asarray(s).astype(g.dtype) * g


# --------------------------------------------------------------------- scaling


def scale(step_size: Any) -> GradientTransformation:
  """Multiply every update by a fixed scalar, :math:`u = s\\,g`. Stateless."""

  def init_fn(params):
    del params
    return EmptyState()

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: _times(step_size, g), updates), state

  return transformation(init_fn, update_fn)


class ScaleByScheduleState(NamedTuple):
  """State of :func:`scale_by_learning_rate` with a schedule."""

  count: Array  # shape=(), dtype=jnp.int32: number of updates so far (the schedule's argument).


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
  r"""Multiply by :math:`-\eta_t`, the (negated) learning rate: the step of gradient *descent*.

  Args:
    learning_rate: a positive float, or a schedule: any callable ``count -> eta``
      such as ``optax.cosine_decay_schedule(1e-3, 1000)``. A schedule is called
      with the number of updates made so far (0 on the first update).
    flip_sign: ``True`` (default) scales by :math:`-\eta_t` so that
      ``apply_updates`` *adds* the update; ``False`` scales by :math:`+\eta_t`.

  Returns:
    A stateless transform for a float; one with a :class:`ScaleByScheduleState`
    (an int32 step count) for a schedule.
  """
  check_learning_rate("scale_by_learning_rate", learning_rate)
  sign = -1 if flip_sign else 1
  if not callable(learning_rate):
    return scale(sign * learning_rate)

  def init_fn(params):
    del params
    return ScaleByScheduleState(count=zero_count())

  def update_fn(updates, state, params=None):
    del params
    eta: Any = learning_rate(state.count)  # a schedule returns a scalar (callable() alone types it object)
    updates = jax.tree.map(lambda g: jnp.array(sign * eta, dtype=g.dtype) * g, updates)
    return updates, ScaleByScheduleState(count=safe_increment(state.count))

  return transformation(init_fn, update_fn)


# -------------------------------------------------------------------- momentum


class TraceState(NamedTuple):
  """State of :func:`trace`: the momentum buffer (the velocity)."""

  trace: Any  # a pytree like params: m_{t-1}


def trace(decay: Any, nesterov: bool = False, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
  r"""Heavy-ball momentum: accumulate a trace of past updates.

  .. math::

    m_t = g_t + \mu\, m_{t-1}, \qquad
    u_t = \begin{cases} m_t & \text{classical (Polyak)} \\
                        g_t + \mu\, m_t & \text{Nesterov} \end{cases}

  with :math:`m_0 = 0`. This is PyTorch's ``SGD(momentum=mu, dampening=0)``
  buffer. It is *not* an exponential moving average: there is no
  :math:`(1-\mu)` on :math:`g_t` (that is ``optax.ema``), so at steady state
  the step is :math:`1/(1-\mu)` times larger than plain SGD's.

  Args:
    decay: the momentum :math:`\mu`, in ``[0, 1)``.
    nesterov: use Nesterov's look-ahead form.
    accumulator_dtype: dtype of the buffer (default: that of the updates).
  """
  check_range("trace", "decay (the momentum)", decay, 0.0, 1.0)
  accumulator_dtype = _canonical_dtype(accumulator_dtype)

  def init_fn(params):
    return TraceState(trace=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=accumulator_dtype), params))

  def update_fn(updates, state, params=None):
    del params
    new_trace = jax.tree.map(lambda g, m: g + decay * m, updates, state.trace)
    if nesterov:
      updates = jax.tree.map(lambda g, m: g + decay * m, updates, new_trace)
    else:
      updates = new_trace
    return updates, TraceState(trace=_cast(new_trace, accumulator_dtype))

  return transformation(init_fn, update_fn)


# --------------------------------------------------------------------- RMSprop


class ScaleByRmsState(NamedTuple):
  """State of :func:`scale_by_rms`."""

  count: Array  # shape=(), dtype=jnp.int32: updates so far (used only when bias_correction=True).
  nu: Any  # a pytree like params: the EMA of squared updates, v_{t-1}


def _rms_scale(v, eps, eps_in_sqrt):
  return jax.lax.rsqrt(v + eps) if eps_in_sqrt else 1 / (jnp.sqrt(v) + eps)


def _check_rms(name, decay, eps, initial_scale):
  check_range(name, "decay", decay, 0.0, 1.0)
  check_range(name, "eps", eps, 0.0)
  check_range(name, "initial_scale", initial_scale, 0.0)


def scale_by_rms(
  decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True, bias_correction: bool = False
) -> GradientTransformation:
  r"""Divide by the root of an exponential moving average of squared updates (RMSprop).

  .. math::

    v_t = \rho\, v_{t-1} + (1-\rho)\, g_t^2, \quad v_0 = \texttt{initial\_scale}, \qquad
    u_t = \begin{cases} g_t / \sqrt{\hat v_t + \epsilon} & \texttt{eps\_in\_sqrt=True (optax, Keras)} \\
                        g_t / (\sqrt{\hat v_t} + \epsilon) & \texttt{eps\_in\_sqrt=False (PyTorch)} \end{cases}

  where :math:`\hat v_t = v_t / (1-\rho^t)` if ``bias_correction`` else :math:`v_t`.

  Args:
    decay: :math:`\rho`, in ``[0, 1)``.
    eps: :math:`\epsilon >= 0`.
    initial_scale: :math:`v_0` (PyTorch uses 0, TF1 used 1).
    eps_in_sqrt: where :math:`\epsilon` goes (see above).
    bias_correction: divide :math:`v_t` by :math:`1-\rho^t` as Adam does.
  """
  _check_rms("scale_by_rms", decay, eps, initial_scale)

  def init_fn(params):
    return ScaleByRmsState(count=zero_count(), nu=jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params))

  def update_fn(updates, state, params=None):
    del params
    nu = _ema(updates, state.nu, decay, _abs_sq)
    count = safe_increment(state.count) if bias_correction else state.count
    nu_hat = _debias(nu, decay, count) if bias_correction else nu
    updates = jax.tree.map(lambda g, v: g * _rms_scale(v, eps, eps_in_sqrt), updates, nu_hat)
    return updates, ScaleByRmsState(count=count, nu=nu)

  return transformation(init_fn, update_fn)


class ScaleByStddevState(NamedTuple):
  """State of :func:`scale_by_stddev` (centered RMSprop)."""

  count: Array  # shape=(), dtype=jnp.int32: updates so far (used only when bias_correction=True).
  mu: Any  # a pytree like params: the EMA of updates, \bar g_{t-1}
  nu: Any  # a pytree like params: the EMA of squared updates, v_{t-1}


def scale_by_stddev(
  decay: Any = 0.9, eps: Any = 1e-8, initial_scale: Any = 0.0, eps_in_sqrt: bool = True, bias_correction: bool = False
) -> GradientTransformation:
  r"""Centered RMSprop: divide by an estimate of the gradient's standard deviation.

  .. math::

    \bar g_t = \rho\,\bar g_{t-1} + (1-\rho)\, g_t, \quad
    v_t = \rho\, v_{t-1} + (1-\rho)\, g_t^2, \qquad
    u_t = g_t / \sqrt{v_t - \bar g_t^2 + \epsilon}

  (or :math:`g_t / (\sqrt{v_t - \bar g_t^2} + \epsilon)` with ``eps_in_sqrt=False``,
  PyTorch's ``RMSprop(centered=True)``). Arguments as :func:`scale_by_rms`.
  """
  _check_rms("scale_by_stddev", decay, eps, initial_scale)

  def init_fn(params):
    return ScaleByStddevState(
      count=zero_count(),
      mu=jax.tree.map(jnp.zeros_like, params),
      nu=jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params),
    )

  def update_fn(updates, state, params=None):
    del params
    mu = _ema(updates, state.mu, decay)
    nu = _ema(updates, state.nu, decay, _abs_sq)
    count = safe_increment(state.count) if bias_correction else state.count
    mu_hat = _debias(mu, decay, count) if bias_correction else mu
    nu_hat = _debias(nu, decay, count) if bias_correction else nu
    updates = jax.tree.map(lambda g, m, v: g * _rms_scale(v - _abs_sq(m), eps, eps_in_sqrt), updates, mu_hat, nu_hat)
    return updates, ScaleByStddevState(count=count, mu=mu, nu=nu)

  return transformation(init_fn, update_fn)


# ------------------------------------------------------------------------ Adam


class ScaleByAdamState(NamedTuple):
  """State of :func:`scale_by_adam`."""

  count: Array  # shape=(), dtype=jnp.int32: t - 1, the number of updates so far.
  mu: Any  # a pytree like params (dtype mu_dtype if given): first moment m_{t-1}
  nu: Any  # a pytree like params: second moment v_{t-1}


def scale_by_adam(
  b1: Any = 0.9,
  b2: Any = 0.999,
  eps: Any = 1e-8,
  eps_root: Any = 0.0,
  mu_dtype: Optional[Any] = None,
  *,
  nesterov: bool = False,
) -> GradientTransformation:
  r"""Adam's direction: bias-corrected first moment over the root of the second.

  .. math::

    m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \\
    \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
    u_t = \frac{\hat m_t}{\sqrt{\hat v_t + \bar\epsilon} + \epsilon}.

  With ``nesterov=True`` (NAdam, Dozat 2016),
  :math:`\hat m_t = \beta_1 \frac{m_t}{1-\beta_1^{t+1}} + (1-\beta_1)\frac{g_t}{1-\beta_1^t}`.

  Args:
    b1: :math:`\beta_1 \in [0, 1)`, decay of the first moment.
    b2: :math:`\beta_2 \in [0, 1)`, decay of the second moment.
    eps: :math:`\epsilon \ge 0`, added *outside* the square root (PyTorch's ``eps`` too).
    eps_root: :math:`\bar\epsilon \ge 0`, added *inside* the root (keeps the
      gradient of the update finite when differentiating through Adam).
    mu_dtype: dtype of :math:`m` (e.g. ``jnp.bfloat16`` to save memory).
    nesterov: use Nesterov momentum (NAdam).

  .. warning::
    Keras' ``epsilon`` is the paper's ":math:`\hat\epsilon`": Keras computes
    :math:`\eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\, m_t / (\sqrt{v_t} + \hat\epsilon)`,
    which equals this rule with :math:`\epsilon = \hat\epsilon/\sqrt{1-\beta_2^t}`, a
    value that changes with :math:`t`. The two agree only when ``eps = 0`` or
    when :math:`\sqrt{\hat v_t} \gg \epsilon`. PyTorch's ``eps`` is this ``eps``.
  """
  check_range("scale_by_adam", "b1", b1, 0.0, 1.0)
  check_range("scale_by_adam", "b2", b2, 0.0, 1.0)
  check_range("scale_by_adam", "eps", eps, 0.0)
  check_range("scale_by_adam", "eps_root", eps_root, 0.0)
  mu_dtype = _canonical_dtype(mu_dtype)

  def init_fn(params):
    mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype), params)
    nu = jax.tree.map(jnp.zeros_like, params)
    return ScaleByAdamState(count=zero_count(), mu=mu, nu=nu)

  def update_fn(updates, state, params=None):
    del params
    mu = _ema(updates, state.mu, b1)
    nu = _ema(updates, state.nu, b2, _abs_sq)
    count = safe_increment(state.count)
    if nesterov:
      mu_hat = jax.tree.map(
        lambda m, g: b1 * m + (1 - b1) * g, _debias(mu, b1, safe_increment(count)), _debias(updates, b1, count)
      )
    else:
      mu_hat = _debias(mu, b1, count)
    nu_hat = _debias(nu, b2, count)
    updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
    nu = jax.tree.map(lambda new, old: new.astype(old.dtype), nu, state.nu)
    return updates, ScaleByAdamState(count=count, mu=_cast(mu, mu_dtype), nu=nu)

  return transformation(init_fn, update_fn)


# ---------------------------------------------------------------- weight decay


class AddDecayedWeightsState(NamedTuple):
  """State of :func:`add_decayed_weights` with a scheduled decay."""

  count: Array  # shape=(), dtype=jnp.int32: updates so far (the schedule's argument).


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0, mask: Any = None) -> GradientTransformation:
  r"""Add :math:`\lambda\,\theta_t` to the update: :math:`u = g + \lambda\,\theta_t`.

  *Where* it sits in a chain decides what it means:

  * before the optimizer's scaling (``chain(add_decayed_weights(wd), scale_by_adam(), lr)``)
    it is a coupled **L2 penalty** — the gradient of :math:`\frac\lambda2\|\theta\|^2` —
    and gets divided by Adam's :math:`\sqrt{\hat v}`: PyTorch's ``Adam(weight_decay=)``
    and ``SGD(weight_decay=)``;
  * after it (``chain(scale_by_adam(), add_decayed_weights(wd), lr)``) it is
    **decoupled weight decay**, :math:`\theta \leftarrow \theta - \eta\lambda\theta`:
    AdamW, PyTorch's ``AdamW``, and Keras' ``weight_decay`` on every optimizer.

  Args:
    weight_decay: :math:`\lambda \ge 0`, a float or a schedule ``count -> lambda``.
    mask: optional pytree of bools (same structure as, or a prefix of, params)
      or a callable ``params -> mask``; decay applies only where ``True``
      (e.g. to kernels but not to biases and norm scales).
  """
  check_range("add_decayed_weights", "weight_decay", weight_decay, 0.0)

  def init_fn(params):
    del params
    return AddDecayedWeightsState(count=zero_count()) if callable(weight_decay) else EmptyState()

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(
        "add_decayed_weights: update() needs params (weight decay adds lambda * params); "
        "call tx.update(grads, state, params)."
      )
    if callable(weight_decay):
      lam, state = weight_decay(state.count), AddDecayedWeightsState(count=safe_increment(state.count))
    else:
      lam = weight_decay
    if isinstance(lam, (int, float)) and lam == 0:
      return updates, state
    return jax.tree.map(lambda g, p: g + _times(lam, p), updates, params), state

  tx = transformation(init_fn, update_fn)
  if mask is None:
    return tx
  from dlfunc.optim._freeze import masked  # noqa: PLC0415 - _freeze imports this module's siblings

  return masked(tx, mask)


def momentum_or_identity(momentum: Any, nesterov: bool, accumulator_dtype: Any = None) -> GradientTransformation:
  """``trace(momentum, nesterov)`` or, when ``momentum is None``, the identity."""
  if momentum is None:
    if nesterov:
      raise ValueError("nesterov=True needs a momentum; pass e.g. momentum=0.9.")
    return identity()
  return trace(momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
