"""``autograder``: list, check, grade, grade-all, release, validate. Parses flags and calls the library."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

from autograder._errors import GraderBroken  # (no JAX behind it: `list` stays fast)

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_list(args):  # noqa: ARG001  (every subcommand takes the parsed flags)
  """Ids, functions and points read from each tests.py's syntax tree: JAX is not imported."""
  from autograder.grader import _registry

  ids = _registry.list_assignments()
  if not ids:
    print(f"autograder list: no assignments found; {_registry.where_text()}", file=sys.stderr)
    return 2
  for i in ids:
    m = _registry.manifest(i)
    pts = (
      f"{m['points']:g} points"
      if m["points"] != m["public_points"]
      else f"{m['points']:g} points, public tests only: {m['path']}"
    )
    print(f"{i}  {', '.join(m['functions'])}  ({pts})")
  return 0


class BadInput(Exception):
  """Input the grader cannot take (missing file, wrong extension, unreadable notebook): exit status 2."""


SIDE_BY_SIDE_RULE = "the more recently modified one is checked; give the file's path to choose"


def _pick(folder: pathlib.Path, assignment_id: str) -> tuple[pathlib.Path | None, str]:
  """``ID.py`` / ``ID.ipynb`` in ``folder``: the one to check and, when both exist, a line saying why."""
  cands = [folder / f"{assignment_id}.py", folder / f"{assignment_id}.ipynb"]
  cands = [c for c in cands if c.is_file()]
  if not cands:
    return None, ""
  if len(cands) == 1:
    return cands[0], ""
  newest = max(cands, key=lambda c: (c.stat().st_mtime, c.suffix == ".py"))
  other = next(c for c in cands if c != newest)
  return newest, f"both {newest.name} and {other.name} are in {folder}: {SIDE_BY_SIDE_RULE}; checking {newest.name}."


def _submission_path(assignment_id: str, given: str | None, *, check: bool) -> tuple[pathlib.Path, str]:
  """The submission to grade and an optional line about how it was chosen; ``BadInput`` when it cannot be."""
  from autograder.grader import _registry
  from autograder.worker import _submission

  cmd = "check" if check else "grade"
  if given is None:
    path, why = _pick(pathlib.Path.cwd(), assignment_id)
    if path is None:
      raise BadInput(
        f"autograder {cmd} {assignment_id}: no {assignment_id}.py or {assignment_id}.ipynb in "
        f"{pathlib.Path.cwd()}; give the file to check."
      )
    return path, why
  path = pathlib.Path(given)
  if not path.exists():
    raise BadInput(f"autograder {cmd}: {given}: no such file or folder.")
  why = ""
  if path.is_dir() and check:
    picked, why = _pick(path, assignment_id)
    path = picked or path
  if path.is_file() and path.suffix not in (".py", ".ipynb"):
    raise BadInput(
      f"autograder {cmd}: {given}: a submission is a .py or .ipynb file (or a folder holding one), "
      f"not {path.suffix or 'a file without extension'}."
    )
  try:
    a = _registry.spawn_info(assignment_id)  # the function names, without importing the tests (and JAX)
    info = _submission.read_submission(path, a.functions)
  except _submission.SubmissionUnreadable as e:
    raise BadInput(f"autograder {cmd}: {e}") from None
  if path.is_dir():
    why = (
      f"{path} is a folder: grading {info.entry.relative_to(path)} (the file defining the most graded "
      "functions; .ipynb on a tie)."
    )
  return path, why


def _only(values, a) -> list[str] | None:
  """``--only`` as a list of function names (``F1 F2`` or ``F1,F2``); an unknown name raises ``ValueError``."""
  if not values:
    return None
  names = [f.strip() for v in values for f in v.split(",") if f.strip()]
  unknown = sorted(set(names) - set(a.functions))
  if unknown:
    raise ValueError(
      f"assignment {a.id} has no function(s) {', '.join(unknown)}; its functions are {', '.join(a.functions)}."
    )
  return names


def _status(r) -> int:
  return 0 if r.score >= r.max_score - 1e-9 else 1


def cmd_check(args):
  """``autograder check ID [PATH]``: the public tests only, for a student checking their work in seconds."""
  from autograder.grader import _registry, _report, _runner

  aid = _registry.resolve_id(args.id)
  a = _registry.spawn_info(aid)  # the tests themselves (and JAX) are imported while the worker starts
  only = _only(args.only, a)
  path, why = _submission_path(aid, args.path, check=True)
  if why:
    print(why)
  print(f"checking {path} against the public tests of {aid} ({a.path / 'tests.py'})")
  r = _runner.grade_submission(aid, path, hidden=False, timeout=args.timeout, functions=only, keep_compiled=True)
  print(_report.text_table(r.as_dict(), self_check=True))
  return _status(r)


