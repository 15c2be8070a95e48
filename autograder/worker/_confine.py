"""Kernel walls the worker puts up around itself before any submission code runs (Linux).

Each function is one independent layer and returns whether it took effect; the
worker (``_worker.confine``) applies them in this order, after importing
everything it needs and before it loads the submission:

- :func:`unshare` — new namespaces (a private, empty network; root only).
- :func:`landlock` — Landlock (kernel >= 5.13, works without root): the
  process may read only the folders it is given (the interpreter, its
  libraries, the autograder package), write only its scratch folder, make no
  TCP connection, and signal or ``ptrace`` nothing outside itself. Unlike an
  audit hook it is checked by the kernel on every open, so ``dir_fd``,
  ``/proc/<pid>/root``, ``ctypes`` and ``libc`` do not go around it.
- :func:`seccomp` — a seccomp filter refusing (EPERM) the system calls a
  submission never needs and an escape would: ``ptrace``,
  ``process_vm_readv/writev``, ``open_by_handle_at``, ``mount``, ``unshare``,
  ``setns``, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring``,
  ``socket``, ``keyctl``, ``kexec``... (x86-64 and arm64).
- :func:`drop_to` — when started as root, become an unprivileged uid/gid
  (one per worker, from ``AUTOGRADER_UIDS``): no signals to the grader or to
  other workers, no ``/proc/<pid>/environ`` or ``mem`` of other users, the
  grader's 0700 folders closed, and the sweep after a submission is "kill
  everything this uid owns". If the interpreter lives in a folder other
  users cannot read (a pyenv under ``/root``), the worker keeps only
  ``CAP_DAC_READ_SEARCH``, and only when Landlock and the seccomp filter
  (which refuses ``open_by_handle_at``) are both in force: Landlock then
  decides what can be read.

Only ``ctypes`` and the standard library are used; every step is best effort
and reports failure instead of raising.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_ARCH = platform.machine()

# ---------------------------------------------------------------- namespaces

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x40000000, 0x20000000


def unshare(flags: int) -> bool:
  """``unshare(2)`` with ``flags`` (``CLONE_NEW*``); True when the kernel allowed it, False otherwise."""
  try:
    return _libc.unshare(ctypes.c_int(flags)) == 0
  except (OSError, AttributeError):
    return False


def cover(paths: list[str], keep: list[str]) -> list[str]:
  """In a new mount namespace (root only), hide ``paths`` under empty read-only tmpfs mounts; return those hidden.

  A path that holds something in ``keep`` (the venv inside a checkout) is not hidden itself: its other
  entries are, one by one (folders under a tmpfs, files under ``/dev/null``).
  """
  if not unshare(CLONE_NEWNS):
    return []
  ms_rdonly, ms_nosuid, ms_nodev, ms_bind, ms_rec, ms_private = 1, 2, 4, 4096, 16384, 1 << 18
  if _libc.mount(b"none", b"/", None, ctypes.c_ulong(ms_rec | ms_private), None) != 0:
    return []
  keep = [os.path.realpath(k) for k in keep]
  hidden, todo = [], [os.path.realpath(p) for p in paths]
  while todo:
    p = todo.pop()
    if not os.path.lexists(p) or p == "/":
      continue
    if any(k == p or k.startswith(p + os.sep) for k in keep):
      if os.path.isdir(p) and not any(k == p for k in keep):
        todo.extend(os.path.join(p, n) for n in os.listdir(p))
      continue
    if os.path.isdir(p) and not os.path.islink(p):
      ok = (
        _libc.mount(
          b"tmpfs", os.fsencode(p), b"tmpfs", ctypes.c_ulong(ms_rdonly | ms_nosuid | ms_nodev), b"size=4k,mode=0555"
        )
        == 0
      )
    elif os.path.isfile(p) and not os.path.islink(p):
      ok = _libc.mount(b"/dev/null", os.fsencode(p), None, ctypes.c_ulong(ms_bind), None) == 0
    else:
      ok = False
    if ok:
      hidden.append(p)
  return hidden


def _prctl(option: int, arg: int = 0) -> int:
  return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def no_new_privs() -> bool:
  """PR_SET_NO_NEW_PRIVS: exec can never gain privileges (setuid binaries, file capabilities)."""
  return _prctl(38, 1) == 0


# ---------------------------------------------------------------- Landlock

_SYS_LL_CREATE, _SYS_LL_ADD, _SYS_LL_RESTRICT = 444, 445, 446  # the same on every architecture
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2


def landlock_abi() -> int:
  """The kernel's Landlock ABI version (0: not available)."""
  try:
    v = _libc.syscall(ctypes.c_long(_SYS_LL_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
  except (OSError, AttributeError):
    return 0
  return max(v, 0)


def landlock(read_only: list[str], read_write: list[str], write_files: list[str] | tuple[str, ...] = ()) -> int:
  """Restrict this thread (and everything it starts later) to the given paths; return the ABI used (0: none).

  ``read_only`` folders or files may be read and executed; ``read_write`` folders are free; ``write_files``
  (``/dev/null``) may also be written. From ABI 4 no TCP bind/connect; from ABI 6 no signals to processes
  outside the sandbox and no abstract unix sockets outside it.
  """
  abi = landlock_abi()
  if abi < 1:
    return 0
  fs = (
    _FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | (_FS_IOCTL_DEV if abi >= 5 else 0)
  )
  net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
  scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
  attr = struct.pack("<QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
  buf = ctypes.create_string_buffer(attr, len(attr))
  rfd = _libc.syscall(ctypes.c_long(_SYS_LL_CREATE), buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
  if rfd < 0:
    return 0
  try:
    ro = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
    rules = (
      [(p, ro) for p in read_only]
      + [(p, fs) for p in read_write]
      + [(p, ro | _FS_WRITE_FILE | (_FS_TRUNCATE if abi >= 3 else 0)) for p in write_files]
    )
    for path, access in rules:
      try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
      except OSError:
        continue
      try:
        if not os.path.isdir(path):
          access &= _FILE_ONLY
        rule = ctypes.create_string_buffer(struct.pack("<Qi", access, fd), 12)
        _libc.syscall(ctypes.c_long(_SYS_LL_ADD), ctypes.c_int(rfd), ctypes.c_int(1), rule, ctypes.c_uint32(0))
      finally:
        os.close(fd)
    if not no_new_privs():
      return 0
    if _libc.syscall(ctypes.c_long(_SYS_LL_RESTRICT), ctypes.c_int(rfd), ctypes.c_uint32(0)) != 0:
      return 0
    return abi
  finally:
    os.close(rfd)


# ---------------------------------------------------------------- seccomp

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_DENIED_SYSCALLS = {  # name: (x86-64, arm64)
  "ptrace": (101, 117),
  "process_vm_readv": (310, 270),
  "process_vm_writev": (311, 271),
  "open_by_handle_at": (304, 265),
  "name_to_handle_at": (303, 264),
  "kexec_load": (246, 104),
  "kexec_file_load": (320, 294),
  "bpf": (321, 280),
  "perf_event_open": (298, 241),
  "userfaultfd": (323, 282),
  "keyctl": (250, 219),
  "add_key": (248, 217),
  "request_key": (249, 218),
  "mount": (165, 40),
  "umount2": (166, 39),
  "unshare": (272, 97),
  "setns": (308, 268),
  "pivot_root": (155, 41),
  "chroot": (161, 51),
  "socket": (41, 198),
  "io_uring_setup": (425, 425),
  "open_tree": (428, 428),
  "move_mount": (429, 429),
  "fsopen": (430, 430),
  "fsmount": (432, 432),
  "mount_setattr": (442, 442),
  "personality": (135, 92),
}


def seccomp() -> bool:
  """Install the filter on every thread of this process (TSYNC); False where unsupported."""
  arch = _AUDIT_ARCH.get(_ARCH)
  if arch is None:
    return False
  col = 0 if _ARCH == "x86_64" else 1
  nrs = sorted({v[col] for v in _DENIED_SYSCALLS.values()})
  ld_w_abs, jeq_k, jge_k, ret_k = 0x20, 0x15, 0x35, 0x06
  allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
  prog = [(ld_w_abs, 0, 0, 4), (jeq_k, 1, 0, arch), (ret_k, 0, 0, deny), (ld_w_abs, 0, 0, 0)]
  if _ARCH == "x86_64":
    prog.append((jge_k, len(nrs) + 1, 0, 0x40000000))  # x32 system calls: refused
  for i, nr in enumerate(nrs):
    prog.append((jeq_k, len(nrs) - i, 0, nr))
  prog += [(ret_k, 0, 0, allow), (ret_k, 0, 0, deny)]
  raw = b"".join(struct.pack("<HBBI", *ins) for ins in prog)
  filt = ctypes.create_string_buffer(raw, len(raw))
  fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(filt))
  fbuf = ctypes.create_string_buffer(fprog, len(fprog))
  if not no_new_privs():
    return False
  sys_seccomp = 317 if _ARCH == "x86_64" else 277
  # SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_TSYNC: all threads, or none
  return _libc.syscall(ctypes.c_long(sys_seccomp), ctypes.c_uint(1), ctypes.c_uint(1), fbuf) == 0


# ---------------------------------------------------------------- uid drop

_CAP_DAC_READ_SEARCH = 2


def drop_to(uid: int, gid: int, keep_read_search: bool = False) -> bool:
  """Become ``uid``/``gid`` with no supplementary groups (all threads); optionally keep CAP_DAC_READ_SEARCH."""
  try:
    if keep_read_search:
      _prctl(8, 1)  # PR_SET_KEEPCAPS: keep the permitted set across setuid (this thread only)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
  except OSError:
    return False
  if keep_read_search:
    _prctl(8, 0)
    bit = 1 << _CAP_DAC_READ_SEARCH
    head = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0), 8)
    data = ctypes.create_string_buffer(struct.pack("<6I", bit, bit, 0, 0, 0, 0), 24)
    sys_capset = 126 if _ARCH == "x86_64" else 91
    if _libc.syscall(ctypes.c_long(sys_capset), head, data) != 0:
      pass  # no capability: files other users cannot read stay closed (imports done before the drop work)
  return os.getuid() == uid and os.geteuid() == uid


def world_readable(path: str) -> bool:
  """Whether a user with no relation to the owner can reach and read ``path`` (every parent searchable)."""
  path = os.path.realpath(path)
  try:
    st = os.stat(path)
  except OSError:
    return False
  if not st.st_mode & 0o004:
    return False
  parent = os.path.dirname(path)
  while True:
    try:
      if not os.stat(parent).st_mode & 0o001:
        return False
    except OSError:
      return False
    if parent == "/":
      return True
    parent = os.path.dirname(parent)
