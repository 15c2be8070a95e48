"""dlfunc.nn recurrent layers against PyTorch nn.RNN / nn.LSTM / nn.GRU with weights copied by
``from_torch``: single and stacked layers, bidirectional, packed (variable-length) sequences.

Tolerance: rtol 1e-5, atol 1e-6 (float32). Skipped with a reason when torch is absent (conftest).
"""
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import nn

RTOL, ATOL = 1e-5, 1e-6
N, T, F, H = 3, 6, 5, 4
TORCH_CLS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _close(a, b):
  if hasattr(b, "detach"):
    b = b.detach().numpy()
  np.testing.assert_allclose(np.asarray(a), b, rtol=RTOL, atol=ATOL)


def _module(cell, **kw):
  import torch
  torch.manual_seed(0)
  return getattr(torch.nn, TORCH_CLS[cell])(F, H, batch_first=True, **kw)


@pytest.mark.torch
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cell_matches_torch_cell(cell):
  import torch
  torch.manual_seed(0)
  tcell = getattr(torch.nn, f"{TORCH_CLS[cell]}Cell")(F, H)
  sd = {f"{k}_l0": v for k, v in tcell.state_dict().items()}
  p = nn.from_torch(cell, sd)
  x, h, c = (torch.randn(N, d) for d in (F, H, H))
  with torch.no_grad():
    if cell == "lstm":
      th, tc = tcell(x, (h, c))
      (dh, dc), _ = nn.lstm_cell(p, (jnp.asarray(h.numpy()), jnp.asarray(c.numpy())), x.numpy())
      _close(dc, tc)
    else:
      th = tcell(x, h)
      dh, _ = getattr(nn, f"{cell}_cell")(p, jnp.asarray(h.numpy()), x.numpy())
  _close(dh, th)


@pytest.mark.torch
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_matches_torch(cell, bidirectional):
  import torch
  m = _module(cell, num_layers=2, bidirectional=bidirectional)
  x = torch.randn(N, T, F)
  with torch.no_grad():
    t_out, t_state = m(x)
  layers = nn.from_torch_stack(cell, m.state_dict(), num_layers=2, bidirectional=bidirectional)
  d_out, carries = nn.stacked(cell, layers, x.numpy())
  _close(d_out, t_out)
  # h_n is (num_layers * directions, N, H), layer-major then direction
  t_h = t_state[0] if cell == "lstm" else t_state
  d_h = []
  for c in carries:
    for d in (c if bidirectional else (c,)):
      d_h.append(d[0] if cell == "lstm" else d)
  _close(jnp.stack(d_h), t_h)


@pytest.mark.torch
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence_matches_masked_unroll(cell, bidirectional):
  import torch
  from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
  m = _module(cell, bidirectional=bidirectional)
  x = torch.randn(N, T, F)
  lengths = torch.tensor([T, 4, 2])
  mask = np.arange(T)[None] < lengths.numpy()[:, None]
  with torch.no_grad():
    packed, t_state = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    t_out, _ = pad_packed_sequence(packed, batch_first=True, total_length=T)
  layers = nn.from_torch_stack(cell, m.state_dict(), bidirectional=bidirectional)
  if bidirectional:
    d_out, (c_fw, c_bw) = nn.bidirectional(cell, layers[0], x.numpy(), mask=mask)
    finals = [c_fw, c_bw]
  else:
    d_out, c = nn.unroll(cell, layers[0], x.numpy(), mask=mask, zero_output_for_mask=True)
    finals = [c]
  _close(d_out, t_out)  # padded steps are zeros in both
  t_h = t_state[0] if cell == "lstm" else t_state
  _close(jnp.stack([f[0] if cell == "lstm" else f for f in finals]), t_h)


@pytest.mark.torch
def test_relu_rnn_matches_torch():
  import torch
  from dlfunc.nn import relu
  m = _module("rnn", nonlinearity="relu")
  x = torch.randn(N, T, F)
  with torch.no_grad():
    t_out, _ = m(x)
  d_out, _ = nn.unroll("rnn", nn.from_torch("rnn", m.state_dict()), x.numpy(), activation=relu)
  _close(d_out, t_out)


@pytest.mark.torch
def test_from_torch_reports_missing_keys():
  m = _module("gru")
  with pytest.raises(KeyError, match="weight_ih_l1"):
    nn.from_torch("gru", m.state_dict(), layer=1)
