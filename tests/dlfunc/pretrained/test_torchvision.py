"""load_torchvision: the name maps against torchvision's module layout, parity, and loader errors.

torchvision is not installed here (it needs its own 5 GB torch build), so
its own parity tests skip with that reason. The name map and the numbers
are still checked against a PyTorch network written with torchvision's
module names and code (``_TorchResNet``, ``_TorchVGG`` below, copied in
structure from ``torchvision/models/resnet.py`` and ``vgg.py``).
"""
import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc.pretrained import WeightLoadError, load_torchvision, read_checkpoint, vgg_fc1_chw_to_hwc

HAVE_TORCHVISION = importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision not installed")


def _torch_models():
  """torchvision's ResNet/VGG module layout (same attribute names, same forward), in plain torch."""
  import torch
  from torch import nn as tnn

  class BasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.relu = tnn.ReLU(inplace=True)
      self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.downsample = downsample

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = self.relu(self.bn1(self.conv1(x)))
      return self.relu(self.bn2(self.conv2(out)) + identity)

  class Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride on the 3x3
      self.bn2 = tnn.BatchNorm2d(planes)
      self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = tnn.BatchNorm2d(planes * 4)
      self.relu = tnn.ReLU(inplace=True)
      self.downsample = downsample

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      return self.relu(self.bn3(self.conv3(out)) + identity)

  class TorchResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=1000):
      super().__init__()
      self.inplanes = 64
      self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = tnn.BatchNorm2d(64)
      self.relu = tnn.ReLU(inplace=True)
      self.maxpool = tnn.MaxPool2d(3, 2, 1)
      self.layer1 = self._make_layer(block, 64, layers[0])
      self.layer2 = self._make_layer(block, 128, layers[1], 2)
      self.layer3 = self._make_layer(block, 256, layers[2], 2)
      self.layer4 = self._make_layer(block, 512, layers[3], 2)
      self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
      self.fc = tnn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
      downsample = None
      if stride != 1 or self.inplanes != planes * block.expansion:
        downsample = tnn.Sequential(tnn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                    tnn.BatchNorm2d(planes * block.expansion))
      layers = [block(self.inplanes, planes, stride, downsample)]
      self.inplanes = planes * block.expansion
      layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
      return tnn.Sequential(*layers)

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(torch.flatten(self.avgpool(x), 1))

  cfgs = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
          16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}

  class TorchVGG(tnn.Module):
    def __init__(self, depth, batch_norm=False, num_classes=1000, fc=4096):
      super().__init__()
      layers, c = [], 3
      for v in cfgs[depth]:
        if v == "M":
          layers.append(tnn.MaxPool2d(2, 2))
        else:
          layers.append(tnn.Conv2d(c, v, 3, padding=1))
          layers += [tnn.BatchNorm2d(v), tnn.ReLU(True)] if batch_norm else [tnn.ReLU(True)]
          c = v
      self.features = tnn.Sequential(*layers)
      self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
      self.classifier = tnn.Sequential(tnn.Linear(512 * 49, fc), tnn.ReLU(True), tnn.Dropout(),
                                       tnn.Linear(fc, fc), tnn.ReLU(True), tnn.Dropout(), tnn.Linear(fc, num_classes))

    def forward(self, x):
      return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

  return BasicBlock, Bottleneck, TorchResNet, TorchVGG


def _randomise_bn(model, seed=0):
  """Non-trivial running statistics and affine parameters, so BN is really tested."""
  import torch
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
  return model.eval()


def _parity(tmodel, name, size, num_classes, tol=1e-4):
  import torch
  torch.manual_seed(0)
  x = torch.randn(2, 3, size, size)
  with torch.no_grad():
    ref = tmodel(x).numpy()
  model, variables = load_torchvision(name, tmodel.state_dict())
  out = np.asarray(model.apply(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)), train=False))
  assert out.shape == (2, num_classes)
  rel = np.abs(out - ref).max() / np.abs(ref).max()
  assert rel < tol, f"{name}: max relative error {rel:.2e}"


@pytest.mark.torch
@pytest.mark.parametrize("name,layers,block", [("resnet18", (2, 2, 2, 2), 0), ("resnet34", (3, 4, 6, 3), 0),
                                               ("resnet50", (3, 4, 6, 3), 1)])
