"""Templates of the files ``autograder export`` writes (kept as text here so they need no package data).

The scripts use LF line endings only and take their root from ``AUTOGRADER_ROOT``.
"""

GRADESCOPE_SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image (with internet). It installs, into the python3
# found on PATH (a virtual environment next to it where that Python is too old or managed by the system):
# the pinned dependencies (requirements.txt), then the project from the wheel in this folder.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
cd "$SRC"

new_enough() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }
managed() { "$1" -c 'import os, sys, sysconfig; sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(
  os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)' >/dev/null 2>&1; }
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  else
    return 1
  fi
}

PY="$(command -v python3 || true)"
if [ -z "$PY" ] || ! new_enough "$PY"; then
  # Gradescope's Ubuntu 22.04 image has Python 3.10; the project needs 3.11 or newer.
  if ! command -v python3.11 >/dev/null 2>&1; then
    apt_install python3.11 python3.11-venv || {
      apt_install software-properties-common && add-apt-repository -y ppa:deadsnakes/ppa \
        && apt_install python3.11 python3.11-venv; } \
      || { echo "setup.sh: Python 3.11+ is needed and could not be installed" >&2; exit 1; }
  fi
  python3.11 -m venv "$ROOT/venv"
  PY="$ROOT/venv/bin/python"
elif managed "$PY" || ! "$PY" -m pip --version >/dev/null 2>&1; then
  # A system Python that pip may not change (PEP 668), or one without pip: a virtual environment made from it.
  "$PY" -m venv "$ROOT/venv" || { apt_install python3-venv && "$PY" -m venv "$ROOT/venv"; }
  PY="$ROOT/venv/bin/python"
fi

"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
WHEEL="$("$PY" -c 'import json; print(json.load(open("bundle.json"))["wheel"])')"
"$PY" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$SRC/$WHEEL"

# bubblewrap: the worker's sandbox where the container allows it (the grader falls back by itself where not).
command -v bwrap >/dev/null 2>&1 || apt_install bubblewrap || echo "setup.sh: bubblewrap not installed (fallback)"

printf '%s\n' "$PY" > "$SRC/.python"
# The grader runs as root; student code runs as an unprivileged uid that must not read the hidden tests.
chmod 700 "$SRC"
AUTOGRADER_ASSIGNMENTS="$SRC/assignments" JAX_PLATFORMS=cpu "$PY" -P -m autograder.cli list
echo "setup.sh: installed into $PY"
"""

GRADESCOPE_RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this once per submission: the student's files are in $ROOT/submission, and the results must
# be in $ROOT/results/results.json. Whatever happens, a valid results.json is left there.
set -u
START=$(date +%s)
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
chmod 700 "$SRC" "$ROOT/results" 2>/dev/null || true
rm -f "$RESULTS"
PY="$(cat "$SRC/.python" 2>/dev/null || command -v python3 || echo python3)"
export AUTOGRADER_ASSIGNMENTS="$SRC/assignments" JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3
cd "$ROOT"
"$PY" -P -m autograder.platforms._adapters gradescope "$ROOT"   # -P: the working folder is not on sys.path
rc=$?
if [ "$rc" -ne 0 ] || [ ! -s "$RESULTS" ]; then
  # The grader could not run at all (or was killed, e.g. out of memory): one visible test says so, score 0.
  SECS=$(( $(date +%s) - START ))
  MSG="The autograder itself failed (exit status $rc) before it could grade this submission; this is not"
  MSG="$MSG necessarily your code's fault. Your score is 0 for now: your instructor can see the details and regrade."
  {
    printf '{"score": 0, "execution_time": %d, "output": "%s", "output_format": "text", ' "$SECS" "$MSG"
    printf '"visibility": "visible", "stdout_visibility": "hidden", "tests": [{"name": '
    printf '"The autograder failed on this submission", "score": 0, "max_score": 0, "status": "failed", '
    printf '"output": "%s", "output_format": "text", "visibility": "visible", "tags": []}]}\n' "$MSG"
  } > "$RESULTS"
  echo "run_autograder: the grader exited with status $rc; wrote a results.json saying so" >&2
fi
exit 0
"""

