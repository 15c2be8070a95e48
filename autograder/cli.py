"""``autograder``: list, check, grade, grade-all, release, validate. Parses flags and calls the library."""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _report_dict(r):
  return r.as_dict()


def cmd_list(args):
  from autograder import _registry
  for i in _registry.list_assignments():
    a = _registry.load_assignment(i)
    print(f"{i}  {', '.join(a.functions)}  ({a.max_score:g} points)")
  return 0


def _find_default(assignment_id: str) -> pathlib.Path:
  for cand in (f"{assignment_id}.ipynb", f"{assignment_id}.py"):
    if pathlib.Path(cand).exists():
      return pathlib.Path(cand)
  raise SystemExit(f"autograder check {assignment_id}: give the file to check (no {assignment_id}.ipynb or "
                   f"{assignment_id}.py here).")


def cmd_check(args):
  from autograder import _report, _runner
  path = pathlib.Path(args.path) if args.path else _find_default(args.id)
  r = _runner.grade_submission(args.id, path, hidden=False, timeout=args.timeout)
  print(_report.text_table(r.as_dict(), self_check=True))
  return 0


def cmd_grade(args):
  from autograder import _report, _runner
  only = [f.strip() for f in args.only.split(",")] if args.only else None
  r = _runner.grade_submission(args.id, args.submission, hidden=not args.public_only, timeout=args.timeout,
                               functions=only)
  text = _report.render(r.as_dict(), args.format)
  if args.out:
    _atomic_write(pathlib.Path(args.out), text + "\n")
    if args.format != "text":
      print(f"{r.submission}: {r.score:g}/{r.max_score:g} -> {args.out}")
    else:
      print(text)
  else:
    print(text)
  return 0


def _atomic_write(path: pathlib.Path, text: str):
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


from autograder._batch import grade_all  # noqa: E402,F401  (moved to autograder._batch; kept importable here)


def cmd_grade_all(args):
  from autograder import _batch
  t0 = time.monotonic()
  only = [f.strip() for f in args.only.split(",")] if args.only else None
  shard = _batch.parse_shard(args.shard, args.shards)
  summary: list[str] = []
  reports = grade_all(args.id, args.dir, args.out, jobs=args.jobs, force=args.force, timeout=args.timeout,
                      functions=only, shard=shard, summary=summary)
  dt = time.monotonic() - t0
  print("\n".join(summary))
  if shard is None:
    print(f"{len(reports)} submissions -> {args.out}/grades.csv ({dt:.1f} s)")
  else:
    print(f"shard {shard[0]}/{shard[1]}: {len(reports)} submissions -> {args.out} ({dt:.1f} s); when every shard "
          f"is done: autograder collect {args.out}")
  return 0


def cmd_collect(args):
  from autograder import _batch
  summary: list[str] = []
  reports = _batch.collect(args.out, summary=summary)
  print("\n".join(summary))
  print(f"{len(reports)} submissions -> {pathlib.Path(args.out) / 'grades.csv'}")
  return 0


def cmd_export(args):
  from autograder import _export
  return _export.main(args)


def cmd_release(args):
  from autograder import _authoring, _nbgrader, _registry
  a = _registry.load_assignment(args.id)
  problems = _authoring.lint(a)
  if problems:
    print("assignment source problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1
  if args.nbgrader:
    nb = _nbgrader.release(args.id, pathlib.Path(args.nbgrader))
    print(f"wrote {nb} and {pathlib.Path(args.nbgrader).resolve() / 'nbgrader_config.py'}; next: "
          f"cd {args.nbgrader} && nbgrader generate_assignment {args.id}")
  if args.out:
    out = pathlib.Path(args.out)
    _authoring.write_notebook(_authoring.student_notebook(a.source), out / f"{args.id}.ipynb")
    (out / f"{args.id}.py").write_text(_authoring.module_source(a.source, solved=False, assignment_id=args.id))
    print(f"wrote {out / (args.id + '.ipynb')} and {out / (args.id + '.py')} (no solutions, no hidden tests)")
  if not (args.out or args.nbgrader):
    print("release: give --out DIR and/or --nbgrader COURSE_DIR", file=sys.stderr)
    return 2
  return 0


def validate(assignment_id: str, nbgrader: bool = True, verbose: bool = True) -> list[str]:
  """Problems found (empty = valid): lint, reference 100 %, blank 0 %, standalone and through nbgrader."""
  from autograder import _authoring, _nbgrader, _registry, _runner
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
  from autograder import _registry
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


def main(argv=None):
  p = argparse.ArgumentParser(prog="autograder", description="Grade dlfunc assignments in isolation.")
  sp = p.add_subparsers(dest="cmd", required=True)
  sp.add_parser("list", help="the assignment ids").set_defaults(fn=cmd_list)
  c = sp.add_parser("check", help="self-check: public tests only, in seconds")
  c.add_argument("id")
  c.add_argument("path", nargs="?")
  c.add_argument("--timeout", type=float, help="seconds per call into the submission")
  c.set_defaults(fn=cmd_check)
  g = sp.add_parser("grade", help="grade one submission (.py, .ipynb or folder)")
  g.add_argument("id")
  g.add_argument("submission")
  g.add_argument("--format", choices=["text", "json", "gradescope"], default="text")
  g.add_argument("--out")
  g.add_argument("--timeout", type=float)
  g.add_argument("--public-only", action="store_true")
  g.add_argument("--only", metavar="F1,F2", help="grade only these functions' tests")
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
  except ValueError as e:
    print(f"autograder: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
