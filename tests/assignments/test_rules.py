"""Every rule an assignment's text states is checked by a PUBLIC test (issue 13, item 1).

One "rule breaker" per stated rule, derived from the reference solution: a Python `if` on a traced value,
NumPy on traced arrays, a fixed PRNG key, an unstable formula, a forbidden call, a Python loop instead of
`jax.lax.scan`. Each breaks a different function, so one `check` (public tests only, the student's own
command) per assignment judges them all: each must lose points, with feedback that names the rule.
"""
import re
import textwrap

import pytest

from autograder.authoring import _authoring
from autograder.grader import _registry
from autograder.grader._feedback import graded_callees
from autograder.grader._runner import grade_submission

IF_TRACED = "works eagerly but not under jax.jit"          # the worker's words for a trace failure
NUMPY_TRACED = "jax.jit"

# aid -> [(function, rule (a regex the feedback must contain), the breaking definition)]
RULE_BREAKERS = {
    "02": [
        ("mse", NUMPY_TRACED, """
            def mse(predictions, targets):
              return np.mean((np.asarray(predictions) - np.asarray(targets)) ** 2)   # NumPy on traced arrays
        """),
        ("binary_cross_entropy_with_logits", r"uses jax\.nn\.log_sigmoid", """
            def binary_cross_entropy_with_logits(logits, targets):
              return -jnp.mean(targets * jax.nn.log_sigmoid(logits) + (1 - targets) * jax.nn.log_sigmoid(-logits))
        """),
        ("softmax_cross_entropy", r"1e4|NaN/Inf", """
            def softmax_cross_entropy(logits, labels):
              p = jnp.exp(logits) / jnp.sum(jnp.exp(logits), axis=-1, keepdims=True)     # no max shift
              return -jnp.mean(jnp.log(jnp.take_along_axis(p, labels[..., None], axis=-1)))
        """),
        ("mlp_init", r"own key|split", """
            def mlp_init(key, sizes):
              out = []
              for n_in, n_out in zip(sizes[:-1], sizes[1:]):     # the same key for every layer
                lim = (6.0 / (n_in + n_out)) ** 0.5
                out.append({"w": jax.random.uniform(key, (n_in, n_out), jnp.float32, -lim, lim),
                            "b": jnp.zeros((n_out,), jnp.float32)})
              return out
        """),
        ("mlp_apply", IF_TRACED, """
            def mlp_apply(params, x):
              x = jnp.asarray(x)
              for layer in params[:-1]:
                x = x @ layer["w"] + layer["b"]
                if jnp.any(x < 0):                                # a Python if on a traced value
                  x = jnp.maximum(x, 0.0)
              return x @ params[-1]["w"] + params[-1]["b"]
        """),
    ],
    "03": [
        ("relu_backward", IF_TRACED, """
            def relu_backward(x, g):
              if jnp.all(x > 0):
                return g
              return jnp.where(x > 0, g, jnp.zeros((), g.dtype))
        """),
        ("dense_backward", r"uses jax\.vjp", """
            def dense_backward(params, x, g):
              out, f = jax.vjp(lambda p, x: x @ p["w"] + p["b"], params, x)
              return f(g)
        """),
        ("softmax_cross_entropy_backward", r"1e4|NaN/Inf", """
            def softmax_cross_entropy_backward(logits, labels, g=1.0):
              e = jnp.exp(logits)                                   # no max shift
              p = e / jnp.sum(e, axis=-1, keepdims=True)
              onehot = (labels[:, None] == jnp.arange(logits.shape[-1])).astype(p.dtype)
              return g * (p - onehot) / logits.shape[0]
        """),
        ("numerical_grad", r"float64", """
            def numerical_grad(f, x, eps=1e-6):
              f = PROBES[f] if isinstance(f, str) else f
              x = jnp.asarray(x)
              flat = []
              for i in range(x.size):
                e = jnp.zeros_like(x).reshape(-1).at[i].set(eps).reshape(x.shape)
                flat.append((f(x + e) - f(x - e)) / (2 * eps))
              return jnp.stack(flat).reshape(x.shape).astype(jnp.float32)   # drops the input's dtype
        """),
    ],
    "04": [
        ("momentum_update", NUMPY_TRACED, """
            def momentum_update(grads, state, params=None, *, lr=0.01, beta=0.9):
              velocity = jax.tree_util.tree_map(lambda g, v: np.asarray(g) + beta * np.asarray(v), grads, state)
              return jax.tree_util.tree_map(lambda v: -lr * v, velocity), velocity
        """),
        ("adam_update", r"int32", """
            _adam_update = adam_update
            def adam_update(grads, state, params=None, **kw):
              updates, new = _adam_update(grads, state, params, **kw)
              return updates, {**new, "count": new["count"].astype(jnp.float32)}    # count no longer int32
        """),
        ("rmsprop_update", r"uses optax", """
            def rmsprop_update(grads, state, params=None, *, lr=0.01, decay=0.9, eps=1e-8):
              import optax
              return optax.rmsprop(lr, decay, eps).update(grads, state)
        """),
    ],
    "05": [
        ("dropout", r"different key|fixed jax\.random\.key", """
            def dropout(key, x, rate, train=True):
              x = jnp.asarray(x)
              if not train:
                return x
              keep = jax.random.bernoulli(jax.random.key(0), 1.0 - rate, x.shape)   # ignores key
              return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)).astype(x.dtype)
        """),
        ("batch_norm", IF_TRACED, """
            _batch_norm = batch_norm
            def batch_norm(x, gamma, beta, running_mean, running_var, train, momentum=0.99, eps=1e-5):
              if jnp.any(running_var < 0):
                raise ValueError("negative variance")
              return _batch_norm(x, gamma, beta, running_mean, running_var, train, momentum, eps)
        """),
        ("layer_norm", r"eps|NaN/Inf", """
            def layer_norm(x, gamma, beta, eps=1e-5):
              mean = jnp.mean(x, axis=-1, keepdims=True)
              return gamma * (x - mean) / jnp.std(x, axis=-1, keepdims=True) + beta     # no eps at all
        """),
    ],
    "06": [
        ("conv2d_naive", r"uses jax\.lax\.conv_general_dilated", """
            def conv2d_naive(params, x, strides=(1, 1), padding=((0, 0), (0, 0))):
              y = jax.lax.conv_general_dilated(x, params["kernel"], strides, padding,
                                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
              return y + params["bias"]
        """),
        ("max_pool2d", r"-inf", """
            def max_pool2d(x, window=2, strides=None, padding="VALID"):
              window = (window, window) if isinstance(window, int) else tuple(window)
              strides = window if strides is None else ((strides,) * 2 if isinstance(strides, int) else tuple(strides))
              return jax.lax.reduce_window(x, 0.0, jax.lax.max, (1, *window, 1), (1, *strides, 1), padding.upper())
        """),
        ("cnn_init", r"different key|fixed jax\.random\.key", """
            def cnn_init(key):
              return CNN().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1), jnp.float32))
        """),
        ("cnn_apply", NUMPY_TRACED, """
            def cnn_apply(variables, x):
              return CNN().apply(variables, np.asarray(x, np.float32))
        """),
    ],
    "07": [
        ("rnn_step", NUMPY_TRACED, """
            def rnn_step(params, h, x):
              h = np.tanh(np.asarray(x) @ params["kernel"] + np.asarray(h) @ params["recurrent_kernel"]
                          + params["bias"])
              return h, h
        """),
        ("lstm_step", r"uses jax\.nn\.sigmoid", """
            def lstm_step(params, carry, x):
              h, c = carry
              i, f, g, o = jnp.split(x @ params["kernel"] + h @ params["recurrent_kernel"] + params["bias"], 4, -1)
              c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
              h = jax.nn.sigmoid(o) * jnp.tanh(c)
              return (h, c), h
        """),
        ("gru_step", r"saturate|NaN/Inf", """
            def gru_step(params, h, x):
              sig = lambda z: jnp.exp(z) / (1.0 + jnp.exp(z))      # inf / inf at z = 100
              xz, xr, xn = jnp.split(x @ params["kernel"] + params["bias"], 3, axis=-1)
              hz, hr, hn = jnp.split(h @ params["recurrent_kernel"] + params["recurrent_bias"], 3, axis=-1)
              z, r = sig(xz + hz), sig(xr + hr)
              n = jnp.tanh(xn + r * hn)
              h = z * h + (1.0 - z) * n
              return h, h
        """),
        ("unroll", r"jax\.lax\.scan", """
            def unroll(step, params, xs, h0):
              step = globals()[step] if isinstance(step, str) else step
              carry, ys = h0, []
              for t in range(xs.shape[0]):                         # a Python loop over time
                carry, y = step(params, carry, xs[t])
                ys.append(y)
              return carry, jnp.stack(ys)
        """),
    ],
    "08": [
        ("anomaly_scores", NUMPY_TRACED, """
            def anomaly_scores(params, x):
              x = np.asarray(x)
              err = (np.asarray(decode(params, encode(params, x))) - x) ** 2
              return err.reshape(x.shape[0], -1).mean(axis=1)
        """),
        ("pca_reconstruct", r"uses sklearn", """
            def pca_reconstruct(x_train, x, rank):
              from sklearn.decomposition import PCA
              p = PCA(rank).fit(np.asarray(x_train).reshape(len(x_train), -1))
              return p.inverse_transform(p.transform(np.asarray(x).reshape(len(x), -1))).reshape(x.shape)
        """),
    ],
    "09": [
        ("residual_block", NUMPY_TRACED, """
            _residual_block = residual_block
            def residual_block(variables, x):
              return np.asarray(_residual_block(variables, np.asarray(x)))
        """),
        ("self_attention", IF_TRACED, """
            _self_attention = self_attention
            def self_attention(params, h, mask, num_heads):
              if jnp.all(mask > 0):
                mask = jnp.ones_like(mask)
              return _self_attention(params, h, mask, num_heads)
        """),
        ("encoder_layer", r"GELU|gelu", """
            def encoder_layer(params, h, mask, num_heads):
              def layer_norm(name, u):
                mean = u.mean(axis=-1, keepdims=True)
                var = ((u - mean) ** 2).mean(axis=-1, keepdims=True)
                return (u - mean) * jax.lax.rsqrt(var + 1e-12) * params[name]["scale"] + params[name]["bias"]
              h1 = layer_norm("attention_norm", h + self_attention(params, h, mask, num_heads))
              inter = jax.nn.gelu(h1 @ params["intermediate"]["kernel"] + params["intermediate"]["bias"])  # tanh approx
              return layer_norm("output_norm", h1 + inter @ params["output"]["kernel"] + params["output"]["bias"])
        """),
    ],
    "10": [
        ("torch_linear_to_dlfunc", r"uses torch", """
            def torch_linear_to_dlfunc(weight, bias):
              import torch
              return {"kernel": torch.as_tensor(weight).T.numpy(), "bias": bias}
        """),
    ],
}


