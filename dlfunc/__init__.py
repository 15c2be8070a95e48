"""dlfunc: a pure-functional deep-learning library and course module on JAX, Flax and optax."""

__version__ = "0.1.0"
