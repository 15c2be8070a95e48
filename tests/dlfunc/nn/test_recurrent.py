"""dlfunc.nn recurrent cells and unroll: parity with Keras 3 (JAX backend), a Python loop and
numerical gradients; compile cost independent of length; one-line errors.

Tolerance: rtol 1e-5, atol 1e-6 in float32 against Keras with copied weights.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jcore
from jax.test_util import check_grads

from dlfunc import nn

keras = pytest.importorskip("keras")
assert keras.backend.backend() == "jax", "conftest sets KERAS_BACKEND=jax"

RTOL, ATOL = 1e-5, 1e-6
N, T, F, H = 3, 7, 5, 4
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
KERAS_LAYER = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
KERAS_CELL = {"rnn": "SimpleRNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}


def _keras_weights(cell, rng, f=F, h=H):
  """Random weights in Keras' layout (non-zero biases, so bias handling is tested)."""
  g = GATES[cell] * h
  w = [rng.normal(0, 0.5, (f, g)), rng.normal(0, 0.5, (h, g)),
       rng.normal(0, 0.5, (2, g) if cell == "gru" else (g,))]
  return [a.astype(np.float32) for a in w]


def _keras_layer(cell, weights, f=F, **kw):
  layer = getattr(keras.layers, KERAS_LAYER[cell])(H, **kw)
  layer.build((None, T, f))
  layer.set_weights(weights)
  return layer


def _x(rng, n=N, t=T, f=F):
  return rng.normal(size=(n, t, f)).astype(np.float32)


def _mask(n=N, t=T):
  lengths = np.array([t, t - 3, 2])[:n]
  return np.arange(t)[None, :] < lengths[:, None]


def _close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)


# --- one step ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cell_matches_keras_cell(cell):
  rng = np.random.default_rng(0)
  w = _keras_weights(cell, rng)
  kcell = getattr(keras.layers, KERAS_CELL[cell])(H)
  kcell.build((None, F))
  kcell.set_weights(w)
  p = nn.from_keras(cell, w)
  x = rng.normal(size=(N, F)).astype(np.float32)
  h = rng.normal(size=(N, H)).astype(np.float32)
  c = rng.normal(size=(N, H)).astype(np.float32)
  if cell == "lstm":
    k_out, (k_h, k_c) = kcell(x, [h, c])
    (d_h, d_c), d_out = nn.lstm_cell(p, (jnp.asarray(h), jnp.asarray(c)), x)
    _close(d_c, k_c)
  else:
    k_out, k_state = kcell(x, [h])
    k_h = k_state[0] if isinstance(k_state, (list, tuple)) else k_state
    d_h, d_out = getattr(nn, f"{cell}_cell")(p, jnp.asarray(h), x)
  _close(d_out, k_out)
  _close(d_h, k_h)


# --- full unroll ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_unroll_matches_keras_layer(cell, return_sequences, masked):
  rng = np.random.default_rng(1)
  w = _keras_weights(cell, rng)
  layer = _keras_layer(cell, w, return_sequences=return_sequences, return_state=True)
  x = _x(rng)
  mask = _mask() if masked else None
  k_out, *k_state = layer(x, mask=mask)
  d_out, d_carry = nn.unroll(cell, nn.from_keras(cell, w), x, mask=mask, return_sequences=return_sequences)
  _close(d_out, k_out)
  d_state = d_carry if cell == "lstm" else (d_carry,)
  for a, b in zip(d_state, k_state):
    _close(a, b)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_unroll_initial_state_matches_keras(cell):
  rng = np.random.default_rng(2)
  w = _keras_weights(cell, rng)
  layer = _keras_layer(cell, w, return_sequences=True)
  x = _x(rng)
  states = [rng.normal(size=(N, H)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1)]
  k_out = layer(x, initial_state=states)
  carry = tuple(jnp.asarray(s) for s in states) if cell == "lstm" else jnp.asarray(states[0])
  d_out, _ = nn.unroll(cell, nn.from_keras(cell, w), x, initial_carry=carry)
  _close(d_out, k_out)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reverse_matches_keras_go_backwards(cell):
  rng = np.random.default_rng(3)
  w = _keras_weights(cell, rng)
  layer = _keras_layer(cell, w, return_sequences=True, go_backwards=True)
  x = _x(rng)
  k_out = np.asarray(layer(x))
  d_out, _ = nn.unroll(cell, nn.from_keras(cell, w), x, reverse=True)
  _close(d_out, k_out[:, ::-1])  # Keras returns processing order


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_bidirectional_matches_keras(cell, return_sequences, masked):
  rng = np.random.default_rng(4)
  wf, wb = _keras_weights(cell, rng), _keras_weights(cell, rng)
  layer = keras.layers.Bidirectional(getattr(keras.layers, KERAS_LAYER[cell])(H, return_sequences=return_sequences))
  layer.build((None, T, F))
  layer.set_weights(wf + wb)
  x = _x(rng)
  mask = _mask() if masked else None
  k_out = layer(x, mask=mask)
  params = {"forward": nn.from_keras(cell, wf), "backward": nn.from_keras(cell, wb)}
  d_out, _ = nn.bidirectional(cell, params, x, mask=mask, return_sequences=return_sequences)
  assert d_out.shape == k_out.shape
  _close(d_out, k_out)


