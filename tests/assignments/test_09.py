"""Assignment 09 (transfer learning): PyTorch parity of the checkpoint conversion, and typical mistakes caught.

The validate/hostile runs for every assignment live in the autograder tests;
here the reference solution runs in-process (``LocalSubmission``) with one
function swapped for a typical mistake, and the verdict and feedback are checked.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _assignment_helpers import Reference

R = Reference("09")


@pytest.mark.torch
def test_converted_torch_block_matches_torch(ref_ns):
  """A torchvision-style BasicBlock in PyTorch (eval mode) and residual_block(convert_state_dict(sd)) agree."""
  import torch
  from torch import nn

  class Block(nn.Module):   # torchvision.models.resnet.BasicBlock without downsampling
    def __init__(self, c):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
      self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
      out = torch.relu(self.bn1(self.conv1(x)))
      return torch.relu(self.bn2(self.conv2(out)) + x)
  torch.manual_seed(0)
  block = Block(6)
  with torch.no_grad():
    for bn in (block.bn1, block.bn2):
      bn.weight.uniform_(0.5, 1.5)
      bn.bias.normal_(0, 0.1)
      bn.running_mean.normal_(0, 0.1)
      bn.running_var.uniform_(0.5, 1.5)
  block.eval()
  x = torch.randn(2, 6, 7, 5)
  with torch.no_grad():
    want = block(x).numpy().transpose(0, 2, 3, 1)
  sd = {k: v.numpy() for k, v in block.state_dict().items()}
  got = ref_ns["residual_block"](ref_ns["convert_state_dict"](sd), x.numpy().transpose(0, 2, 3, 1))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", ["test_residual_block_values", "test_self_attention_values",
                                 "test_self_attention_padding_ignored", "test_encoder_layer_values",
                                 "test_encoder_layer_exact_gelu", "test_convert_state_dict_runs",
                                 "test_freeze_mask_values", "test_fine_tune_head_one_step"])
def test_reference_passes(ref_ns, key):
  assert R.run(ref_ns, key)[:2] == (1.0, "passed")


def test_tanh_gelu_fails_the_exact_gelu_test(ref_ns):
  import math
  ns = dict(ref_ns)

  def approx_layer(params, h, mask, num_heads):
    def ln(name, u):
      m = u.mean(-1, keepdims=True)
      return (u - m) * jax.lax.rsqrt(((u - m) ** 2).mean(-1, keepdims=True) + 1e-12) * params[name]["scale"] + params[name]["bias"]
    h1 = ln("attention_norm", h + ref_ns["self_attention"](params, h, mask, num_heads))
    inter = jax.nn.gelu(h1 @ params["intermediate"]["kernel"] + params["intermediate"]["bias"], approximate=True)
    return ln("output_norm", h1 + inter @ params["output"]["kernel"] + params["output"]["bias"])
  ns["encoder_layer"] = approx_layer
  assert math.isclose(R.run(ns, "test_encoder_layer_exact_gelu")[0], 0.0)


def test_unmasked_attention_fails_padding_test(ref_ns):
  ns = dict(ref_ns)
  ns["self_attention"] = lambda p, h, mask, n: ref_ns["self_attention"](p, h, jnp.ones_like(jnp.asarray(mask)), n)
  frac, status, msg = R.run(ns, "test_self_attention_padding_ignored")
  assert status == "failed" and "padded" in msg


def test_prefix_without_separator_fails(ref_ns):
  ns = dict(ref_ns)
  ns["freeze_mask"] = lambda params, trainable: jax.tree_util.tree_map_with_path(
      lambda path, _: any("/".join(str(k.key) for k in path).startswith(p) for p in trainable), params)
  assert R.run(ns, "test_freeze_mask_values")[0] < 1.0


def test_touching_the_backbone_is_caught(ref_ns):
  ns = dict(ref_ns)

  def leaky(params, batch, lr):
    new = ref_ns["fine_tune_head"](params, batch, lr)
    bb = jax.tree_util.tree_map(lambda a: a * (1 - 1e-7), new["backbone"])   # a tiny weight decay on frozen leaves
    return {"backbone": bb, "head": new["head"]}
  ns["fine_tune_head"] = leaky
  frac, status, msg = R.run(ns, "test_fine_tune_head_one_step")
  assert status == "failed" and "frozen backbone" in msg


@pytest.mark.slow
def test_reference_beats_scratch_and_wrong_steps_do_not(ref_ns):
  """The transfer check: the reference passes with its measured gap; a too-small step and a wrong sign fail."""
  frac, status, msg = R.run(ref_ns, "test_fine_tune_head_beats_scratch")
  assert (frac, status) == (1.0, "passed"), msg
  for override in ("lambda params, batch, lr: ref(params, batch, lr * 1e-3)",   # the head barely moves
                   "lambda params, batch, lr: ref(params, batch, -lr)"):        # gradient ascent
    ns = dict(ref_ns, ref=ref_ns["fine_tune_head"])
    ns["fine_tune_head"] = eval(override, ns)  # noqa: S307
    frac, status, msg = R.run(ns, "test_fine_tune_head_beats_scratch")
    assert status == "failed" and "from scratch" in msg, (override, msg)


def test_scratch_features_match_the_given_features():
  """The grader's scratch network uses an im2col rewrite of the given features: same values to rounding."""
  t = R.assignment.module
  p = t.scratch_params(3)["backbone"]
  x = t.few_labels(0)[0]
  np.testing.assert_allclose(np.asarray(t._im2col_features(p, x)), np.asarray(t.ref_features(p, x)), rtol=1e-5,
                             atol=1e-5)
