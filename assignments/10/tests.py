"""Graded tests for assignment 10: porting Keras and PyTorch weights to dlfunc.

``fixtures.npz`` (made once by ``record_fixtures.py``) holds the trained Keras
seed MLP and PyTorch seed MLP/CNN weights with the logits each framework
computed. The student's converted weights are judged here, in the trusted
process, with dlfunc's own models (``dlfunc.models.MLP`` / ``CNN``): they must
reproduce the recorded logits. See autograder/AUTHORING.md.
"""
import functools
import pathlib

import jax
import numpy as np

import dlfunc.data as data
import dlfunc.models as models
import dlfunc.nn as ref
from autograder import checks as C
from autograder import hidden, points

FUNCTIONS = ("keras_dense_to_dlfunc", "torch_linear_to_dlfunc", "torch_conv2d_to_dlfunc", "nchw_to_nhwc",
             "port_keras_mlp", "port_torch_mlp", "port_torch_cnn")
_FRAMEWORKS = ("torch", "keras", "tensorflow", "flax")
FORBIDDEN = {f: _FRAMEWORKS for f in FUNCTIONS}

HERE = pathlib.Path(__file__).resolve().parent
LOGIT_TOL = dict(rtol=1e-4, atol=1e-4)   # float32 logits from another framework's kernels


@functools.lru_cache(maxsize=None)
def fixtures():
  with np.load(HERE / "fixtures.npz") as f:
    return {k: f[k] for k in f.files}


def keras_weights():
  f = fixtures()
  return [f[f"keras_mlp_w{i}"] for i in range(4)]


def state_dict(model):
  f = fixtures()
  return {k[len(model) + 1:]: v for k, v in f.items() if k.startswith(model + ".")}


def judge_variables(got, model, x, expected, what):
  """Run dlfunc's ``model`` with the student's variables on ``x``; compare with the recorded logits."""
  module = {"mlp": models.MLP(), "cnn": models.CNN()}[model]
  want = jax.tree_util.tree_map(np.shape, module.init(jax.random.key(0), x[:1]))
  C.keys_are(got, {"params"}, what)
  C.keys_are(got["params"], set(want["params"]), f"{what}['params']")
  for layer, leaves in want["params"].items():
    C.keys_are(got["params"][layer], set(leaves), f"{what}['params'][{layer!r}]")
    for k, shape in leaves.items():
      C.shape_dtype(got["params"][layer][k], shape, np.float32, f"{what}['params'][{layer!r}][{k!r}]")
  return np.asarray(module.apply(got, x))

# ---------------------------------------------------------------- single layers


@points(1)
def test_keras_dense_to_dlfunc_fixture(sub):
  """keras_dense_to_dlfunc: the Keras MLP's first Dense layer becomes {'kernel', 'bias'} unchanged"""
  w = keras_weights()[:2]
  C.matches(sub, "keras_dense_to_dlfunc", lambda ws: {"kernel": ws[0], "bias": ws[1]}, w)


@points(1)
@hidden
def test_keras_dense_to_dlfunc_output(sub):
  """keras_dense_to_dlfunc: dlfunc's dense with the result computes x @ kernel + bias for a (5, 3) layer"""
  w = [C.normal(1, (5, 3)), C.normal(2, (3,))]
  p = sub.keras_dense_to_dlfunc(w)
  x = C.normal(3, (4, 5))
  C.keys_are(p, {"kernel", "bias"}, "keras_dense_to_dlfunc([kernel (5, 3), bias (3,)])")
  C.allclose(np.asarray(ref.dense(p, x)), x @ w[0] + w[1], "dense(keras_dense_to_dlfunc(w), x)", **LOGIT_TOL)


def torch_linear(weight, bias, x):
  return x @ weight.T + bias


@points(1)
def test_torch_linear_to_dlfunc_fixture(sub):
  """torch_linear_to_dlfunc: the PyTorch MLP's fc1 (weight (128, 64)) becomes kernel (64, 128)"""
  sd = state_dict("torch_mlp")
  C.matches(sub, "torch_linear_to_dlfunc", lambda w, b: {"kernel": w.T, "bias": b}, sd["fc1.weight"], sd["fc1.bias"])


