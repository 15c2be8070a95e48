"""``autograder export ID``: a Gradescope autograder zip, PrairieLearn external-grader files.

Both carry the project as a wheel built from this checkout, the dependency versions of the environment that
built it (pinned, so a course grades with what was validated), and the assignment's folder (tests, reference,
data), which a wheel does not hold. Both take their root from ``AUTOGRADER_ROOT`` (Gradescope: ``/autograder``,
PrairieLearn: ``/grade``), so the whole contract can be run in a temp folder without Docker (the tests do).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile

from autograder.grader import _registry

PROJECT = pathlib.Path(__file__).resolve().parents[2]
EXTRA_GRADING_REQUIREMENTS = ("hypothesis",)  # imported by an assignment's tests (06), not by the library
FOOTPRINT = pathlib.Path(__file__).resolve().parents[1] / "footprint.json"
EXEC = 0o755
GS_DEFAULT_MB, GS_DEFAULT_S = 768, 600  # Gradescope's default container: about 768 MB, 0.5 CPU, 10 minutes


# ---------------------------------------------------------------- ingredients


def build_wheel(dest: pathlib.Path) -> pathlib.Path:
  """A wheel of this checkout (dlfunc + autograder) in ``dest``; ``AUTOGRADER_WHEEL`` names a ready one instead.

  Built from a copy, so the checkout gets no ``build/`` or ``*.egg-info``; without build isolation when setuptools
  is installed (no network needed).
  """
  ready = os.environ.get("AUTOGRADER_WHEEL")
  if ready:
    return pathlib.Path(ready)
  if not (PROJECT / "pyproject.toml").is_file():
    raise ValueError(
      f"export builds a wheel from a checkout of the project; {PROJECT} has no pyproject.toml "
      "(or set AUTOGRADER_WHEEL to a built dlfunc wheel)."
    )
  dest.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="dlfunc-wheel-") as tmp:
    src = pathlib.Path(tmp) / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    src.mkdir()
    for name in ("dlfunc", "autograder"):
      shutil.copytree(PROJECT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
      if (PROJECT / name).is_file():
        shutil.copy2(PROJECT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(src)]
    if _can_build_offline():
      cmd.insert(4, "--no-build-isolation")
    r = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603  (our own pip command line)
    if r.returncode:
      raise ValueError(f"building the wheel failed: {r.stderr.strip()[-800:]}")
  wheels = sorted(dest.glob("dlfunc-*.whl"))
  if not wheels:
    raise ValueError(f"pip wheel made no dlfunc wheel in {dest}.")
  return wheels[-1]


def _can_build_offline() -> bool:
  """setuptools able to make wheels without downloading anything (70.1+, or the ``wheel`` package beside it)."""
  import importlib.util

  try:
    v = tuple(int(x) for x in md.version("setuptools").split(".")[:2])
  except (md.PackageNotFoundError, ValueError):
    return False
  return v >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _norm(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(extra=EXTRA_GRADING_REQUIREMENTS) -> list[str]:
  """``name==version`` for every distribution the grader needs, as installed here (transitively)."""
  from packaging.requirements import Requirement

  env = {"extra": ""}
  todo = [Requirement(r) for r in (md.requires("dlfunc") or [])] + [Requirement(x) for x in extra]
  pins: dict[str, str] = {}
  while todo:
    req = todo.pop()
    if req.marker is not None and not req.marker.evaluate(env):
      continue
    key = _norm(req.name)
    if key in pins or key == "dlfunc":
      continue
    try:
      dist = md.distribution(req.name)
    except md.PackageNotFoundError:
      raise ValueError(
        f"{req.name} (needed for grading) is not installed here: pip install it, then export "
        "again, so its version can be pinned."
      ) from None
    pins[key] = f"{dist.metadata['Name']}=={dist.version}"
    for sub in dist.requires or []:
      r = Requirement(sub)
      if r.marker is not None and not any(r.marker.evaluate({"extra": e}) for e in {"", *req.extras}):
        continue
      r.marker = None
      todo.append(r)
  return sorted(pins.values(), key=str.lower)


def footprint_table(aid: str | None = None) -> str:
  """The measured memory/time table (autograder/footprint.json, made by benchmarks/grading_footprint.py)."""
  if not FOOTPRINT.is_file():
    return "(not measured yet: run benchmarks/grading_footprint.py)\n"
  data = json.loads(FOOTPRINT.read_text())
  rows = [
    "| assignment | grading time (s) | peak memory, grader + worker: PSS / RSS (MB) | largest process (MB) "
    "| on Gradescope |",
    "|---|---|---|---|---|",
  ]
  for k in sorted(data["assignments"]):
    d = data["assignments"][k]
    mark = " **<- this bundle**" if k == aid else ""
    pss = d.get("peak_pss_mb", d["peak_tree_mb"])
    advice = []
    if pss > 0.75 * GS_DEFAULT_MB:
      advice.append("raise memory to 1.5 GB or more")
    if 2 * d["seconds"] > 0.5 * GS_DEFAULT_S:
      advice.append("raise the timeout")
    rows.append(
      f"| {k}{mark} | {d['seconds']:.0f} | {pss:.0f} / {d['peak_tree_mb']:.0f} | {d['peak_single_mb']:.0f} "
      f"| {'; '.join(advice) or 'defaults suffice'} |"
    )
  return "\n".join(rows) + f"\n\nMeasured: {data['how']}\n"


def _assignment_files(a) -> list[tuple[str, pathlib.Path]]:
  out = []
  for p in sorted(a.path.rglob("*")):
    if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"):
      out.append((f"assignments/{a.id}/{p.relative_to(a.path).as_posix()}", p))
  return out


def _text(name: str) -> str:
  """A script or README template (autograder/platforms/_export_templates.py)."""
  from autograder.platforms import _export_templates

  return getattr(_export_templates, name.upper().replace(".", "_"))


# ---------------------------------------------------------------- Gradescope


def gradescope_zip(aid: str, out_zip, deadline_s: float = 540) -> pathlib.Path:
  """Write Gradescope's autograder zip for assignment ``aid``: setup.sh and run_autograder at the root."""
  a = _registry.load_assignment(aid)
  out_zip = pathlib.Path(out_zip)
  out_zip.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix="dlfunc-export-") as tmp:
    wheel = build_wheel(pathlib.Path(tmp))
    files: list[tuple[str, bytes, int]] = [
      ("setup.sh", _text("gradescope_setup.sh").encode(), EXEC),
      ("run_autograder", _text("gradescope_run_autograder").encode(), EXEC),
      ("requirements.txt", ("\n".join(pinned_requirements()) + "\n").encode(), 0o644),
      (
        "bundle.json",
        json.dumps(
          {
            "assignment": aid,
            "wheel": wheel.name,
            "deadline_s": deadline_s,
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          },
          indent=1,
        ).encode()
        + b"\n",
        0o644,
      ),
      ("README.md", _bundle_readme(a, wheel.name).encode(), 0o644),
      (wheel.name, wheel.read_bytes(), 0o644),
    ]
    files += [(name, p.read_bytes(), 0o644) for name, p in _assignment_files(a)]
    tmp_zip = out_zip.with_name(f".{out_zip.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
      for name, data, mode in files:
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.create_system = 3  # Unix, so the mode bits below are honoured
        info.external_attr = (stat.S_IFREG | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
    os.replace(tmp_zip, out_zip)
  return out_zip


def _bundle_readme(a, wheel_name: str) -> str:
  return _text("gradescope_README.md").format(
    aid=a.id,
    functions=", ".join(a.functions),
    max_score=f"{a.max_score:g}",
    wheel=wheel_name,
    total_timeout=f"{a.total_timeout:g}",
    timeout=f"{a.timeout:g}",
    memory_mb=a.memory_mb,
    footprint=footprint_table(a.id),
  )


# ---------------------------------------------------------------- PrairieLearn


def prairielearn_dir(aid: str, out_dir, image: str = "dlfunc-grader:latest", timeout_s: int = 300) -> pathlib.Path:
  """Write PrairieLearn external-grader files: ``tests/`` (entrypoint + assignment) and ``info.json`` snippet."""
  a = _registry.load_assignment(aid)
  out = pathlib.Path(out_dir)
  tests = out / "tests"
  if tests.exists():
    shutil.rmtree(tests)
  tests.mkdir(parents=True)
  run = tests / "run.sh"
  run.write_bytes(_text("prairielearn_run.sh").encode())
  run.chmod(EXEC)
  (tests / "bundle.json").write_text(json.dumps({"assignment": aid, "deadline_s": timeout_s - 30}, indent=1) + "\n")
  for name, p in _assignment_files(a):
    dest = tests / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(p, dest)
  snippet = {
    "externalGradingOptions": {
      "enabled": True,
      "image": image,
      "entrypoint": "/grade/tests/run.sh",
      "timeout": timeout_s,
    }
  }
  (out / "info.json.snippet").write_text(json.dumps(snippet, indent=2) + "\n")
  (out / "README.md").write_text(
    _text("prairielearn_README.md").format(
      aid=aid, image=image, timeout=timeout_s, snippet=json.dumps(snippet, indent=2)
    )
  )
  return out


# ---------------------------------------------------------------- CLI


def main(args) -> int:
  """``autograder export``: build the bundles the arguments ask for; print where each went and how long it took."""
  if not (args.gradescope or args.prairielearn):
    print("export: give --gradescope OUT.zip and/or --prairielearn DIR", file=sys.stderr)
    return 2
  if args.gradescope:
    t0 = time.monotonic()
    z = gradescope_zip(args.id, args.gradescope)
    print(
      f"wrote {z} ({z.stat().st_size / 2**20:.1f} MB, {time.monotonic() - t0:.0f} s): upload it as the "
      "assignment's autograder on Gradescope; see README.md inside for the settings to raise."
    )
  if args.prairielearn:
    d = prairielearn_dir(args.id, args.prairielearn)
    print(
      f"wrote {d / 'tests'} (copy to the question's tests/) and {d / 'info.json.snippet'} (merge into its "
      f"info.json); the image: deploy/Dockerfile."
    )
  return 0
