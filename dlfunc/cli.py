"""The ``dlfunc`` command: ``dlfunc train ...`` and ``dlfunc evaluate ...``.

The work happens in :func:`dlfunc.train.train_and_evaluate`; this module only
parses flags. With no arguments it trains the seed MLP on the embedded digits
and prints the test accuracy.

Extending: models, data sets and optimizers come from registries
(``dlfunc.train.register_model``, ``dlfunc.data.register_dataset``,
``dlfunc.train.register_optimizer``); a module that registers things at import
joins ``PLUGINS``; a new subcommand joins with :func:`register_command`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Callable

#: Modules imported before parsing, so their register_* calls take effect.
#: Missing ones are skipped (e.g. while a sub-package is being written).
PLUGINS: list[str] = ["dlfunc._sequence_cli", "dlfunc._transfer_cli"]

#: Called after ``dlfunc train`` as ``hook(state, summary, args)`` (e.g. autoencoder figures).
AFTER_TRAIN: list[Callable] = []

#: Registry: subcommand -> (help, add_arguments(parser), run(args) -> exit code).
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register_command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace], int]) -> None:
  """Adds ``dlfunc NAME``: ``add_arguments(parser)`` declares flags, ``run(args)`` returns the exit code."""
  COMMANDS[name] = (help, add_arguments, run)


def _fail(message: str, code: int = 2) -> int:
  print(f"dlfunc: error: {message}", file=sys.stderr)
  return code


def _train_arguments(p: argparse.ArgumentParser) -> None:
  from dlfunc import data
  from dlfunc.train import MODELS, OPTIMIZERS
  models = ", ".join(f"{k} ({v.description})" if v.description else k for k, v in sorted(MODELS.items()))
  p.add_argument("--model", default="mlp", help=f"model to train: {models} (default: mlp)")
  p.add_argument("--dataset", default=None,
                 help=f"data set: {', '.join(data.available())} or tfds:NAME (default: the model's, usually digits)")
  p.add_argument("--optimizer", default=None, help=f"{', '.join(sorted(OPTIMIZERS))} (default: the model's, adam)")
  p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the model's)")
  p.add_argument("--schedule", default=None, help="cosine (default) or constant learning rate")
  p.add_argument("--epochs", type=int, default=None, help="epochs (default: the model's)")
  p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the model's)")
  p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout (default 0)")
  p.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                 help="stop when the test loss has not improved for PATIENCE epochs")
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
  from dlfunc.train import TrainConfig, train_and_evaluate
  if args.resume and not args.workdir:
    return _fail("--resume needs the --workdir of the run to continue.")
  from dlfunc.train._distributed import initialize_from_args
  initialize_from_args(args)  # Multi-host: joins jax.distributed when the flags ask to.
  config = TrainConfig(model=args.model, dataset=args.dataset, optimizer=args.optimizer, lr=args.lr,
                       epochs=args.epochs, batch_size=args.batch_size, schedule=args.schedule, seed=args.seed,
                       data_dir=args.data_dir, early_stopping=args.early_stopping, progress=not args.no_progress)
  state, summary = train_and_evaluate(config, args.workdir, resume=args.resume)
  summary["wall_seconds"] = time.perf_counter() - t0
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
  print(f"{head}({args.split} loss {out[f'{args.split}_loss']:.4f}; {out['model']} on {out['dataset']}, "
        f"checkpoint of epoch {out['epochs']})")
  if args.json:
    print(json.dumps(out))
  return 0


def _known_errors() -> tuple[type[BaseException], ...]:
  from dlfunc.data import DataError
  from dlfunc.train import TrainingDiverged
  return (ValueError, TypeError, FileNotFoundError, DataError, TrainingDiverged)


def build_parser() -> argparse.ArgumentParser:
  """The argument parser, built from the current registries."""
  parser = argparse.ArgumentParser(prog="dlfunc", description="Train and evaluate dlfunc models.")
  parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
  sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
  for name, (help_, add_arguments, _) in COMMANDS.items():
    add_arguments(sub.add_parser(name, help=help_, description=help_))
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``dlfunc`` console script. Returns the exit code."""
  t0 = time.perf_counter()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  for module in PLUGINS:
    try:
      importlib.import_module(module)
    except ImportError:
      pass
  argv = list(sys.argv[1:] if argv is None else argv)
  rest = [a for a in argv if a != "--debug"]
  if not rest or (rest[0] not in COMMANDS and rest[0] not in ("-h", "--help")):
    argv = [a for a in argv if a == "--debug"] + ["train"] + rest  # `dlfunc` alone == `dlfunc train`.
  args = build_parser().parse_args(argv)
  _, _, run = COMMANDS[args.command]
  try:
    return run(args, t0)
  except _known_errors() as e:
    if args.debug:
      raise
    return _fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
                 1 if type(e).__name__ == "TrainingDiverged" else 2)
  except KeyboardInterrupt:
    return _fail("interrupted.", 130)
  except Exception as e:  # noqa: BLE001 -- never a raw XLA trace; --debug shows it.
    if args.debug:
      raise
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return _fail(f"{type(e).__name__}: {first} (rerun with --debug for the traceback).", 1)


register_command("train", "train a model (default: the seed MLP on the embedded digits)", _train_arguments, _train)
register_command("evaluate", "evaluate the last checkpoint of a --workdir run", _evaluate_arguments, _evaluate)

if __name__ == "__main__":
  sys.exit(main())
