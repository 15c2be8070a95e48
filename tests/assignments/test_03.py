"""Assignment 03 (backpropagation by hand): its graded tests tell right from wrong.

The generic checks (reference 100 %, blank 0 %, hostile submissions) run for
every assignment elsewhere; here: typical student mistakes lose exactly the
points of the function they are in; autodiff in a hand-written backward pass
is refused.
"""
import textwrap

import pytest

from autograder.authoring import _authoring
from _assignment_helpers import Reference

R = Reference("03")


def test_forward_differences_are_not_accurate_enough():
  got = R.scores(R.namespace("""
      def numerical_grad(f, x, eps=1e-6):
        f = PROBES[f] if isinstance(f, str) else f
        x = jnp.asarray(x)
        out = []
        for i in range(x.size):
          e = jnp.zeros_like(x).reshape(-1).at[i].set(eps).reshape(x.shape)
          out.append((f(x + e) - f(x)) / eps)
        return jnp.stack(out).reshape(x.shape)
  """), "numerical_grad")
  assert got["test_numgrad_uses_eps_centrally"] == 0
  assert got["test_numgrad_cubic"] == 0          # O(eps) error ~ 1e-6 > 1e-7


def test_relu_gradient_one_at_zero_loses_only_that_test():
  got = R.scores(R.namespace("""
      def relu_backward(x, g):
        return jnp.where(x >= 0, g, 0.0)
  """), "relu_backward")
  assert got == {"test_relu_backward_values": 1, "test_relu_backward_at_zero": 0, "test_relu_backward_jit": 1}


def test_bias_gradient_must_sum_over_the_batch():
  got = R.scores(R.namespace("""
      def dense_backward(params, x, g):
        return {"w": x.T @ g, "b": jnp.mean(g, axis=0)}, g @ params["w"].T
  """), "dense_backward")
  # A batch of one cannot tell a mean from a sum; every other test can.
  assert got == {"test_dense_backward_values": 0, "test_dense_backward_batch_of_one": 1,
                 "test_dense_backward_jit": 0}


def test_softmax_backward_without_the_batch_mean_fails():
  got = R.scores(R.namespace("""
      def softmax_cross_entropy_backward(logits, labels, g=1.0):
        e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
        p = e / jnp.sum(e, axis=-1, keepdims=True)
        return g * (p - jax.nn.one_hot(labels, logits.shape[-1], dtype=p.dtype))
  """), "softmax_cross_entropy_backward")
  assert sum(got.values()) == 0


def test_missing_relu_in_backward_pass_is_caught():
  got = R.scores(R.namespace("""
      def mlp_backward(params, x, y):
        inputs, h = [], jnp.asarray(x)
        for i, layer in enumerate(params):
          inputs.append(h)
          a = h @ layer["w"] + layer["b"]
          h = jnp.maximum(a, 0) if i < len(params) - 1 else a
        g = softmax_cross_entropy_backward(h, y)
        grads = [None] * len(params)
        for i in reversed(range(len(params))):
          grads[i], g = dense_backward(params[i], inputs[i], g)   # forgot relu_backward
        return grads
  """), "mlp_backward")
  assert got["test_mlp_backward_structure"] == 1
  assert got["test_mlp_backward_two_layers"] == 0 and got["test_mlp_backward_three_layers"] == 0


@pytest.mark.slow
def test_standalone_autodiff_in_mlp_backward_is_refused(tmp_path):
  from autograder import grade_submission
  a = R.assignment
  src = _authoring.module_source(a.source, True, R.aid) + textwrap.dedent("""

      def mlp_backward(params, x, y):
        def loss(p):
          h = x
          for layer in p[:-1]:
            h = jnp.maximum(h @ layer["w"] + layer["b"], 0)
          z = h @ p[-1]["w"] + p[-1]["b"]
          return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(len(y)), y])
        return jax.grad(loss)(params)
  """)
  path = tmp_path / "autodiff.py"
  path.write_text(src)
  report = grade_submission(R.aid, path, total_timeout=600)
  assert report.by_function()["mlp_backward"] == (0.0, 6.0)
  assert report.score == report.max_score - 6, [(t.name, t.output) for t in report.tests if t.score < t.max_score]
  assert any("mlp_backward uses jax.grad" in n or "mlp_backward uses jax.nn" in n for n in report.notes), report.notes
