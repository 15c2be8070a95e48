"""Assignment 05 (regularization, dropout, normalization): its graded tests tell right from wrong.

The generic checks (reference 100 %, blank 0 %, hostile submissions) run for
every assignment elsewhere; here: typical student mistakes lose exactly the
points of the function they are in, and the overfitting experiment fails
a step that does not regularize.
"""


from _assignment_helpers import Reference

R = Reference("05")


def test_dropout_without_rescaling_is_caught():
  got = R.scores(R.namespace("""
      def dropout(key, x, rate, train=True):
        if not train:
          return x
        return jnp.where(jax.random.bernoulli(key, 1.0 - rate, x.shape), x, 0.0)
  """), "dropout")
  assert got["test_dropout_eval_identity"] == 1 and got["test_dropout_same_key_same_mask"] == 1
  assert got["test_dropout_kept_fraction"] == 0 and got["test_dropout_expectation"] == 0
  assert got["test_dropout_grad"] == 0


def test_rate_as_keep_probability_is_caught():
  got = R.scores(R.namespace("""
      def dropout(key, x, rate, train=True):
        if not train:
          return x
        return jnp.where(jax.random.bernoulli(key, rate, x.shape), x / rate, 0.0)
  """), "dropout")
  assert got["test_dropout_kept_fraction"] == 0


def test_a_fixed_dropout_key_is_caught():
  got = R.scores(R.namespace("""
      def dropout(key, x, rate, train=True):
        if not train:
          return x
        keep = jax.random.bernoulli(jax.random.key(0), 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), 0.0)
  """), "dropout")
  assert got["test_dropout_same_key_same_mask"] == 0
  assert got["test_dropout_kept_fraction"] == 1


def test_pytorch_momentum_convention_fails_the_running_statistics():
  got = R.scores(R.namespace("""
      def batch_norm(x, gamma, beta, running_mean, running_var, train, momentum=0.99, eps=1e-5):
        if not train:
          return gamma * (x - running_mean) / jnp.sqrt(running_var + eps) + beta, running_mean, running_var
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axes), x.var(axes)
        y = gamma * (x - mean) / jnp.sqrt(var + eps) + beta
        return y, (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var
  """), "batch_norm")
  assert got["test_bn_train"] == 0 and got["test_bn_images"] == 0 and got["test_bn_momentum_eps"] == 1
  assert got["test_bn_eval"] == 1 and got["test_bn_grad_eval"] == 1


def test_batch_statistics_at_inference_are_caught():
  got = R.scores(R.namespace("""
      def batch_norm(x, gamma, beta, running_mean, running_var, train, momentum=0.99, eps=1e-5):
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axes), x.var(axes)
        y = gamma * (x - mean) / jnp.sqrt(var + eps) + beta
        if not train:
          return y, running_mean, running_var
        return y, momentum * running_mean + (1 - momentum) * mean, momentum * running_var + (1 - momentum) * var
  """), "batch_norm")
  assert got["test_bn_eval"] == 0 and got["test_bn_grad_eval"] == 0
  assert got["test_bn_train"] == 1 and got["test_bn_grad_train"] == 2


def test_layer_norm_over_the_batch_axis_is_caught():
  got = R.scores(R.namespace("""
      def layer_norm(x, gamma, beta, eps=1e-5):
        mean = x.mean(0, keepdims=True)
        var = ((x - mean) ** 2).mean(0, keepdims=True)
        return gamma * (x - mean) / jnp.sqrt(var + eps) + beta
  """), "layer_norm")
  assert got["test_ln_values"] == 0 and got["test_ln_sequence"] == 0 and got["test_ln_grad"] == 0
  assert got["test_ln_vmap"] == 1   # per example (under vmap) axis 0 *is* the feature axis


def test_a_step_that_ignores_l2_and_rate_fails_the_experiment():
  ns = R.namespace("""
      def regularized_train_step(params, batch, lr, l2, rate):
        x, labels, key = batch
        def loss_fn(p):
          h = x
          for layer in p[:-1]:
            h = jnp.maximum(h @ layer["w"] + layer["b"], 0.0)
          return cross_entropy(h @ p[-1]["w"] + p[-1]["b"], labels)
        g = jax.grad(loss_fn)(params)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, g)
  """)
  frac, _, msg = R.run(ns, "test_step_regularization_narrows_the_gap")
  assert frac == 0 and "should narrow the gap" in msg, msg
  assert R.run(ns, "test_step_l2_no_dropout")[0] == 0