def _source(aid: str, overrides: str) -> str:
  a = _registry.load_assignment(aid)
  return (_authoring.module_source(a.source, True, aid) + "\nimport numpy as np\n\n" + overrides)


def _overrides(aid: str) -> str:
  return "\n\n".join(textwrap.dedent(code).strip() for _, _, code in RULE_BREAKERS[aid]) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("aid", sorted(RULE_BREAKERS))
def test_each_stated_rule_costs_public_points_and_is_named(aid, tmp_path):
  path = tmp_path / f"{aid}_rule_breakers.py"
  path.write_text(_source(aid, _overrides(aid)))
  report = grade_submission(aid, path, hidden=False)      # what `autograder check` runs: public tests only
  by_fn = report.by_function()
  for fn, rule, _ in RULE_BREAKERS[aid]:
    got, most = by_fn[fn]
    assert got < most, f"{aid} {fn}: breaking '{rule}' still scores {got}/{most} publicly"
    feedback = "\n".join([t.name + "\n" + t.output for t in report.tests if t.function == fn and t.score < t.max_score]
                         + [n for n in report.notes if n.startswith(fn + " ")])
    assert re.search(rule, feedback), f"{aid} {fn}: no feedback names the rule /{rule}/:\n{feedback}"
  broken = {fn for fn, _, _ in RULE_BREAKERS[aid]}
  callees = graded_callees([{"source": path.read_text()}], list(by_fn))
  for f in set(by_fn) - broken:
    failed_callees = [g for g in callees[f] if g in broken]
    if not failed_callees:   # the other functions keep full marks
      assert by_fn[f][0] == by_fn[f][1], (aid, f, [(t.name, t.output) for t in report.tests if t.function == f])
    for t in report.tests:   # a function that calls a broken one is told to fix that one first
      if t.function == f and t.score < t.max_score:
        assert t.output.startswith("fix `"), (aid, t.name, t.output)
        assert any(f"`{g}`" in t.output.splitlines()[0] for g in failed_callees), (aid, t.name, t.output)