def cmd_grade(args):
  """``autograder grade ID SUBMISSION``: every test; the report as text, JSON or Gradescope JSON."""
  from autograder.grader import _registry, _report, _runner

  aid = _registry.resolve_id(args.id)
  a = _registry.spawn_info(aid)  # the tests themselves (and JAX) are imported while the worker starts
  only = _only(args.only, a)
  path, why = _submission_path(aid, args.submission, check=False)
  say = print if args.format == "text" or args.out else (lambda *x, **k: print(*x, **k, file=sys.stderr))
  if why:
    say(why)
  say(f"grading {path.resolve()} with the {'public' if args.public_only else 'public and hidden'} tests of {aid}")
  if a.public_only and not args.public_only:
    say(f"note: {a.path} is a student release: it holds the public tests only, so no hidden test counts.")
  r = _runner.grade_submission(
    aid, path, hidden=not args.public_only, timeout=args.timeout, functions=only, keep_compiled=True
  )
  text = _report.render(r.as_dict(), args.format)
  if args.out:
    _atomic_write(pathlib.Path(args.out), text + "\n")
    if args.format != "text":
      print(f"{r.submission}: {r.score:g}/{r.max_score:g} -> {args.out}")
    else:
      print(text)
  else:
    print(text)
  return _status(r)


def _atomic_write(path: pathlib.Path, text: str):
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def grade_all(*args, **kwargs):
  """:func:`autograder.grader._batch.grade_all` (imported when called: ``check`` does not wait for it)."""
  from autograder.grader import _batch

  return _batch.grade_all(*args, **kwargs)


def cmd_grade_all(args):
  """``autograder grade-all ID DIR --out OUT``: grade a folder of submissions in parallel (or one shard of it)."""
  from autograder.grader import _batch

  t0 = time.monotonic()
  only = [f.strip() for f in args.only.split(",")] if args.only else None
  shard = _batch.parse_shard(args.shard, args.shards)
  summary: list[str] = []
  reports = grade_all(
    args.id,
    args.dir,
    args.out,
    jobs=args.jobs,
    force=args.force,
    timeout=args.timeout,
    functions=only,
    shard=shard,
    summary=summary,
  )
  dt = time.monotonic() - t0
  print("\n".join(summary))
  if shard is None:
    print(f"{len(reports)} submissions -> {args.out}/grades.csv ({dt:.1f} s)")
  else:
    print(
      f"shard {shard[0]}/{shard[1]}: {len(reports)} submissions -> {args.out} ({dt:.1f} s); when every shard "
      f"is done: autograder collect {args.out}"
    )
  return 0


def cmd_collect(args):
  """``autograder collect OUT``: write ``OUT/grades.csv`` from the records the shards of grade-all left in OUT."""
  from autograder.grader import _batch

  summary: list[str] = []
  reports = _batch.collect(args.out, summary=summary)
  print("\n".join(summary))
  print(f"{len(reports)} submissions -> {pathlib.Path(args.out) / 'grades.csv'}")
  return 0


def cmd_export(args):
  """``autograder export ID``: a Gradescope autograder zip and/or PrairieLearn external-grader files."""
  from autograder.platforms import _export

  return _export.main(args)


def release_student(assignment_id: str, out) -> list[pathlib.Path]:
  """Everything a student needs in ``out``: notebook, .py stub, public tests, the data files the text names.

  The public tests go to ``out/public_tests/ID/`` (with the data files they
  read), where ``autograder check ID`` and the notebook's test cells find them
  when run in ``out``; no hidden test's name, code or helper is written.
  """
  import shutil
  from autograder.authoring import _authoring
  from autograder.grader import _registry

  a = _registry.load_assignment(assignment_id)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  written = [out / f"{a.id}.ipynb", out / f"{a.id}.py"]
  _authoring.write_notebook(_authoring.student_notebook(a.source), written[0])
  written[1].write_text(_authoring.module_source(a.source, solved=False, assignment_id=a.id))
  tests_dir = out / _registry.RELEASE_DIR / a.id
  tests_dir.mkdir(parents=True, exist_ok=True)
  (tests_dir / "tests.py").write_text(_authoring.public_tests_source((a.path / "tests.py").read_text(), a.id))
  written.append(tests_dir / "tests.py")
  files = _authoring.data_files(a)
  for p in files["text"]:
    shutil.copyfile(p, out / p.name)
    written.append(out / p.name)
  for p in files["tests"]:
    shutil.copyfile(p, tests_dir / p.name)
    written.append(tests_dir / p.name)
  return written


