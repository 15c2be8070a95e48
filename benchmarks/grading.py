"""Grading throughput: `autograder grade-all --jobs 2` vs `nbgrader autograde`, same 20 notebooks, one run.

    python benchmarks/grading.py [--n 20] [--jobs 2] [--assignment 01] [--standalone-only] [--keep DIR]

Builds an nbgrader course with `autograder release ID --nbgrader`, generates the
student notebook, and makes N submissions from it (a mix: complete, blank, and
each graded function solved alone). Grades them with the standalone grader
(isolated workers, in parallel) and with nbgrader's autograde (one kernel per
notebook, sequential), checks both give every student the same score, and prints
submissions per minute for each and the ratio.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_submissions(assignment_id: str, n: int, folder: pathlib.Path, released_nb, source_nb) -> dict[str, float]:
  """N student notebooks; returns the score each should get."""
  import nbformat
  from autograder import load_assignment
  from autograder.authoring import _authoring
  a = load_assignment(assignment_id)
  src = nbformat.read(str(source_nb), 4)
  sol = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in src.cells}
  patterns = [tuple(a.functions), ()] + [(f,) for f in a.functions]
  expected = {}
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    solved = patterns[i % len(patterns)]
    nb = nbformat.read(str(released_nb), 4)
    for c in nb.cells:
      gid = c.metadata.get("nbgrader", {}).get("grade_id")
      if gid in solved:
        c.source = _authoring.solution_source(sol[gid])
    name = f"student{i:02d}"
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    expected[name] = sum(a.points_for(f) for f in solved)
  return expected


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--assignment", default="01")
  p.add_argument("--n", type=int, default=20)
  p.add_argument("--jobs", type=int, default=2)
  p.add_argument("--standalone-only", action="store_true", help="skip nbgrader (e.g. where it is not installed)")
  p.add_argument("--keep", help="work in this folder instead of a temporary one")
  args = p.parse_args(argv)
  from autograder.authoring import _nbgrader
  from autograder.cli import grade_all
  work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="grading-bench-")).resolve()
  course = work / "course"
  aid = args.assignment
  src_nb = _nbgrader.release(aid, course)
  if args.standalone_only:
    from autograder import load_assignment
    from autograder.authoring import _authoring
    released = work / "released.ipynb"
    _authoring.write_notebook(_authoring.student_notebook(load_assignment(aid).source), released)
  else:
    released = _nbgrader.generate(course, aid)
  subs = work / "submissions"
  expected = make_submissions(aid, args.n, subs, released, src_nb)
  print(f"{args.n} submissions of assignment {aid} in {subs}; {os.cpu_count()} CPUs visible, "
        f"affinity {len(os.sched_getaffinity(0))}")

  t0 = time.monotonic()
  reports = grade_all(aid, subs, work / "standalone", jobs=args.jobs, force=True, progress=False)
  t_std = time.monotonic() - t0
  got_std = {r["submission"]: r["score"] for r in reports}
  bad = {k: (got_std.get(k), v) for k, v in expected.items() if abs(got_std.get(k, -1) - v) > 1e-6}
  rate_std = 60.0 * args.n / t_std
  print(f"autograder grade-all --jobs {args.jobs}: {t_std:.1f} s, {rate_std:.1f} submissions/min"
        + ("" if not bad else f"  WRONG SCORES {bad}"))
  if args.standalone_only:
    return 0 if not bad else 1

  for name in expected:
    _nbgrader.submit(course, aid, name, subs / f"{name}.ipynb")
  t0 = time.monotonic()
  r = _nbgrader.run_nbgrader(course, "autograde", aid, "--force", timeout=7200)
  t_nbg = time.monotonic() - t0
  if r.returncode != 0:
    print(r.stderr[-2000:])
    return 1
  got_nbg = {k: v[0] for k, v in _nbgrader.scores(course, aid).items()}
  bad_nbg = {k: (got_nbg.get(k), v) for k, v in expected.items() if abs(got_nbg.get(k, -1) - v) > 1e-6}
  rate_nbg = 60.0 * args.n / t_nbg
  print(f"nbgrader autograde:            {t_nbg:.1f} s, {rate_nbg:.1f} submissions/min"
        + ("" if not bad_nbg else f"  WRONG SCORES {bad_nbg}"))
  print(f"ratio (standalone / nbgrader): {rate_std / rate_nbg:.2f}x  (target >= 2x)")
  return 0 if not (bad or bad_nbg) else 1


if __name__ == "__main__":
  sys.exit(main())
