"""Assignment 04 (optimizers): its graded tests tell right from wrong.

The generic checks (reference 100 %, blank 0 %, hostile submissions) run for
every assignment elsewhere; here: typical student mistakes lose exactly the
points of the function they are in; the epsilon/decay conventions are
visible in float64; a tampered Rosenbrock helper does not pass.
"""


from _assignment_helpers import Reference

R = Reference("04")


def test_averaged_momentum_fails_every_trajectory():
  got = R.scores(R.namespace("""
      def momentum_update(grads, state, params=None, *, lr=0.01, beta=0.9):
        v = jax.tree_util.tree_map(lambda g, v: (1 - beta) * g + beta * v, grads, state)
        return jax.tree_util.tree_map(lambda v: -lr * v, v), v
  """), "momentum_update")
  assert got["test_momentum_one_step"] == 0 and got["test_momentum_ten_steps"] == 0
  assert got["test_momentum_beta"] == 0


def test_rmsprop_eps_outside_the_sqrt_is_caught():
  got = R.scores(R.namespace("""
      def rmsprop_update(grads, state, params=None, *, lr=0.01, decay=0.9, eps=1e-8):
        nu = jax.tree_util.tree_map(lambda g, n: decay * n + (1 - decay) * g * g, grads, state)
        return jax.tree_util.tree_map(lambda g, n: -lr * g / (jnp.sqrt(n) + eps), grads, nu), nu
  """), "rmsprop_update")
  assert got["test_rmsprop_conventions"] == 0
  # With eps = 1e-8 the two conventions differ by ~1e-8 relative: above the float64 bar of 1e-10.
  assert got["test_rmsprop_one_step"] == 0
  assert got["test_rmsprop_rosenbrock"] == 1 and got["test_rmsprop_jit"] == 1


def test_adam_without_bias_correction_is_caught():
  got = R.scores(R.namespace("""
      def adam_update(grads, state, params=None, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        mu = jax.tree_util.tree_map(lambda g, m: b1 * m + (1 - b1) * g, grads, state["mu"])
        nu = jax.tree_util.tree_map(lambda g, n: b2 * n + (1 - b2) * g * g, grads, state["nu"])
        u = jax.tree_util.tree_map(lambda m, n: -lr * m / (jnp.sqrt(n) + eps), mu, nu)
        return u, {"count": state["count"] + 1, "mu": mu, "nu": nu}
  """), "adam_update")
  assert got["test_adam_first_step"] == 0 and got["test_adam_ten_steps"] == 0
  assert got["test_adam_count"] == 1          # the state itself is right


def test_returning_new_params_instead_of_updates_fails():
  got = R.scores(R.namespace("""
      def sgd_update(grads, state, params=None, *, lr=0.01):
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), state
  """), "sgd_update")
  assert sum(got.values()) == 0


def test_a_tampered_minimize_helper_does_not_pass():
  # A wrong update plus a helper that fakes a descent straight to (1, 1).
  ns = R.namespace("""
      def sgd_update(grads, state, params=None, *, lr=0.01):
        return jax.tree_util.tree_map(lambda g: 0.0 * g, grads), state

      def minimize(name, params, state, steps, hyper):
        t = jnp.linspace(0.0, 1.0, steps)
        xs, ys = -1.2 + 2.2 * t, 1.0 + 0.0 * t
        return ({"x": xs, "y": ys}, state), ({"x": jnp.float32(1.0), "y": jnp.float32(1.0)}, state)
  """)
  frac, _, msg = R.run(ns, "test_sgd_rosenbrock")
  assert frac == 0 and "is not what sgd_update gives" in msg, msg
