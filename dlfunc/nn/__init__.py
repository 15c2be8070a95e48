"""dlfunc.nn: pure functions. Arrays in, arrays out; no hidden state."""

from dlfunc.nn._activations import elu, gelu, leaky_relu, log_softmax, logsumexp, relu, sigmoid, softmax, tanh
from dlfunc.nn._initializers import (
  glorot_normal,
  glorot_uniform,
  he_normal,
  he_uniform,
  kaiming_normal,
  kaiming_uniform,
  lecun_normal,
  lecun_uniform,
  ones,
  xavier_normal,
  xavier_uniform,
  zeros,
)
from dlfunc.nn._dense import dense
from dlfunc.nn._conv import conv, conv1d, conv2d
from dlfunc.nn._pooling import avg_pool, avg_pool1d, max_pool, max_pool1d
from dlfunc.nn._reshape import flatten
from dlfunc.nn._dropout import dropout
from dlfunc.nn._normalization import batch_norm, layer_norm
from dlfunc.nn._embedding import embedding
from dlfunc.nn._recurrent import (
  CELLS,
  bidirectional,
  gru_cell,
  init_cell,
  initial_carry,
  initial_carry_like,
  lstm_cell,
  orthogonal,
  rnn_cell,
  stacked,
  unroll,
)
from dlfunc.nn._recurrent_convert import from_keras, from_torch, from_torch_stack, to_keras

__all__ = [
  "relu",
  "sigmoid",
  "tanh",
  "softmax",
  "log_softmax",
  "logsumexp",
  "gelu",
  "leaky_relu",
  "elu",
  "glorot_uniform",
  "glorot_normal",
  "xavier_uniform",
  "xavier_normal",
  "he_uniform",
  "he_normal",
  "kaiming_uniform",
  "kaiming_normal",
  "lecun_uniform",
  "lecun_normal",
  "zeros",
  "ones",
  "dense",
  "conv",
  "conv2d",
  "max_pool",
  "avg_pool",
  "flatten",
  "dropout",
  "batch_norm",
  "layer_norm",
  "embedding",
  "conv1d",
  "max_pool1d",
  "avg_pool1d",
  "rnn_cell",
  "lstm_cell",
  "gru_cell",
  "unroll",
  "bidirectional",
  "stacked",
  "init_cell",
  "initial_carry",
  "initial_carry_like",
  "orthogonal",
  "CELLS",
  "from_keras",
  "to_keras",
  "from_torch",
  "from_torch_stack",
]