def test_resnet_name_map_covers_torchvision_layout(name, layers, block):
  BasicBlock, Bottleneck, TorchResNet, _ = _torch_models()
  sd = TorchResNet((BasicBlock, Bottleneck)[block], layers, num_classes=7).state_dict()
  model, variables = load_torchvision(name, sd)  # raises on any missing/unexpected key or shape
  assert model.num_classes == 7
  n_loaded = sum(np.size(v) for v in __import__("jax").tree_util.tree_leaves(variables))
  n_torch = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
  assert n_loaded == n_torch


@pytest.mark.torch
def test_resnet18_matches_torch_layout_numerically():
  BasicBlock, _, TorchResNet, _ = _torch_models()
  import torch
  torch.manual_seed(0)
  _parity(_randomise_bn(TorchResNet(BasicBlock, (2, 2, 2, 2), num_classes=10)), "resnet18", 64, 10)


@pytest.mark.torch
@pytest.mark.slow
def test_resnet50_matches_torch_layout_numerically():
  _, Bottleneck, TorchResNet, _ = _torch_models()
  import torch
  torch.manual_seed(0)
  _parity(_randomise_bn(TorchResNet(Bottleneck, (3, 4, 6, 3))), "resnet50", 64, 1000)


@pytest.mark.torch
@pytest.mark.parametrize("name,depth,bn", [("vgg11", 11, False), ("vgg11_bn", 11, True)])
def test_vgg_matches_torch_layout_numerically(name, depth, bn):
  """Small classifier (fc 64) keeps it fast; the permutation of classifier.0 is what is tested."""
  import torch
  _, _, _, TorchVGG = _torch_models()
  torch.manual_seed(0)
  tmodel = _randomise_bn(TorchVGG(depth, bn, num_classes=5, fc=64))
  # a 64x64 input leaves a 2x2 map, so AdaptiveAvgPool2d((7, 7)) really resamples
  import torch
  x = torch.randn(2, 3, 64, 64)
  with torch.no_grad():
    ref = tmodel(x).numpy()
  from dlfunc.models import VGG
  from dlfunc.pretrained import assign, torchvision_vgg_map
  from dlfunc.pretrained._core import template_of
  model = VGG(depth, bn, num_classes=5, fc_width=64)
  variables = assign(template_of(model, jnp.zeros((1, 32, 32, 3))), tmodel.state_dict(),
                     torchvision_vgg_map(model), ignore=[r"num_batches_tracked$"])
  out = np.asarray(model.apply(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 1))))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.torch
@pytest.mark.slow
def test_vgg16_full_size_layout_loads_through_load_torchvision():
  import torch
  _, _, _, TorchVGG = _torch_models()
  torch.manual_seed(0)
  tmodel = TorchVGG(16).eval()
  _parity(tmodel, "vgg16", 32, 1000)


def test_fc1_permutation_matches_chw_flatten():
  rng = np.random.default_rng(0)
  feat = rng.normal(size=(7, 7, 8)).astype(np.float32)  # HWC, as dlfunc holds it
  w = rng.normal(size=(3, 8 * 49)).astype(np.float32)  # torch (out, C*H*W)
  torch_out = w @ feat.transpose(2, 0, 1).reshape(-1)
  ours = feat.reshape(-1) @ vgg_fc1_chw_to_hwc(w)
  np.testing.assert_allclose(ours, torch_out, rtol=1e-5)


# -- errors ---------------------------------------------------------------------------------------------------------