GRADESCOPE_README_MD = """# Gradescope autograder for dlfunc assignment {aid}

Made by `autograder export {aid} --gradescope OUT.zip`. Upload the zip as the assignment's autograder
(Configure Autograder -> Zip file upload). Students submit `{aid}.ipynb` or `{aid}.py` (a folder of files is
fine: the file defining the most graded functions is graded, and the results say which).

- Graded functions: {functions}; {max_score} points. Hidden tests are shown to students once grades are published
  (`after_published`), public tests at once (`visible`). Set the assignment's points to {max_score}.
- `setup.sh` installs Python 3.11 where the image lacks it (Ubuntu 22.04 ships 3.10), the pinned dependencies
  (`requirements.txt`), the project from `{wheel}`, and bubblewrap. `run_autograder` grades with the normal
  isolated grader: student code runs in a separate worker process (bubblewrap where the container allows it,
  otherwise an unprivileged uid per worker since the grader is root), never reads `/autograder/source` (mode
  700: the hidden tests and the reference) and cannot write `/autograder/results`. The results say which
  isolation was used. A crash of the grader itself, a submission without a `.py`/`.ipynb`, or grading past
  `deadline_s` in `bundle.json` all give a valid results.json with one visible message and score 0.
- Per-call limit {timeout} s, {total_timeout} s per submission, {memory_mb} MB address space for the worker.

## Memory and time (Gradescope's default container: about 768 MB, 0.5 CPU, 10 minutes)

Peak memory of a full grade of each assignment's reference solution, grader and worker together, and its time:

{footprint}
PSS counts the pages grader and worker share (JAX's libraries) once, as a container's memory limit does; RSS
counts them twice (an upper bound). Leave headroom: the limit also charges the page cache. Where the last column
says so, raise the container's memory in the autograder settings (an out-of-memory kill gives the "autograder
failed" result, score 0). At 0.5 CPU a grade takes about twice the time above (measured on 2 cores), far below the
10 minutes; if you raise the timeout, raise `deadline_s` in `bundle.json` with it (about a minute below it).

## Try it without Gradescope

    mkdir -p /tmp/ag/source /tmp/ag/submission /tmp/ag/results
    unzip autograder.zip -d /tmp/ag/source
    AUTOGRADER_ROOT=/tmp/ag bash /tmp/ag/source/setup.sh      # installs into the python3 on PATH
    cp {aid}.py /tmp/ag/submission/
    AUTOGRADER_ROOT=/tmp/ag bash /tmp/ag/source/run_autograder && cat /tmp/ag/results/results.json
"""

PRAIRIELEARN_RUN_SH = r"""#!/usr/bin/env bash
# PrairieLearn's external grader entrypoint: the student's files in $ROOT/student, this folder in $ROOT/tests;
# writes $ROOT/results/results.json (at most 1 MB; score in [0, 1]), whatever happens.
set -u
ROOT="${AUTOGRADER_ROOT:-/grade}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
chmod -R go-rwx "$ROOT/tests" "$ROOT/results" 2>/dev/null || true
chmod -R go-rwx "$ROOT/serverFilesCourse" "$ROOT/data" 2>/dev/null || true
rm -f "$RESULTS"
PY="${AUTOGRADER_PYTHON:-$(command -v python3 || echo python3)}"
export AUTOGRADER_ASSIGNMENTS="$ROOT/tests/assignments" JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=3
cd "$ROOT"
"$PY" -P -m autograder.platforms._adapters prairielearn "$ROOT"
rc=$?
if [ "$rc" -ne 0 ] || [ ! -s "$RESULTS" ]; then
  printf '{"gradable": true, "score": 0, "message": "The autograder itself failed (exit status %d); %s", %s}\n' \
    "$rc" "ask your instructor to regrade." '"output": "", "tests": []' > "$RESULTS"
fi
exit 0
"""

PRAIRIELEARN_README_MD = """# PrairieLearn external grader for dlfunc assignment {aid}

Made by `autograder export {aid} --prairielearn DIR`.

1. Build the grading image (deploy/Dockerfile in the dlfunc repository) and push it as `{image}` (or edit the
   name below).
2. Copy `tests/` into the question's folder (PrairieLearn mounts it at `/grade/tests`; keep `run.sh` executable,
   or write the entrypoint as `bash /grade/tests/run.sh`: PrairieLearn splits it on spaces and it replaces the
   image's own entrypoint).
3. Merge into the question's `info.json` (timeout in seconds):

{snippet}

The question's file-upload element should accept `{aid}.py` or `{aid}.ipynb`. `run.sh` grades `/grade/student`
with the isolated grader and writes `/grade/results/results.json`: `score` in [0, 1], one entry per test with
`points`/`max_points`, `gradable: false` with `format_errors` for a `.py` that Python cannot compile (or a
submission without a gradable file), at most 1 MB. Set `AUTOGRADER_ROOT` to run it elsewhere than `/grade`.
"""