@points(2)
@hidden
def test_torch_linear_to_dlfunc_square(sub):
  """torch_linear_to_dlfunc: a square (4, 4) Linear gives PyTorch's outputs (a missing transpose keeps the shape)"""
  w, b, x = C.normal(4, (4, 4)), C.normal(5, (4,)), C.normal(6, (3, 4))
  p = sub.torch_linear_to_dlfunc(w, b)
  C.keys_are(p, {"kernel", "bias"}, "torch_linear_to_dlfunc(weight (4, 4), bias (4,))")
  C.allclose(np.asarray(ref.dense(p, x)), torch_linear(w, b, x),
             "dlfunc dense with torch_linear_to_dlfunc(weight (4, 4), bias) vs x @ weight.T + bias", **LOGIT_TOL)


def torch_conv(weight, bias, x_nchw):
  """PyTorch's Conv2d (stride 1, no padding) in its own layouts, via XLA with OIHW/NCHW dimension numbers."""
  y = jax.lax.conv_general_dilated(x_nchw, weight, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
  return np.asarray(y + bias[None, :, None, None])


@points(1)
def test_torch_conv2d_to_dlfunc_fixture(sub):
  """torch_conv2d_to_dlfunc: the PyTorch CNN's conv1 (32, 1, 3, 3) becomes kernel (3, 3, 1, 32)"""
  sd = state_dict("torch_cnn")
  C.matches(sub, "torch_conv2d_to_dlfunc", lambda w, b: {"kernel": w.transpose(2, 3, 1, 0), "bias": b},
            sd["conv1.weight"], sd["conv1.bias"])


@points(2)
@hidden
def test_torch_conv2d_to_dlfunc_output(sub):
  """torch_conv2d_to_dlfunc: a (4, 2, 3, 2) Conv2d gives PyTorch's feature maps on NHWC input"""
  w, b, x = C.normal(7, (4, 2, 3, 2)), C.normal(8, (4,)), C.normal(9, (2, 2, 6, 5))
  p = sub.torch_conv2d_to_dlfunc(w, b)
  C.keys_are(p, {"kernel", "bias"}, "torch_conv2d_to_dlfunc(weight (4, 2, 3, 2), bias (4,))")
  C.shape_dtype(p["kernel"], (3, 2, 2, 4), np.float32, "torch_conv2d_to_dlfunc(weight (4, 2, 3, 2), bias)['kernel']")
  got = np.asarray(ref.conv2d(p, x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
  C.allclose(got, torch_conv(w, b, x), "dlfunc conv2d with the converted kernel (back in NCHW) vs PyTorch's Conv2d",
             **LOGIT_TOL)


@points(1)
def test_nchw_to_nhwc_fixture(sub):
  """nchw_to_nhwc: the recorded PyTorch batch (32, 1, 8, 8) becomes the (32, 8, 8, 1) digits"""
  C.matches(sub, "nchw_to_nhwc", lambda x: x.transpose(0, 2, 3, 1), fixtures()["x_nchw"])


@points(1)
@hidden
def test_nchw_to_nhwc_channels(sub):
  """nchw_to_nhwc: (2, 3, 4, 5) with 3 channels becomes (2, 4, 5, 3), and (1, 2, 3, 3) becomes (1, 3, 3, 2)"""
  x, y = C.normal(10, (2, 3, 4, 5)), C.normal(11, (1, 2, 3, 3))
  return C.each(lambda: C.matches(sub, "nchw_to_nhwc", lambda a: a.transpose(0, 2, 3, 1), x),
                lambda: C.matches(sub, "nchw_to_nhwc", lambda a: a.transpose(0, 2, 3, 1), y))

# ---------------------------------------------------------------- whole models


@points(2)
def test_port_keras_mlp_logits(sub):
  """port_keras_mlp: dlfunc's MLP with the ported weights gives Keras' recorded logits on 32 digits"""
  f = fixtures()
  got = sub.port_keras_mlp(keras_weights())
  logits = judge_variables(got, "mlp", f["x_nhwc"], f["keras_mlp_logits"], "port_keras_mlp(weights)")
  C.allclose(logits, f["keras_mlp_logits"], "dlfunc MLP logits with port_keras_mlp(weights) vs Keras", **LOGIT_TOL)


@points(1)
@hidden
def test_port_keras_mlp_accuracy(sub):
  """port_keras_mlp: the ported model keeps Keras' test accuracy on all 359 test digits"""
  f, test = fixtures(), data.load("digits", "test")
  v = sub.port_keras_mlp(keras_weights())
  acc = float(np.mean(judge_variables(v, "mlp", test.x, None, "port_keras_mlp(weights)").argmax(-1) == test.y))
  C.check(abs(acc - float(f["keras_mlp_accuracy"])) <= 1.5 / len(test.y),
          f"port_keras_mlp: ported accuracy {acc:.4f}, Keras measured {float(f['keras_mlp_accuracy']):.4f}.")


@points(2)
def test_port_torch_mlp_logits(sub):
  """port_torch_mlp: dlfunc's MLP with the ported weights gives PyTorch's recorded logits on 32 digits"""
  f = fixtures()
  got = sub.port_torch_mlp(state_dict("torch_mlp"))
  logits = judge_variables(got, "mlp", f["x_nhwc"], f["torch_mlp_logits"], "port_torch_mlp(state_dict)")
  C.allclose(logits, f["torch_mlp_logits"], "dlfunc MLP logits with port_torch_mlp(state_dict) vs PyTorch",
             **LOGIT_TOL)


@points(1)
@hidden
def test_port_torch_mlp_accuracy(sub):
  """port_torch_mlp: the ported model keeps PyTorch's test accuracy on all 359 test digits"""
  f, test = fixtures(), data.load("digits", "test")
  v = sub.port_torch_mlp(state_dict("torch_mlp"))
  acc = float(np.mean(judge_variables(v, "mlp", test.x, None, "port_torch_mlp(state_dict)").argmax(-1) == test.y))
  C.check(abs(acc - float(f["torch_mlp_accuracy"])) <= 1.5 / len(test.y),
          f"port_torch_mlp: ported accuracy {acc:.4f}, PyTorch measured {float(f['torch_mlp_accuracy']):.4f}.")


@points(3)
def test_port_torch_cnn_logits(sub):
  """port_torch_cnn: dlfunc's CNN on NHWC digits with the ported weights gives PyTorch's recorded logits"""
  f = fixtures()
  got = sub.port_torch_cnn(state_dict("torch_cnn"))
  logits = judge_variables(got, "cnn", f["x_nhwc"], f["torch_cnn_logits"], "port_torch_cnn(state_dict)")
  try:
    C.allclose(logits, f["torch_cnn_logits"], "dlfunc CNN logits with port_torch_cnn(state_dict) vs PyTorch",
               **LOGIT_TOL)
  except C.CheckFailed as e:
    conv_ok = np.allclose(got["params"]["Conv_0"]["kernel"], state_dict("torch_cnn")["conv1.weight"].transpose(2, 3, 1, 0))
    hint = (" Conv_0 is right, so look at Dense_0: PyTorch flattens (c, h, w), dlfunc (h, w, c)." if conv_ok else
            " Conv_0's kernel is not weight.transpose(2, 3, 1, 0).")
    raise C.CheckFailed(str(e) + hint) from None


@points(2)
@hidden
def test_port_torch_cnn_accuracy(sub):
  """port_torch_cnn: the ported CNN keeps PyTorch's test accuracy on all 359 test digits"""
  f, test = fixtures(), data.load("digits", "test")
  v = sub.port_torch_cnn(state_dict("torch_cnn"))
  acc = float(np.mean(judge_variables(v, "cnn", test.x, None, "port_torch_cnn(state_dict)").argmax(-1) == test.y))
  C.check(abs(acc - float(f["torch_cnn_accuracy"])) <= 1.5 / len(test.y),
          f"port_torch_cnn: ported accuracy {acc:.4f}, PyTorch measured {float(f['torch_cnn_accuracy']):.4f}. "
          "Check the flatten order of fc1's inputs.")