def cmd_release(args):
  """``autograder release ID``: the student notebook and ``.py`` stub, and/or an nbgrader source notebook."""
  from autograder.authoring import _authoring, _nbgrader
  from autograder.grader import _registry

  args.id = _registry.resolve_id(args.id)
  a = _registry.load_assignment(args.id)
  if a.public_only:
    raise ValueError(
      f"{a.path} is a student release (public tests only); release from the course's assignments/ "
      f"(set {_registry.ENV} or run in the checkout)."
    )
  problems = _authoring.lint(a)
  if problems:
    print("assignment source problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1
  if args.nbgrader:
    changes: list[str] = []
    nb = _nbgrader.release(args.id, pathlib.Path(args.nbgrader), changes)
    config = pathlib.Path(args.nbgrader).resolve() / "nbgrader_config.py"
    print(f"wrote {nb}")
    print(f"{config}: " + ("; ".join(changes) if changes else "already up to date"))
    print(f"next: cd {args.nbgrader} && nbgrader generate_assignment {args.id}")
  if args.out:
    written = release_student(args.id, args.out)
    print(f"wrote {', '.join(str(p) for p in written)}")
    print(f"(no solutions, no hidden tests; students run `autograder check {args.id}` in {args.out})")
  if not (args.out or args.nbgrader):
    print("release: give --out DIR and/or --nbgrader COURSE_DIR", file=sys.stderr)
    return 2
  return 0


def validate(assignment_id: str, nbgrader: bool = True, verbose: bool = True) -> list[str]:
  """Problems found (empty = valid): lint, reference 100 %, blank 0 %, standalone and through nbgrader."""
  from autograder.authoring import _authoring, _nbgrader
  from autograder.grader import _registry, _runner

  a = _registry.load_assignment(assignment_id)
  problems = list(_authoring.lint(a))
  say = print if verbose else (lambda *x, **k: None)
  with tempfile.TemporaryDirectory(prefix="autograder-validate-") as tmp:
    tmp = pathlib.Path(tmp)
    (tmp / "subs").mkdir()
    ref, blank = tmp / "subs" / "reference.py", tmp / "subs" / "blank.py"
    ref.write_text(_authoring.module_source(a.source, solved=True, assignment_id=assignment_id))
    blank.write_text(_authoring.module_source(a.source, solved=False, assignment_id=assignment_id))
    for path, want in ((ref, a.max_score), (blank, 0.0)):
      r = _runner.grade_submission(assignment_id, path)
      say(f"standalone {path.stem}: {r.score:g}/{r.max_score:g} ({r.seconds:.1f} s)")
      if abs(r.score - want) > 1e-6:
        bad = [f"{t.name}: {t.output[:200]}" for t in r.tests if (t.score < t.max_score) == (want > 0)]
        problems.append(f"standalone {path.stem} scored {r.score:g}, expected {want:g}: " + "; ".join(bad[:3]))
    if nbgrader:
      got = _nbgrader.validate_through_nbgrader(assignment_id, tmp)
      for student, want in (("reference", a.max_score), ("blank", 0.0)):
        score, mx = got.get(student, (float("nan"), float("nan")))
        say(f"nbgrader {student}: {score:g}/{mx:g}")
        if not (abs(score - want) < 1e-6 and abs(mx - a.max_score) < 1e-6):
          problems.append(f"nbgrader {student} scored {score:g}/{mx:g}, expected {want:g}/{a.max_score:g}.")
  return problems


def cmd_validate(args):
  """``autograder validate ID|all``: the reference must score 100% and a blank stub 0% (standalone and nbgrader)."""
  from autograder.grader import _registry

  ids = _registry.list_assignments() if args.id == "all" else [args.id]
  bad = 0
  for i in ids:
    problems = validate(i, nbgrader=not args.no_nbgrader)
    if problems:
      bad += 1
      print(f"{i}: INVALID\n  " + "\n  ".join(problems))
    else:
      print(f"{i}: valid (reference 100%, blank 0%{'' if args.no_nbgrader else ', standalone and nbgrader'})")
  return 1 if bad else 0


EXIT_CODES = """exit status (check, grade):
  0  every test passed
  1  some test failed (the table says which)
  2  bad input: missing file, wrong extension, unreadable notebook, unknown assignment id or function
     (one line on stderr saying what is wrong, no table)"""


def main(argv=None):
  """The ``autograder`` command: parse ``argv`` and run one subcommand; returns the exit status (see ``EXIT_CODES``)."""
  fmt = argparse.RawDescriptionHelpFormatter
  p = argparse.ArgumentParser(
    prog="autograder", description="Grade dlfunc assignments in isolation.", epilog=EXIT_CODES, formatter_class=fmt
  )
  sp = p.add_subparsers(dest="cmd", required=True)
  sp.add_parser("list", help="the assignment ids (read without importing JAX)").set_defaults(fn=cmd_list)
  c = sp.add_parser(
    "check",
    help="self-check: public tests only, in seconds",
    epilog=EXIT_CODES,
    formatter_class=fmt,
    description="Run the public tests on your file. With no PATH (or a folder), ID.py or ID.ipynb "
    f"is used; when both are there, {SIDE_BY_SIDE_RULE}. '5' means '05'.",
  )
  c.add_argument("id")
  c.add_argument("path", nargs="?")
  c.add_argument("--only", nargs="+", metavar="FN", help="run only these functions' public tests")
  c.add_argument("--timeout", type=float, help="seconds per call into the submission")
  c.set_defaults(fn=cmd_check)
  g = sp.add_parser(
    "grade", help="grade one submission (.py, .ipynb or folder)", epilog=EXIT_CODES, formatter_class=fmt
  )
  g.add_argument("id")
  g.add_argument("submission")
  g.add_argument("--format", choices=["text", "json", "gradescope"], default="text")
  g.add_argument("--out")
  g.add_argument("--timeout", type=float)
  g.add_argument("--public-only", action="store_true")
  g.add_argument("--only", nargs="+", metavar="FN", help="grade only these functions' tests (F1 F2 or F1,F2)")
  g.set_defaults(fn=cmd_grade)
  ga = sp.add_parser("grade-all", help="grade every submission in a folder, in parallel")
  ga.add_argument("id")
  ga.add_argument("dir")
  ga.add_argument("--out", required=True)
  ga.add_argument("--jobs", type=int, default=2)
  ga.add_argument("--force", action="store_true", help="regrade submissions already graded")
  ga.add_argument("--timeout", type=float)
  ga.add_argument("--only", metavar="F1,F2", help="grade only these functions' tests (e.g. a regrade)")
  ga.add_argument("--shard", metavar="I/N", help="grade only shard I of N (0-based); then `autograder collect OUT`")
  ga.add_argument("--shards", type=int, metavar="N", help="N shards, I from $JOB_COMPLETION_INDEX (Kubernetes)")
  ga.set_defaults(fn=cmd_grade_all)
  co = sp.add_parser("collect", help="write OUT/grades.csv from the records of grade-all's shards")
  co.add_argument("out")
  co.set_defaults(fn=cmd_collect)
  ex = sp.add_parser("export", help="a Gradescope autograder zip and/or PrairieLearn grader files")
  ex.add_argument("id")
  ex.add_argument("--gradescope", metavar="OUT.zip")
  ex.add_argument("--prairielearn", metavar="DIR")
  ex.set_defaults(fn=cmd_export)
  r = sp.add_parser("release", help="student notebook + .py stub, and/or an nbgrader source notebook")
  r.add_argument("id")
  r.add_argument("--out")
  r.add_argument("--nbgrader", metavar="COURSE_DIR")
  r.set_defaults(fn=cmd_release)
  v = sp.add_parser("validate", help="reference scores 100%%, blank stubs 0%% (standalone and nbgrader)")
  v.add_argument("id", help="an assignment id, or 'all'")
  v.add_argument("--no-nbgrader", action="store_true")
  v.set_defaults(fn=cmd_validate)
  args = p.parse_args(argv)
  try:
    return args.fn(args)
  except BadInput as e:
    print(str(e).splitlines()[0], file=sys.stderr)
    return 2
  except GraderBroken as e:
    print(f"autograder: {e}", file=sys.stderr)
    return 2
  except ValueError as e:
    print(f"autograder: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2


def run():
  """The console script: :func:`main`, then a quick exit for the commands that ran JAX.

  Everything a command writes is written and closed before :func:`main` returns, so once standard output and
  error are flushed nothing is left to do; skipping the interpreter's teardown of JAX (about 0.15 s) gives a
  student's ``check`` its prompt back sooner. ``main`` itself returns normally (for callers in Python).
  """
  try:
    rc = main()
  except SystemExit as e:  # argparse's --help and usage errors
    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
  except BrokenPipeError:  # `autograder check 01 | head`: the reader left early; that needs no traceback
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    rc = 1
  if "jax" not in sys.modules:
    sys.exit(rc)
  try:
    sys.stdout.flush()
    sys.stderr.flush()
  except (OSError, ValueError):  # a closed or broken pipe: the exit status still tells
    pass
  os._exit(rc)


if __name__ == "__main__":
  run()