@pytest.mark.slow
def test_assignment_10_allows_numpy_everywhere(tmp_path):
  """10's text allows NumPy: an all-NumPy solution gets full marks, hidden tests included."""
  a = _registry.load_assignment("10")
  src = _authoring.module_source(a.source, True, "10") + textwrap.dedent("""
      import numpy as np

      def nchw_to_nhwc(x):
        return np.transpose(np.asarray(x), (0, 2, 3, 1))

      def torch_linear_to_dlfunc(weight, bias):
        return {"kernel": np.asarray(weight).T.copy(), "bias": np.asarray(bias)}

      def torch_conv2d_to_dlfunc(weight, bias):
        return {"kernel": np.transpose(np.asarray(weight), (2, 3, 1, 0)), "bias": np.asarray(bias)}

      def keras_dense_to_dlfunc(weights):
        return {"kernel": np.asarray(weights[0]), "bias": np.asarray(weights[1])}
  """)
  path = tmp_path / "numpy10.py"
  path.write_text(src)
  report = grade_submission("10", path)
  assert report.score == report.max_score, [(t.name, t.output) for t in report.tests if t.score < t.max_score]


def test_stub_docstring_carries_the_rules():
  for aid in ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10"):
    a = _registry.load_assignment(aid)
    stub = _authoring.module_source(a.source, False, aid)
    doc = stub.split('"""')[1]
    assert "**Rules.**" in doc and "public test" in doc, aid
    compile(stub, f"{aid}.py", "exec")


