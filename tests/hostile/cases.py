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
    Case("monkeypatch_checks", "import autograder._checks as C, autograder._ops as O\n"
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