@pytest.mark.parametrize("bidi", [False, True])
def test_stacked_matches_keras_sequential(bidi):
  rng = np.random.default_rng(5)
  layers, params, f = [], [], F
  for k in range(2):
    rs = k == 0
    ws = [_keras_weights("gru", rng, f=f) for _ in range(2 if bidi else 1)]
    inner = keras.layers.GRU(H, return_sequences=rs)
    layer = keras.layers.Bidirectional(inner) if bidi else inner
    layer.build((None, T, f))
    layer.set_weights(sum(ws, []))
    layers.append(layer)
    ps = [nn.from_keras("gru", w) for w in ws]
    params.append({"forward": ps[0], "backward": ps[1]} if bidi else ps[0])
    f = 2 * H if bidi else H
  x = _x(rng)
  k_out = x
  for layer in layers:
    k_out = layer(k_out)
  d_out, carries = nn.stacked("gru", params, x, return_sequences=False)
  _close(d_out, k_out)
  assert len(carries) == 2


# --- scan == loop, gradients, vmap, jit ---------------------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_python_loop(cell, reverse):
  key = jax.random.key(0)
  p = nn.init_cell(cell, key, F, H)
  p = {k: v + 0.1 * jax.random.normal(jax.random.fold_in(key, i), v.shape) for i, (k, v) in enumerate(p.items())}
  x = jax.random.normal(jax.random.key(1), (N, T, F))
  step = jax.jit(getattr(nn, f"{cell}_cell"))
  carry = nn.initial_carry(cell, (N,), H)
  outs = [None] * T
  for t in (reversed(range(T)) if reverse else range(T)):
    carry, outs[t] = step(p, carry, x[:, t])
  y, final = nn.unroll(cell, p, x, reverse=reverse)
  np.testing.assert_allclose(y, jnp.stack(outs, 1), rtol=1e-6, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(final), jax.tree_util.tree_leaves(carry)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradients_float64_five_steps(cell, x64):
  p = nn.init_cell(cell, jax.random.key(0), 3, 2, dtype=jnp.float64)
  p = {k: v + 0.1 for k, v in p.items()}
  x = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)
  mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)

  def f(p, x):
    y, _ = nn.unroll(cell, p, x, mask=mask)
    return jnp.sum(jnp.sin(y))
  check_grads(jax.jit(f), (p, x), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_masked_final_state_equals_truncated_sequence():
  p = nn.init_cell("lstm", jax.random.key(0), F, H)
  x = jax.random.normal(jax.random.key(1), (2, T, F))
  mask = jnp.arange(T)[None] < jnp.array([[T], [3]])
  _, (h, c) = nn.unroll("lstm", p, x, mask=mask)
  _, (h3, c3) = nn.unroll("lstm", p, x[1:, :3])
  np.testing.assert_allclose(h[1:], h3, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(c[1:], c3, rtol=1e-6, atol=1e-7)


def test_vmap_over_unbatched_sequences_and_jit():
  p = nn.init_cell("gru", jax.random.key(0), F, H)
  x = jax.random.normal(jax.random.key(1), (N, T, F))
  batched, _ = nn.unroll("gru", p, x)
  vmapped, _ = jax.vmap(lambda s: nn.unroll("gru", p, s))(x)
  jitted, _ = jax.jit(lambda p, x: nn.unroll("gru", p, x))(p, x)
  np.testing.assert_allclose(vmapped, batched, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jitted, batched, rtol=1e-6, atol=1e-6)


def test_jaxpr_size_does_not_grow_with_length():
  p = nn.init_cell("lstm", jax.random.key(0), 8, 16)

  def count(jaxpr):  # equations, recursively through sub-jaxprs (the scan body)
    n = 0
    for eqn in jaxpr.eqns:
      n += 1
      for v in eqn.params.values():
        for sub in (v if isinstance(v, (list, tuple)) else [v]):
          if isinstance(sub, jcore.ClosedJaxpr):
            n += count(sub.jaxpr)
          elif isinstance(sub, jcore.Jaxpr):
            n += count(sub)
    return n

  sizes = [count(jax.make_jaxpr(lambda x: nn.unroll("lstm", p, x))(jnp.zeros((2, t, 8))).jaxpr) for t in (8, 512)]
  assert sizes[0] == sizes[1], sizes


def test_lstm_init_forget_bias_is_one():
  p = nn.init_cell("lstm", jax.random.key(0), 3, 4)
  np.testing.assert_array_equal(p["bias"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
  r = p["recurrent_kernel"]  # (4, 16), orthogonal rows
  np.testing.assert_allclose(r @ r.T, np.eye(4), atol=1e-5)


# --- errors ---------------------------------------------------------------------------------------------

def _one_line(excinfo, *needles):
  msg = str(excinfo.value)
  assert "\n" not in msg
  for s in needles:
    assert s in msg, msg


def test_error_unknown_cell():
  with pytest.raises(ValueError) as e:
    nn.unroll("lstmm", {}, jnp.zeros((1, 2, 3)))
  _one_line(e, "'lstmm'", "'rnn', 'lstm', 'gru'")


def test_error_wrong_rank():
  p = nn.init_cell("gru", jax.random.key(0), 3, 4)
  with pytest.raises(ValueError) as e:
    nn.unroll("gru", p, jnp.zeros((1, 2, 3, 4)))
  _one_line(e, "(1, 2, 3, 4)", "(batch, time, features)")


def test_error_wrong_feature_size():
  p = nn.init_cell("lstm", jax.random.key(0), 3, 4)
  with pytest.raises(ValueError) as e:
    nn.unroll("lstm", p, jnp.zeros((2, 5, 7)))
  _one_line(e, "7 features", "expects 3")
  with pytest.raises(ValueError) as e:
    nn.lstm_cell(p, nn.initial_carry("lstm", (2,), 4), jnp.zeros((2, 7)))
  _one_line(e, "7 features", "expects 3")


def test_error_mask_shape():
  p = nn.init_cell("rnn", jax.random.key(0), 3, 4)
  with pytest.raises(ValueError) as e:
    nn.unroll("rnn", p, jnp.zeros((2, 5, 3)), mask=jnp.ones((2, 4), bool))
  _one_line(e, "(2, 4)", "(2, 5)")


def test_error_carry_shape_and_keras_bias():
  p = nn.init_cell("gru", jax.random.key(0), 3, 4)
  with pytest.raises(ValueError) as e:
    nn.gru_cell(p, jnp.zeros((2, 5)), jnp.zeros((2, 3)))
  _one_line(e, "(2, 5)", "(2, 4)")
  with pytest.raises(ValueError) as e:
    nn.from_keras("gru", [np.zeros((3, 12)), np.zeros((4, 12)), np.zeros(12)])
  _one_line(e, "reset_after")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_no_implicit_dtype_promotion(cell, strict_promotion):
  p = nn.init_cell(cell, jax.random.key(0), F, H)
  x = jnp.ones((2, T, F))
  mask = jnp.arange(T)[None] < jnp.array([[T], [2]])
  y, _ = nn.unroll(cell, p, x, mask=mask)
  yb, _ = nn.bidirectional(cell, {"forward": p, "backward": p}, x, mask=mask, return_sequences=False)
  assert y.dtype == yb.dtype == jnp.float32 and yb.shape == (2, 2 * H)