def test_03_no_longer_claims_zeros_is_float32():
  text = _registry.load_assignment("03").source.read_text()
  assert "`jnp.zeros(x.shape)` (float32)" not in text
  assert "float64 only while x64 is on" in text


def _solution_lines_in_hints(aid):
  """(function, hint) pairs whose hint contains a line of the solution (whitespace and `return` ignored)."""
  nb = _authoring.instructor_notebook(_registry.load_assignment(aid).source)
  out = []
  for c in nb.cells:
    if not c.metadata.get("nbgrader", {}).get("solution"):
      continue
    lines = c.source.split("\n")
    for i, line in enumerate(lines):
      if _authoring.BEGIN_SOLUTION in line and i and _authoring._HINT.match(lines[i - 1]):
        hint = re.sub(r"\s+", "", _authoring._HINT.match(lines[i - 1]).group(1))
        end = next(j for j in range(i, len(lines)) if _authoring.END_SOLUTION in lines[j])
        body = [re.sub(r"\s+", "", re.sub(r"^\s*return\s+", "", s)) for s in lines[i + 1:end] if s.strip()]
        if any(len(s) > 8 and s in hint for s in body):
          out.append((c.metadata["nbgrader"]["grade_id"], lines[i - 1].strip()))
  return out


def test_hints_explain_without_handing_over_a_solution_line():
  for aid in ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10"):
    assert _solution_lines_in_hints(aid) == [], aid
