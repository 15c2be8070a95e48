"""What a submission may not call, enforced where its code runs (the worker imports this before the submission).

- ``dlfunc`` is replaced by stand-ins (:class:`DlfuncFinder`): a submission can import it, and calling any of its
  functions raises "uses dlfunc's implementation", so only the function that called it scores 0;
- the assignment's ``FORBIDDEN`` rules (:class:`Rules`): stand-ins for forbidden functions in every loaded module,
  a call tracer for forbidden libraries, and an import watch, armed only while a function that forbids them is
  being graded.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import types

from autograder.worker import _ops

# ---------------------------------------------------------------- dlfunc stand-ins


class Refused:
  def __init__(self, path):
    object.__setattr__(self, "_path", path)

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return Refused(f"{self._path}.{name}")

  def __call__(self, *_a, **_k):
    raise _ops.RefusedError(
      f"uses dlfunc's implementation ({self._path}), which submissions may not call. Write it yourself with jax.numpy."
    )

  def __repr__(self):
    return f"<refused {self._path}>"


class RefusedModule(types.ModuleType):
  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return Refused(f"{self.__name__}.{name}")


class DlfuncFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002  (MetaPathFinder's signature)
    if fullname == "dlfunc" or fullname.startswith("dlfunc."):
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    m = RefusedModule(spec.name)
    m.__path__ = []
    return m

  def exec_module(self, module):
    pass


# ---------------------------------------------------------------- the assignment's rules, where the code runs


class Rules:
  """``FORBIDDEN`` enforced at run time: ``{graded function: (dotted names)}``.

  A name that is a function (``jax.nn.relu``) is replaced, in every loaded module's namespace (so
  ``jax._src.nn.functions.relu``, ``getattr(jax.nn, "re" + "lu")`` and ``vars(jax.nn)["relu"]`` all give
  the stand-in), by a stand-in that calls the original except while a graded function that forbids it is
  being graded. A name that is a module or package (``jax.nn.initializers``, ``optax``) gets stand-ins for
  every public function it implements (and its submodules, when loaded); a third-party library that is
  loaded is also watched by a call tracer during the grading of a function that forbids it (classes such as
  flax modules have no stand-ins); importing a forbidden package during that grading counts as a use. A
  refusal marks the whole call refused even if the submission catches the exception.
  """

  def __init__(self, forbidden: dict):
    self.current: str | None = None
    self.hit: str | None = None
    self.fn_rules: dict[int, tuple[object, str, set]] = {}  # id(original) -> (original, name, functions)
    self.stand_ins: dict[int, object] = {}
    self.files: dict[str, tuple[tuple, frozenset, str]] = {}  # function -> (package folders, (), names)
    self.packages: dict[str, list[str]] = {}  # function -> packages whose import is a use
    self._subpackages: dict[str, set] = {}  # package -> functions; submodules get stand-ins
    self._done_modules: set[str] = set()
    self._finder = None
    for fn, names in (forbidden or {}).items():
      if not isinstance(names, (list, tuple)):
        continue
      for name in names:
        if not isinstance(name, str) or name == "dlfunc" or name.startswith("dlfunc."):
          continue
        obj = resolve(name)
        if obj is not None and not isinstance(obj, types.ModuleType) and callable(obj):
          self._add(obj, name, fn)
        else:
          self._module_rule(fn, name, obj)
    self._install()

  def _add(self, obj, name, fn):
    if isinstance(obj, type) or id(obj) in self.stand_ins and self.fn_rules[id(obj)][0] is not obj:
      return
    entry = self.fn_rules.setdefault(id(obj), (obj, name, set()))
    entry[2].add(fn)
    if id(obj) not in self.stand_ins:
      self.stand_ins[id(obj)] = self._stand_in(obj, name, entry[2])

  def _module_functions(self, mod, fn):
    """Stand-ins for the public functions a forbidden module implements (jax.nn: relu, softmax... from
    jax._src.nn), not for what it merely re-exports from elsewhere (jax.nn.tanh is jax.numpy.tanh)."""
    name = mod.__name__
    top, last = name.split(".")[0], name.rsplit(".", 1)[-1]
    for k, v in list(vars(mod).items()):
      if k.startswith("_") or not callable(v) or isinstance(v, (type, types.ModuleType)):
        continue
      home = getattr(v, "__module__", None) or ""
      if not isinstance(home, str):
        continue
      ours = (
        home == name
        or home.startswith(name + ".")
        or (home.startswith(top + "._src.") and any(last in part for part in home.split(".")[2:]))
      )
      if ours:
        self._add(v, f"{name}.{k}", fn)
    self._done_modules.add(name)

  def _module_rule(self, fn, name, mod):
    dirs, files, names = self.files.get(fn, ((), frozenset(), ""))
    dirs = list(dirs)
    top_level = "." not in name
    if isinstance(mod, types.ModuleType):
      self._module_functions(mod, fn)
      if hasattr(mod, "__path__"):
        self._subpackages.setdefault(name, set()).add(fn)  # its submodules, loaded later, get stand-ins
        self.packages.setdefault(fn, []).append(name)  # and importing one of them is a use
      if top_level and hasattr(mod, "__path__"):
        dirs.extend(os.path.join(d, "") for d in mod.__path__)  # a library (optax): all of its code
    else:
      try:
        spec = importlib.util.find_spec(name) if top_level else None
      except (ImportError, ValueError):
        spec = None
      if spec is not None and spec.submodule_search_locations:
        dirs.extend(os.path.join(d, "") for d in spec.submodule_search_locations)
      self.packages.setdefault(fn, []).append(name)
    self.files[fn] = (tuple(dirs), frozenset(), (names + ", " if names else "") + name)

  def _stand_in(self, original, name, functions):
    rules = self

    def stand_in(*args, **kwargs):
      if rules.current in functions:
        rules.hit = name
        raise _ops.RefusedError(f"calls {name}, which this assignment forbids for {rules.current}.")
      return original(*args, **kwargs)

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
      try:
        setattr(stand_in, attr, getattr(original, attr))
      except (AttributeError, TypeError):
        pass
    return stand_in

  def _install(self):
    """Replace every reference to a forbidden function in the loaded modules' namespaces."""
    if not self.stand_ins:
      return
    stand_ins, rules = self.stand_ins, self.fn_rules
    for m in list(sys.modules.values()):
      d = getattr(m, "__dict__", None)
      if not isinstance(d, dict) or stand_ins.keys().isdisjoint(map(id, list(d.values()))):
        continue  # (the test above runs in C: most modules hold none of them)
      for k, v in list(d.items()):
        s = stand_ins.get(id(v))
        if s is not None and rules[id(v)][0] is v:
          try:
            d[k] = s
          except TypeError:
            pass

  def _late_submodules(self):
    """Submodules of a forbidden package loaded since (by the submission): stand-ins for them too."""
    new = False
    for pkg, fns in self._subpackages.items():
      for mname in [m for m in list(sys.modules) if m.startswith(pkg + ".") and m not in self._done_modules]:
        mod = sys.modules.get(mname)
        if isinstance(mod, types.ModuleType):
          for fn in fns:
            self._module_functions(mod, fn)
          new = True
    if new:
      self._install()

  # -- during one graded call

  def enter(self, fn: str):
    """Start watching one graded call of ``fn``: arm its forbidden-use rule (a tracer and an import watch)."""
    self.current, self.hit = fn, None
    rule = self.files.get(fn)
    if rule is None:
      return
    if self._subpackages:
      self._late_submodules()
    dirs, files, names = rule
    if dirs and any(
      (getattr(m, "__file__", None) or "").startswith(dirs)
      for m in [sys.modules.get(n.split(".")[0]) for n in names.split(", ")]
      if m is not None
    ):
      self._trace(dirs, names)  # a library it may not use is loaded: watch every call into it
    self._watch_imports(fn)

  def _trace(self, dirs, names):
    rules = self

    def tracer(frame, event, arg):  # noqa: ARG001  (sys.settrace's signature)
      if event == "call":
        if frame.f_code.co_filename.startswith(dirs):
          rules.hit = names
          raise _ops.RefusedError(f"calls into {names}, which this assignment forbids for {rules.current}.")
      return None

    sys.settrace(tracer)
    threading.settrace(tracer)

  def _watch_imports(self, fn):
    pk = self.packages.get(fn)
    if pk:
      self._finder = ImportWatch(self, tuple(pk))
      sys.meta_path.insert(0, self._finder)

  def exit(self) -> str | None:
    """Stop watching; the forbidden name the call used, or None."""
    sys.settrace(None)
    threading.settrace(None)
    f = getattr(self, "_finder", None)
    if f is not None:
      try:
        sys.meta_path.remove(f)
      except ValueError:
        pass
      self._finder = None
    hit, self.current, self.hit = self.hit, None, None
    return hit


class ImportWatch(importlib.abc.MetaPathFinder):
  def __init__(self, rules, names):
    self.rules, self.names = rules, names

  def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002  (MetaPathFinder's signature)
    for n in self.names:
      if fullname == n or fullname.startswith(n + "."):
        self.rules.hit = n
        raise _ops.RefusedError(f"imports {n}, which this assignment forbids for {self.rules.current}.")
    return None


def resolve(name: str):
  """The object a dotted name names (``None`` if it cannot be found); imports only inside packages already
  imported (``jax.scipy.special`` once ``jax`` is loaded), never a new package (``optax``)."""
  parts = name.split(".")
  if parts[0] not in sys.modules:
    return None
  for i in range(len(parts), 0, -1):
    modname = ".".join(parts[:i])
    mod = sys.modules.get(modname)
    if mod is None:
      try:
        mod = importlib.import_module(modname)
      except Exception:  # noqa: BLE001, S112  (not a module: try the parent)
        continue
    obj = mod
    for p in parts[i:]:
      obj = getattr(obj, p, None)
      if obj is None:
        return None
    return obj
  return None
