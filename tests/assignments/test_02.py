"""Assignment 02 (losses, first training loop): its graded tests tell right from wrong.

The generic checks (reference 100 %, blank 0 %, hostile submissions) run for
every assignment elsewhere; here: typical student mistakes lose exactly the
points of the function they are in, and the training check judges the
returned parameters.
"""
import textwrap

import pytest

from autograder.authoring import _authoring
from _assignment_helpers import Reference

R = Reference("02")


def test_sum_instead_of_mean_loses_the_mse_tests():
  got = R.scores(R.namespace("""
      def mse(predictions, targets):
        return jnp.sum(jnp.square(predictions - targets))
  """), "mse")
  assert got == {"test_mse_values": 0, "test_mse_grad": 0, "test_mse_jit": 0}


def test_naive_bce_fails_only_at_extreme_logits():
  got = R.scores(R.namespace("""
      def binary_cross_entropy_with_logits(logits, targets):
        p = 1 / (1 + jnp.exp(-logits))
        return -jnp.mean(targets * jnp.log(p) + (1 - targets) * jnp.log(1 - p))
  """), "binary_cross_entropy_with_logits")
  assert got["test_bce_values"] == 1 and got["test_bce_jit"] == 1
  assert got["test_bce_extreme"] == 0 and got["test_bce_grad"] == 0


def test_log_of_softmax_fails_only_at_extreme_logits():
  got = R.scores(R.namespace("""
      def softmax_cross_entropy(logits, labels):
        e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
        p = e / jnp.sum(e, axis=-1, keepdims=True)
        return -jnp.mean(jnp.log(jnp.take_along_axis(p, labels[:, None], axis=-1)))
  """), "softmax_cross_entropy")
  assert got["test_sce_values"] == 1 and got["test_sce_grad"] == 1
  assert got["test_sce_extreme"] == 0 and got["test_sce_extreme_grad"] == 0


def test_one_key_for_every_layer_is_caught():
  got = R.scores(R.namespace("""
      def mlp_init(key, sizes):
        out = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
          limit = (6.0 / (n_in + n_out)) ** 0.5
          out.append({"w": jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit),
                      "b": jnp.zeros((n_out,), jnp.float32)})
        return out
  """), "mlp_init")
  assert got == {"test_mlp_init_structure": 1, "test_mlp_init_glorot": 1, "test_mlp_init_prng": 1,
                 "test_mlp_init_layers_differ": 0}


def test_relu_on_the_output_layer_is_caught():
  got = R.scores(R.namespace("""
      def mlp_apply(params, x):
        for layer in params:
          x = jnp.maximum(x @ layer["w"] + layer["b"], 0.0)
        return x
  """), "mlp_apply")
  assert sum(got.values()) == 0


@pytest.mark.parametrize("update", ["p + lr * g", "p"])
def test_training_check_judges_the_returned_parameters(update):
  ns = R.namespace(f"""
      def sgd_train_step(params, batch, lr):
        x, labels = batch
        grads = jax.grad(lambda p: softmax_cross_entropy(mlp_apply(p, x), labels))(params)
        return jax.tree_util.tree_map(lambda p, g: {update}, params, grads)
  """)
  frac, status, msg = R.run(ns, "test_sgd_step_learns_digits")
  assert frac == 0 and msg.startswith("sgd_train_step: after 440 jitted steps"), msg
  assert "test accuracy" in msg or "diverged" in msg, msg


@pytest.mark.slow
def test_standalone_one_wrong_function_loses_exactly_its_points(tmp_path):
  from autograder import grade_submission
  a = R.assignment
  src = _authoring.module_source(a.source, True, R.aid) + textwrap.dedent("""

      def l2_penalty(params, scale=1.0):
        return scale * sum(jnp.sum(jnp.abs(w)) for w in jax.tree_util.tree_leaves(params))
  """)
  path = tmp_path / "one_wrong.py"
  path.write_text(src)
  report = grade_submission(R.aid, path, total_timeout=600)
  by = report.by_function()
  assert by["l2_penalty"] == (0.0, 3.0)
  assert report.score == report.max_score - 3, [(t.name, t.output) for t in report.tests if t.score < t.max_score]
