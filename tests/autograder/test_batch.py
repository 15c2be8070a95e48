"""grade-all bookkeeping, sharding and collect (autograder.grader._batch), run the way deploy/ runs them.

One folder of mixed 01 submissions (relu only, to stay fast) is graded once in one run and once as the two shards
of deploy/grade-all-job.yaml (its own arguments, JOB_COMPLETION_INDEX set as Kubernetes sets it) plus its collect
Job; the two grades.csv must be equal. The same runs show the bookkeeping: skipped files and name collisions as
rows, refused operations flagged, formula-looking names neutralised, a non-UTF-8 name escaped, and a result reused
only while the submission's content is unchanged.
"""
import csv
import io
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from autograder.authoring import _authoring
from autograder.grader import _batch, _report
from autograder.grader._registry import load_assignment

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _cli(*args, env=None, timeout=600):
  r = subprocess.run([sys.executable, "-m", "autograder.cli", *map(str, args)], capture_output=True, text=True,
                     cwd=REPO, timeout=timeout, env=dict(os.environ, **(env or {})))
  return r


def _rows(path):
  return list(csv.DictReader(io.StringIO(pathlib.Path(path).read_text())))


def _job_args(data: pathlib.Path):
  """The Indexed Job's and the collect Job's container arguments, /data pointed at ``data``."""
  docs = list(yaml.safe_load_all((DEPLOY / "grade-all-job.yaml").read_text()))
  grade = next(d for d in docs if d["spec"].get("completionMode") == "Indexed")
  collect = next(d for d in docs if d is not grade)
  fix = lambda args: [a.replace("/data", str(data)) for a in args]   # noqa: E731
  return (grade["spec"]["completions"], fix(grade["spec"]["template"]["spec"]["containers"][0]["args"]),
          fix(collect["spec"]["template"]["spec"]["containers"][0]["args"]))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
  a = load_assignment("01")
  ref = _authoring.module_source(a.source, solved=True, assignment_id="01")
  blank = _authoring.module_source(a.source, solved=False, assignment_id="01")
  data = tmp_path_factory.mktemp("batch")
  subs = data / "submissions"
  subs.mkdir()
  (subs / "alice.py").write_text(ref)
  (subs / "bob.py").write_text(blank)
  (subs / "zed.py").write_text(ref)
  (subs / "zed.ipynb").write_text("{}")
  (subs / "notes.txt").write_text("my answers are in the pdf")
  (subs / ".DS_Store").write_bytes(b"\0\0")
  (subs / "link.py").symlink_to(a.source)            # a link to the reference: not followed
  (subs / "=1+1.py").write_text(ref)
  (subs / "-cmd.py").write_text(blank)
  (subs / "shell.py").write_text(ref.replace("def relu(x):", "def relu(x):\n  import os\n  os.system('id')", 1))
  (subs / "folder_sub").mkdir()
  (subs / "folder_sub" / "work.py").write_text(ref)
  with open(os.path.join(os.fsencode(subs), b"caf\xe9.py"), "w") as f:
    f.write(ref)
  one = data / "one"
  r = _cli("grade-all", "01", subs, "--out", one, "--jobs", "2", "--only", "relu")
  assert r.returncode == 0, r.stderr[-3000:]
  n, grade_args, collect_args = _job_args(data)
  grade_args = [*grade_args, "--only", "relu"]
  shard_runs = [_cli(*grade_args, env={"JOB_COMPLETION_INDEX": str(i)}) for i in range(n)]
  collect_run = _cli(*collect_args)
  return {"a": a, "subs": subs, "one": one, "sharded": data / "out", "run": r, "shard_runs": shard_runs,
          "collect": collect_run, "n": n, "ref": ref}


def test_shards_plus_collect_equal_one_run(batch):
  assert all(r.returncode == 0 for r in batch["shard_runs"]), [r.stderr[-2000:] for r in batch["shard_runs"]]
  assert batch["collect"].returncode == 0, batch["collect"].stderr[-2000:]
  one = (batch["one"] / "grades.csv").read_text()
  assert (batch["sharded"] / "grades.csv").read_text() == one
  # every entry in exactly one shard, and the shards did split the work
  keys = [json.loads((batch["sharded"] / "_shards" / f"{i}-of-{batch['n']}.json").read_text())["keys"]
          for i in range(batch["n"])]
  flat = [k for ks in keys for k in ks]
  assert len(flat) == len(set(flat)) == len(_rows(batch["one"] / "grades.csv")) == 12
  assert sum(1 for ks in keys if ks) >= 2


def test_every_entry_is_a_row_and_scores_are_honest(batch):
  rows = {r["submission"]: r for r in _rows(batch["one"] / "grades.csv")}
  full = f"{batch['a'].points_for('relu'):g}"
  assert rows["alice"]["score"] == full and rows["bob"]["score"] == "0"
  assert rows["folder_sub"]["score"] == full
  assert rows["notes.txt"]["status"] == "skipped" and rows["notes.txt"]["score"] == ""
  assert ".txt" in rows["notes.txt"]["notes"]
  assert "notes.txt" in batch["run"].stdout and "skipped" in batch["run"].stdout
  assert rows[".DS_Store"]["status"] == "skipped" and "hidden" in rows[".DS_Store"]["notes"]
  assert rows["link.py"]["status"] == "skipped" and "link" in rows["link.py"]["notes"]
  # zed.py and zed.ipynb: both graded under their full names, both flagged
  assert rows["zed.py"]["score"] == full and rows["zed.ipynb"]["score"] == "0"
  assert rows["zed.py"]["collision"] == "zed.ipynb" and rows["zed.ipynb"]["collision"] == "zed.py"
  assert "collision" in batch["run"].stdout