def _numpy_resnet18_sd():
  """torchvision resnet18's key names and shapes, as numpy (no torch needed)."""
  rng = np.random.default_rng(0)
  sd = {"conv1.weight": (64, 3, 7, 7)}

  def bn(k, c):
    sd.update({f"{k}.weight": (c,), f"{k}.bias": (c,), f"{k}.running_mean": (c,), f"{k}.running_var": (c,),
               f"{k}.num_batches_tracked": ()})
  bn("bn1", 64)
  cin = 64
  for s, c in enumerate((64, 128, 256, 512), start=1):
    for j in range(2):
      p = f"layer{s}.{j}"
      sd[f"{p}.conv1.weight"] = (c, cin if j == 0 else c, 3, 3)
      bn(f"{p}.bn1", c)
      sd[f"{p}.conv2.weight"] = (c, c, 3, 3)
      bn(f"{p}.bn2", c)
      if j == 0 and s > 1:
        sd[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
        bn(f"{p}.downsample.1", c)
    cin = c
  sd.update({"fc.weight": (1000, 512), "fc.bias": (1000,)})
  return {k: rng.normal(size=v).astype(np.float32) if v else np.array(0) for k, v in sd.items()}


def test_numpy_state_dict_with_torchvision_names_loads():
  sd = _numpy_resnet18_sd()
  model, variables = load_torchvision("resnet18", sd)
  np.testing.assert_array_equal(variables["params"]["layer2_0"]["downsample_conv"]["kernel"],
                                sd["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["var"], sd["bn1.running_var"])
  np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], sd["fc.weight"].T)


def test_wrong_architecture_names_first_key_and_shapes():
  sd = _numpy_resnet18_sd()
  with pytest.raises(WeightLoadError,
                     match=r"missing key.*'layer1\.0\.conv3\.weight'.*expects shape \(1, 1, 64, 256\)"):
    load_torchvision("resnet50", sd)
  sd["extra.weight"] = np.zeros((2, 3), np.float32)
  with pytest.raises(WeightLoadError, match=r"1 unexpected key\(s\), first 'extra\.weight' with shape \(2, 3\)"):
    load_torchvision("resnet18", sd)


def test_truncated_state_dict_names_first_missing_key():
  sd = _numpy_resnet18_sd()
  keys = list(sd)
  truncated = {k: sd[k] for k in keys[: len(keys) // 2]}
  first = next(k for k in keys[len(keys) // 2:] if not k.endswith("num_batches_tracked"))
  with pytest.raises(WeightLoadError, match=rf"missing key\(s\), first '{first}' .*expects shape \(\d+,"):
    load_torchvision("resnet18", truncated)


def test_shape_mismatch_names_key_and_both_shapes():
  sd = _numpy_resnet18_sd()
  sd["layer1.1.conv2.weight"] = np.zeros((64, 32, 3, 3), np.float32)
  with pytest.raises(WeightLoadError, match=r"'layer1\.1\.conv2\.weight' -> params/layer1_1/conv2/kernel.*"
                                            r"\(3, 3, 32, 64\).*\(64, 32, 3, 3\).*expects \(3, 3, 64, 64\)"):
    load_torchvision("resnet18", sd)


def test_truncated_file_is_reported(tmp_path):
  sd = _numpy_resnet18_sd()
  path = tmp_path / "r18.npz"
  np.savez(path, **sd)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(WeightLoadError, match="truncated"):
    load_torchvision("resnet18", path)


def test_npz_round_trip_and_new_head(tmp_path):
  sd = _numpy_resnet18_sd()
  path = tmp_path / "r18.npz"
  np.savez(path, **sd)
  assert set(read_checkpoint(path)) == set(sd)
  model, variables = load_torchvision("resnet18", path, num_classes=3)
  assert variables["params"]["fc"]["kernel"].shape == (512, 3)
  assert model.apply(variables, jnp.zeros((1, 32, 32, 3))).shape == (1, 3)
  model0, variables0 = load_torchvision("resnet18", sd, num_classes=0)
  assert "fc" not in variables0["params"]
  assert model0.apply(variables0, jnp.zeros((1, 32, 32, 3))).shape == (1, 512)


@pytest.mark.torch
def test_pth_file_reads_with_torch(tmp_path):
  import torch
  sd = {k: torch.from_numpy(np.asarray(v)) for k, v in _numpy_resnet18_sd().items()}
  torch.save(sd, tmp_path / "r18.pth")
  _, variables = load_torchvision("resnet18", tmp_path / "r18.pth")
  np.testing.assert_array_equal(variables["params"]["conv1"]["kernel"],
                                sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))


def test_unknown_name_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown architecture 'resnet19'"):
    load_torchvision("resnet19", {})


# -- torchvision itself (when installed) ------------------------------------------------------------------------------

@needs_torchvision
@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16"])
def test_torchvision_parity(name):
  import torchvision
  tmodel = _randomise_bn(getattr(torchvision.models, name)(weights=None))
  _parity(tmodel, name, 64, 1000)
