"""Hostile and broken submissions, built for any assignment.

Each case takes the assignment's reference solution (as a module) and replaces
ONE graded function, the *victim*, with a hostile body. Where the hostile act
could succeed (reading hidden tests, writing other files, the network,
importing dlfunc), the body then returns the *correct* answer — so if isolation
failed, the victim would pass and the test would notice. Module-level cases do
their damage while the submission is imported.

``expect``: "victim" — the victim's tests score 0, everything else full marks;
"full" — contained at import time, full marks; "zero" — nothing can be graded.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import textwrap


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  body: str              # body of the victim (indented by the builder); {victim} and context keys available
  expect: str = "victim"
  module_level: bool = False
  notebook: bool = False


CASES = [
    Case("hang", "while True:\n  pass"),
    Case("sleep_forever", "import time\ntime.sleep(10**6)"),
    Case("exception", "raise ValueError('broken on purpose')"),
    Case("sys_exit", "import sys\nsys.exit(3)"),
    Case("os_exit", "import os\nos._exit(7)"),
    Case("segfault", "import ctypes\nctypes.string_at(0)"),
    Case("oom", "import numpy as np\nhog = np.ones((1 << 20, 1 << 13))  # 64 GiB\nreturn hog"),
    Case("oom_jax", "import jax.numpy as jnp\nreturn jnp.ones((1 << 36,))"),
    Case("fork_bomb", "import os\nwhile True:\n  os.fork()"),
    Case("subprocess_left_behind", "import subprocess\nsubprocess.Popen(['sleep', '1000'])\n"
         "return _original(*args, **kwargs)"),
    Case("ctypes_fork_left_behind", "import ctypes, time\nif ctypes.CDLL(None).fork() == 0:\n"
         "  time.sleep(1000)\nraise RuntimeError('forked a child with ctypes')"),
    Case("output_flood", "import os, sys\nfor _ in range(300):\n  print('x' * 100000)\n"
         "os.write(1, b'y' * 10**7)\nos.write(2, b'z' * 10**7)\nreturn None"),
    Case("nan", "import jax.numpy as jnp\nout = _original(*args, **kwargs)\n"
         "import jax\nreturn jax.tree_util.tree_map(lambda a: jnp.full(jnp.shape(a), jnp.nan), out)"),
    Case("wrong_type", "return 'not an array'"),
    Case("returns_function", "return lambda: 0"),
    Case("wrong_shape", "import jax, jax.numpy as jnp\nout = _original(*args, **kwargs)\n"
         "return jax.tree_util.tree_map(lambda a: jnp.zeros((1,) + jnp.shape(a)), out)"),
    Case("keyboard_interrupt", "raise KeyboardInterrupt"),
    Case("monkeypatch_numpy", "import numpy as np\nnp.allclose = lambda *a, **k: True\n"
         "np.isclose = lambda a, b, **k: np.ones(np.shape(a), bool)\nreturn None"),
    Case("monkeypatch_jax", "import jax\njax.jit = lambda f, *a, **k: f\njax.vmap = lambda f, *a, **k: f\n"
         "return _original(*args, **kwargs)"),
    Case("monkeypatch_checks", "import autograder.grader._checks as C, autograder.worker._ops as O\n"
         "C.allclose = lambda *a, **k: None\nC.matches = lambda *a, **k: None\nO.to_numpy = lambda t, n: t\n"
         "return None"),
    Case("kill_grader", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)\n"
         "return _original(*args, **kwargs)"),
    Case("read_hidden_tests", "src = open({tests_path!r}).read()\nassert 'hidden' in src\n"
         "return _original(*args, **kwargs)"),
    Case("read_other_submission", "src = open({other_path!r}).read()\nassert src\n"
         "return _original(*args, **kwargs)"),
    Case("rewrite_files", "open({other_path!r}, 'w').write('# overwritten')\n"
         "open({self_path!r}, 'a').write('# tampered')\nreturn _original(*args, **kwargs)"),
    Case("network_connect", "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
         "s.sendall(b'exfiltrated')\nreturn _original(*args, **kwargs)"),
    Case("network_listen", "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n"
         "return _original(*args, **kwargs)"),
    Case("import_dlfunc", "import dlfunc\nreturn getattr(dlfunc, 'nn')\n"),
    Case("dlfunc_via_importlib", "import importlib\nm = importlib.import_module('dlfunc.nn')\n"
         "return getattr(m, {victim!r})(*args, **kwargs)"),
    # At import time: contained, the rest is graded normally.
    Case("top_sys_exit", "import sys\nsys.exit(1)", expect="full", module_level=True),
    Case("top_keyboard_interrupt", "raise KeyboardInterrupt", expect="full", module_level=True),
    Case("top_flood", "for _ in range(100):\n  print('spam ' * 20000)", expect="full", module_level=True),
    Case("top_monkeypatch", "import numpy, jax\nnumpy.asarray = None\njax.jit = None", expect="full",
         module_level=True),
    Case("top_os_exit", "import os\nos._exit(0)", expect="zero", module_level=True),
    Case("notebook_magics_and_failing_cell", "", expect="full", notebook=True),
]


def build(case: Case, reference_src: str, victim: str, dest: pathlib.Path, **context) -> pathlib.Path:
  """Write the hostile submission for ``case`` to ``dest`` (.py, or .ipynb for notebook cases)."""
  ctx = dict(context, victim=victim)
  if case.notebook:
    cells = [
        "%matplotlib inline\n!rm -rf /tmp/should-not-run\nimport jax",
        "%%bash\necho this cell magic must be skipped",
        "raise RuntimeError('this cell fails; the rest is still graded')",
        reference_src,
    ]
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
                    for c in cells], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = dest.with_suffix(".ipynb")
    path.write_text(json.dumps(nb))
    return path
  body = case.body.format(**ctx)
  if case.module_level:
    src = reference_src + "\n\n" + body + "\n"
  else:
    src = (reference_src + f"\n\n_original = {victim}\n\n\ndef {victim}(*args, **kwargs):\n"
           + textwrap.indent(body, "  ") + "\n")
  path = dest.with_suffix(".py")
  path.write_text(src)
  return path


# ---------------------------------------------------------------- issue 18: walls the kernel enforces
#
# Each KERNEL_CASES entry is a whole submission for assignment 01 (relu, sigmoid, softmax graded): the reference
# solution with one function replaced (``fn``) by a body that attacks the grader and returns the *correct* answer
# only if the attack worked, so a hole shows up as points. ``expect``: the points the honest grade gives, as
# {"relu": full?, ...}: "victim" (fn scores 0, the others full), "full", "zero"; ``message``: text the report
# must hold. Context keys: tests_path, site_packages, secret, assignment_py.

@dataclasses.dataclass(frozen=True)
class KernelCase:
  name: str
  fn: str = "relu"
  body: str = ""
  expect: str = "victim"
  message: str = ""
  kind: str = "py"          # py | raw (the builder writes something else: see build_kernel)


_CORRECT = {"relu": "jnp.maximum(args[0], 0)", "sigmoid": "1 / (1 + jnp.exp(-args[0]))",
            "softmax": "jax.nn.softmax(*args, **kwargs)"}

KERNEL_CASES = [
    # 1. files: a directory fd opened outside scratch, then openat relative to it (the audit hook sees only
    #    the relative name).
    KernelCase("dirfd_read_hidden", body="import os\nd = os.open('/', os.O_RDONLY)\n"
               "fd = os.open({tests_path!r}.lstrip('/'), os.O_RDONLY, dir_fd=d)\n"
               "assert b'def test_' in os.read(fd, 1 << 20)\nreturn {correct}"),
    KernelCase("dirfd_write_pth", body="import os\nd = os.open({site_packages!r}, os.O_RDONLY)\n"
               "fd = os.open('zz_autograder_escape.pth', os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=d)\n"
               "os.write(fd, b'import os\\n')\nreturn {correct}"),
    KernelCase("read_checkout_git", body="import os\nd = os.open('/', os.O_RDONLY)\n"
               "fd = os.open(({checkout!r} + '/.git').lstrip('/'), os.O_RDONLY, dir_fd=d)\n"
               "assert os.read(fd, 100)\nreturn {correct}"),
    KernelCase("sys_path_checkout", body="import sys, os\n"
               "hit = [p for p in sys.path if os.path.isdir(os.path.join(p, 'assignments'))]\n"
               "assert hit\nreturn {correct}"),
    # /proc: the grader's environment (a secret) and memory.
    KernelCase("proc_environ_secret", body="import os\nfound = None\nfor p in os.listdir('/proc'):\n"
               "  try:\n    data = open('/proc/%s/environ' % p, 'rb').read()\n  except OSError:\n    continue\n"
               "  if {secret!r}.encode() in data:\n    found = data\n    break\n"
               "assert found\nprint(found[:2000])\nreturn {correct}"),
    KernelCase("proc_mem", body="import os\nok = False\nfor p in os.listdir('/proc'):\n"
               "  if not p.isdigit() or int(p) == os.getpid():\n    continue\n"
               "  try:\n    maps = open('/proc/%s/maps' % p).readline()\n"
               "    start = int(maps.split('-')[0], 16)\n    f = open('/proc/%s/mem' % p, 'rb')\n"
               "    f.seek(start)\n    ok = ok or bool(f.read(16))\n  except (OSError, ValueError):\n    continue\n"
               "assert ok\nreturn {correct}"),
    # 2. processes: a libc fork that leaves the session and the folder, and hunts the sibling workers.
    KernelCase("libc_fork_escape", body="import ctypes, os, time\nlibc = ctypes.CDLL(None)\n"
               "if libc.fork() == 0:\n  try:\n    libc.setsid()\n    libc.chdir(b'/')\n    me = os.getpid()\n"
               "    for _ in range(600):\n      for p in filter(str.isdigit, os.listdir('/proc')):\n"
               "        try:\n          cmd = open('/proc/%s/cmdline' % p, 'rb').read()\n        except OSError:\n"
               "          continue\n"
               "        if b'autograder.worker._worker' in cmd and int(p) not in (me, os.getppid()):\n"
               "          libc.kill(int(p), 9)\n      time.sleep(0.1)\n  finally:\n    libc._exit(0)\n"
               "time.sleep(2)\nraise RuntimeError('forked a hunter with libc')"),
    # 3. rules where the code runs (the static scan cannot see these spellings).
    KernelCase("forbidden_private_path", fn="relu", message="forbids",
               body="import jax._src.nn.functions as F\nreturn F.relu(*args)"),
    KernelCase("forbidden_getattr", fn="sigmoid", message="forbids",
               body="import jax\nreturn getattr(jax.nn, 'sigm' + 'oid')(*args)"),
    KernelCase("forbidden_vars_import_module", fn="softmax", message="forbids",
               body="import importlib\n"
               "return vars(importlib.import_module('jax.nn'))['soft' + 'max'](*args, **kwargs)"),
    # 4. parsing.
    KernelCase("nb_source_ints", kind="raw", expect="zero", message="source is not text"),
    KernelCase("nb_nested_deep", kind="raw", expect="zero", message="nested too deeply"),
    KernelCase("huge_expression", kind="raw", expect="zero", message="cannot be compiled by Python"),
    KernelCase("blank_lines_folder", kind="raw", expect="full"),
    KernelCase("symlink_folder", kind="raw", expect="zero", message="symbolic link"),
    KernelCase("symlink_to_good", kind="raw", expect="zero", message="symbolic link"),
    # 5. answer frames: a forged frame written straight onto the answer pipe (one 4-byte blob referenced
    #    200,000 times, each cast to a large dtype).
    KernelCase("forged_frame", message="malformed answer",
               body="import json, os, struct, sys, io, numpy as np\nb = io.BytesIO()\n"
               "np.lib.format.write_array(b, np.zeros(1, np.float32))\nblob = b.getvalue()\n"
               "refs = {{'$l': [{{'$a': 0, 'dtype': '(2000,)f8'}}] * 150000}}\n"
               "head = json.dumps({{'tree': {{'$d': [['ok', True], ['result', refs]]}}, 'blobs': [len(blob)]}})\n"
               "body = struct.pack('<I', len(head)) + head.encode() + blob\n"
               "os.write(int(sys.argv[2]), struct.pack('<Q', len(body)) + body)\nreturn {correct}"),
]


def build_kernel(case: KernelCase, reference_src: str, folder: pathlib.Path, **context) -> pathlib.Path:
  """Write ``case``'s submission into ``folder``; return its path (a file, a folder or a link)."""
  dest = folder / case.name
  if case.kind == "py":
    body = case.body.format(correct=_CORRECT[case.fn], **context)
    src = (reference_src + f"\n\nimport jax, jax.numpy as jnp\n\n\ndef {case.fn}(*args, **kwargs):\n"
           + textwrap.indent(body, "  ") + "\n")
    dest = dest.with_suffix(".py")
    dest.write_text(src)
    return dest
  if case.name == "nb_source_ints":
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": [105, 109, 112], "outputs": []}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    dest = dest.with_suffix(".ipynb")
    dest.write_text(json.dumps(nb))
  elif case.name == "nb_nested_deep":
    dest = dest.with_suffix(".ipynb")
    dest.write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
  elif case.name == "huge_expression":
    dest = dest.with_suffix(".py")
    dest.write_text(reference_src + "\n\nx = " + "+".join(["1"] * 200_000) + "\n")
  elif case.name == "blank_lines_folder":
    dest.mkdir()
    (dest / "answer.py").write_text(reference_src)
    (dest / "blank.py").write_text("\n" * 150_000)
  elif case.name == "symlink_folder":
    dest.mkdir()
    (dest / "assignment.py").symlink_to(context["assignment_py"])
  elif case.name == "symlink_to_good":
    dest = dest.with_suffix(".py")
    dest.symlink_to(context["good_path"])
  return dest