def test_refused_operation_is_flagged(batch):
  rows = {r["submission"]: r for r in _rows(batch["one"] / "grades.csv")}
  assert rows["shell"]["refused"].startswith("relu: ") and "shell" in rows["shell"]["refused"]
  rec = json.loads((batch["one"] / "shell.json").read_text())
  assert rec["refused"] and {x["function"] for x in rec["refused"]} == {"relu"}
  assert all(not rows[k]["refused"] for k in ("alice", "bob", "zed.py"))
  assert "refused  shell: relu" in batch["run"].stdout


def test_formula_names_neutralised_and_odd_names_escaped(batch):
  text = (batch["one"] / "grades.csv").read_text()
  cells = [row[0] for row in csv.reader(io.StringIO(text))]
  assert "'=1+1" in cells and "'-cmd" in cells
  starts = ("=", "+", "-", "@", "\t", "\r")
  assert not any(c.startswith(starts) for row in csv.reader(io.StringIO(text)) for c in row)
  assert "caf\\xe9" in cells       # reported escaped; the batch went on past it
  assert (batch["one"] / "caf\\xe9.json").is_file()
  json.loads((batch["one"] / "caf\\xe9.json").read_text())


def test_csv_cell_owasp():
  assert [_report.csv_cell(x) for x in ("=SUM(A1)", "+1", "-2", "@x", "\tx", "\rx", "ok", "a=b")] == \
      ["'=SUM(A1)", "'+1", "'-2", "'@x", "'\tx", "'\rx", "ok", "a=b"]
  assert _batch.escape_name(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
  assert _batch.escape_name("a\nb") == "a\\nb"


def test_reuse_only_for_unchanged_content(batch, tmp_path):
  out = batch["one"]
  before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
  (batch["subs"] / "bob.py").write_text(batch["ref"])           # bob replaces his blank file by a correct one
  r = _cli("grade-all", "01", batch["subs"], "--out", out, "--jobs", "2", "--only", "relu")
  assert r.returncode == 0, r.stderr[-2000:]
  rows = {x["submission"]: x for x in _rows(out / "grades.csv")}
  assert rows["bob"]["score"] == f"{batch['a'].points_for('relu'):g}"
  after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
  assert after["bob.json"] != before["bob.json"]
  unchanged = [k for k in before if k != "bob.json"]
  assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
  assert "1 now" in r.stdout


def test_shard_arguments():
  assert _batch.parse_shard("1/4") == (1, 4)
  assert _batch.parse_shard(None) is None
  with pytest.raises(ValueError):
    _batch.parse_shard("4/4")
  os.environ.pop("JOB_COMPLETION_INDEX", None)
  with pytest.raises(ValueError, match="JOB_COMPLETION_INDEX"):
    _batch.parse_shard(None, 3)
  keys = [f"student{i}" for i in range(200)]
  for n in (1, 2, 5):
    parts = [[k for k in keys if _batch.shard_of(k, n) == i] for i in range(n)]
    assert sorted(sum(parts, [])) == sorted(keys) and min(map(len, parts)) > 0


def test_collect_refuses_while_a_shard_is_missing(tmp_path):
  out = tmp_path / "out"
  (out / "_shards").mkdir(parents=True)
  (out / "_shards" / "0-of-2.json").write_text(json.dumps({"shard": 0, "shards": 2, "keys": [], "finished": 1}))
  with pytest.raises(ValueError, match="1/2"):
    _batch.collect(out)
  r = _cli("collect", out)
  assert r.returncode == 2 and "1/2" in r.stderr


@pytest.mark.parametrize("argv", [["collect"], ["export"], ["grade-all"]])
def test_help(argv, capsys):
  from autograder import cli
  with pytest.raises(SystemExit) as info:
    cli.main([*argv, "--help"])
  assert info.value.code == 0 and capsys.readouterr().out.startswith("usage:")


def test_long_names_get_a_record_file():
  p = _batch.record_path(pathlib.Path("/x"), "n" * 400)
  assert len(p.name.encode()) < 255 and p.name.endswith(".json")


def test_dockerfile_runs_the_cli():
  text = (DEPLOY / "Dockerfile").read_text()
  assert 'ENTRYPOINT ["autograder"]' in text and "setup.sh" in text


def test_refused_operations_read_from_report_messages():
  report = {"notes": ["relu uses jax.nn.relu: refused, its tests score 0.",
                      "top-level code replaced numpy.sum; the originals were restored (monkeypatching is not "
                      "allowed)."],
            "tests": [{"function": "relu", "output": "relu: uses jax.nn.relu, which submissions may not use (dlfunc)"},
                      {"function": "tanh", "output": "tanh raised PermissionError at line 3: submissions may not open "
                                                     "a network socket (socket.__new__)"},
                      {"function": "tanh", "output": "tanh raised PermissionError at line 3: submissions may not open "
                                                     "a network socket (socket.__new__) (from an earlier test)"},
                      {"function": "dense", "output": "dense: wrong values"}]}
  assert _batch.refused_operations(report) == [
      {"function": "relu", "what": "uses jax.nn.relu (forbidden)"},
      {"function": "(top level)", "what": "replaced numpy.sum"},
      {"function": "tanh", "what": "submissions may not open a network socket (socket.__new__)"}]


def test_unknown_function_is_one_clear_error(tmp_path):
  (tmp_path / "subs").mkdir()
  r = _cli("grade-all", "01", tmp_path / "subs", "--out", tmp_path / "out", "--only", "nosuch")
  assert r.returncode == 2 and "nosuch" in r.stderr and not (tmp_path / "out" / "grades.csv").exists()
