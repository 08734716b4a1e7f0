"""The wall around a model-written program: kernel layers first, the audit hook second.

A program runs in a child forked from an executor worker (arc25.exec_worker; the child's side is
arc25.exec_child). Before its code is compiled the child enters the sandbox, which stacks up to
three layers:

- **Landlock** (Linux >= 5.13, an LSM): the child may read files only beneath the
  directories its imports live in (the standard library, site-packages, the DSL), and
  may write, create, remove or link nothing anywhere: no FIFOs, no device nodes, no
  files. `/proc` is not beneath them, so `/proc/<parent>/cmdline`, any `environ` and
  the run folder are unreadable. From ABI 4 TCP bind/connect are refused; from ABI 6
  signals and abstract unix sockets cannot leave the child.
- **seccomp-bpf**: a filter (built once per worker: a binary search on the syscall number) refuses with
  EPERM what a transform never needs: sockets, new processes (fork, vfork, clone
  without CLONE_THREAD, execve), ptrace and process_vm_*, signals to any pid but its
  own, mknod/mkfifo, opening files for writing, creating/removing/renaming/linking,
  chmod/chown/xattrs, namespaces, mounts, raising rlimits, io_uring, keyrings, bpf.
- **The audit hook** (Python level, PEP 578): refuses the same things by event and
  reads outside the same directories; it also words the error messages programs see.

Each worker probes what the kernel allows once at start (a ruleset it can create; a
test child that installs the filter) and reports the active layers; what is missing
falls back to the rest (seccomp alone, Landlock alone, the audit hook alone). The
environment is empty and only the result pipe is open in any case (exec_child.py).

Measured here (kernel 6.18, Landlock ABI 7, root in a container): entering all three
layers costs the child tens of microseconds (bench/bench_executor.py). Hand-written
with ctypes: the PyPI `landlock` package is a pre-release (1.0.0.dev5) covering the
filesystem only, and `pyseccomp` (last release 2021) needs libseccomp's shared library
and rebuilds the filter on every load; the raw interfaces are three Landlock syscalls
and one prctl, with the filter prepared once and only our pid patched in per child.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import platform
import struct
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


class Layer(str, enum.Enum):
    LANDLOCK = "landlock"
    SECCOMP = "seccomp"
    AUDIT_HOOK = "audit_hook"

    def __str__(self) -> str:
        return self.value


ALL_LAYERS = frozenset(Layer)


@dataclass(frozen=True)
class SandboxReport:
    """What a worker's children run under: the active layers, and why each other one is not."""

    active: tuple[Layer, ...]
    missing: dict[str, str] = field(default_factory=dict)  # layer -> why not
    landlock_abi: int = 0

    def describe(self) -> str:
        parts = [f"landlock (ABI {self.landlock_abi})" if layer is Layer.LANDLOCK else layer.value for layer in self.active]
        text = ", ".join(parts) or "no layer"
        if self.missing:
            text += "; not active: " + ", ".join(f"{k} ({v})" for k, v in self.missing.items())
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"active": [layer.value for layer in self.active], "missing": dict(self.missing),
                "landlock_abi": self.landlock_abi}


def parse_layers(names: Iterable[str]) -> frozenset[Layer]:
    """Layer names (e.g. from settings JSON) as Layers; a ValueError names an unknown one."""
    return frozenset(Layer(n) for n in names)


# --------------------------------------------------------------------------- what a program may read


def read_allowlist() -> tuple[str, ...]:
    """The directories whose files a program may read: where its imports live (real paths).

    The standard library, site-packages, numpy's and scipy's folders and the DSL; never the
    current directory, the run folder, HOME or /proc.
    """
    import numpy
    import scipy

    paths = sysconfig.get_paths()
    candidates = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    candidates += [str(Path(m.__file__).resolve().parents[1]) for m in (numpy, scipy)]
    candidates.append(str(Path(__file__).resolve().parent / "dsl"))
    real = {os.path.realpath(p) for p in candidates if p and os.path.isdir(p)}
    # a folder beneath another is covered by it
    return tuple(sorted(p for p in real if not any(q != p and p.startswith(q + os.sep) for q in real)))


# --------------------------------------------------------------------------- Landlock (ctypes)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_READ_FILE, _FS_READ_DIR = 1 << 2, 1 << 3
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _handled_fs(abi: int) -> int:
    """Every filesystem right the ABI knows: EXECUTE..MAKE_SYM (1), REFER (2), TRUNCATE (3), IOCTL_DEV (5)."""
    bits = (1 << 13) - 1
    if abi >= 2:
        bits |= 1 << 13
    if abi >= 3:
        bits |= 1 << 14
    if abi >= 5:
        bits |= 1 << 15
    return bits


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; raises OSError when Landlock is absent or refused."""
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(abi)


def _landlock_ruleset(abi: int, readable: Iterable[str]) -> int:
    """A ruleset fd: every access handled, reading (files, directory listings) granted beneath `readable`."""
    net = 0b11 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP, with no port granted
    scoped = 0b11 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL
    attr = struct.pack("<QQQ", _handled_fs(abi), net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        for path in readable:
            _landlock_allow_read(int(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return int(fd)


def _landlock_allow_read(ruleset_fd: int, path: str) -> None:
    dir_fd = os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        rule = ctypes.create_string_buffer(struct.pack("<Qi", _FS_READ_FILE | _FS_READ_DIR, dir_fd), 12)
        if _libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset_fd, _LANDLOCK_RULE_PATH_BENEATH, rule, 0) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
    finally:
        os.close(dir_fd)


def _no_new_privs() -> None:
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"PR_SET_NO_NEW_PRIVS: {os.strerror(err)}")


def _landlock_restrict(ruleset_fd: int) -> None:
    if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")


# --------------------------------------------------------------------------- seccomp-bpf (ctypes)

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_CLONE_THREAD = 0x00010000
_OPEN_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# x86_64 numbers (asm/unistd_64.h). Refused outright with EPERM:
_DENIED_X86_64 = {
    "creat": 85, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
    "process_madvise": 440, "process_mrelease": 448,
    "socket": 41, "socketpair": 53, "mknod": 133, "mknodat": 259, "mq_open": 240, "msgget": 68, "semget": 64,
    "shmget": 29, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93,
    "lchown": 94, "fchownat": 260, "mkdir": 83, "mkdirat": 258, "rmdir": 84, "unlink": 87, "unlinkat": 263,
    "rename": 82, "renameat": 264, "renameat2": 316, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266,
    "truncate": 76, "ftruncate": 77, "fallocate": 285, "utime": 132, "utimes": 235, "utimensat": 280,
    "futimesat": 261, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "setxattrat": 463, "removexattrat": 466, "file_setattr": 469,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
    "mount_setattr": 442, "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "setrlimit": 160, "keyctl": 250, "add_key": 248, "request_key": 249,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "personality": 135, "acct": 163, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320, "iopl": 172,
    "ioperm": 173, "quotactl": 179, "quotactl_fd": 443, "syslog": 103, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "setuid": 105, "setgid": 106, "setreuid": 113,
    "setregid": 114, "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "setgroups": 116,
    "capset": 126,
}
# Refused with ENOSYS: their arguments live in memory a filter cannot read; glibc falls back
# to clone (threads) and openat (files), which are checked.
_ENOSYS_X86_64 = {"clone3": 435, "openat2": 437}
_CLONE, _PRLIMIT64 = 56, 302
_OPEN_FLAGS_ARG = {2: 1, 257: 2}  # open(path, flags), openat(dirfd, path, flags)
_SELF_ONLY = {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297}


_JA = 0x05
_PID = object()  # marks a constant the child replaces with its pid
_Insn = tuple  # (code, jt, jf, k): k an int or _PID


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # seccomp_data.args[i], low 32 bits (little-endian)


def _rules() -> list[tuple[int, list[_Insn]]]:
    """(syscall number, what to do with it), each ending in returns; every other syscall is allowed."""
    eperm = _RET_ERRNO | errno.EPERM
    refuse = [(_RET, 0, 0, eperm)]
    rules = [(nr, refuse) for nr in _DENIED_X86_64.values()]
    rules += [(nr, [(_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]) for nr in _ENOSYS_X86_64.values()]
    # clone: threads only
    rules.append((_CLONE, [(_LD_ABS, 0, 0, _arg_lo(0)), (_JSET, 1, 0, _CLONE_THREAD), (_RET, 0, 0, eperm),
                           (_RET, 0, 0, _RET_ALLOW)]))
    # open/openat: read-only
    rules += [(nr, [(_LD_ABS, 0, 0, _arg_lo(arg)), (_JSET, 0, 1, _OPEN_WRITE_FLAGS), (_RET, 0, 0, eperm),
                    (_RET, 0, 0, _RET_ALLOW)]) for nr, arg in _OPEN_FLAGS_ARG.items()]
    # prlimit64(pid, resource, new, old): reading (new == NULL, as glibc's getrlimit does), never setting
    rules.append((_PRLIMIT64, [(_LD_ABS, 0, 0, _arg_lo(2)), (_JEQ, 0, 2, 0), (_LD_ABS, 0, 0, _arg_lo(2) + 4),
                               (_JEQ, 1, 0, 0), (_RET, 0, 0, eperm), (_RET, 0, 0, _RET_ALLOW)]))
    # signals: to its own pid only
    rules += [(nr, [(_LD_ABS, 0, 0, _arg_lo(0)), (_JEQ, 1, 0, _PID), (_RET, 0, 0, eperm), (_RET, 0, 0, _RET_ALLOW)])
              for nr in _SELF_ONLY.values()]
    return sorted(rules, key=lambda rule: rule[0])


def _tree(rules: list[tuple[int, list[_Insn]]]) -> list[_Insn]:
    """A binary search on the syscall number (in A): an allowed syscall runs ~8 comparisons, not ~140.

    The kernel emulates the filter for every syscall number when it is installed (its
    allow-cache), so the path length is what installing costs: 450 us linear, ~100 us as a tree.
    """
    if len(rules) <= 3:
        code: list[_Insn] = []
        for nr, block in rules:
            code += [(_JEQ, 0, len(block), nr), *block]
        return code + [(_RET, 0, 0, _RET_ALLOW)]
    mid = len(rules) // 2
    low, high = _tree(rules[:mid]), _tree(rules[mid:])
    if len(low) <= 255:  # nr >= pivot: jump over the lower half
        return [(_JGE, len(low), 0, rules[mid][0]), *low, *high]
    return [(_JGE, 0, 1, rules[mid][0]), (_JA, 0, 0, len(low)), *low, *high]  # ja: a 32-bit offset


def build_seccomp_filter() -> tuple[bytes, list[int]]:
    """The x86_64 filter and the offsets (in bytes) of the constants that must become the child's pid."""
    head: list[_Insn] = [(_LD_ABS, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH_X86_64), (_RET, 0, 0, _RET_KILL_PROCESS),
                         (_LD_ABS, 0, 0, 0), (_JGE, 0, 1, _X32_SYSCALL_BIT), (_RET, 0, 0, _RET_ERRNO | errno.EPERM)]
    program = head + _tree(_rules())
    pid_offsets = [8 * i + 4 for i, ins in enumerate(program) if ins[3] is _PID]
    return b"".join(_insn(c, jt, jf, 0 if k is _PID else k) for c, jt, jf, k in program), pid_offsets


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _SeccompFilter:
    """The filter in a buffer the child patches with its pid, then installs (no_new_privs set first)."""

    def __init__(self) -> None:
        code, self.pid_offsets = build_seccomp_filter()
        self.buffer = ctypes.create_string_buffer(code, len(code))
        self.prog = _SockFprog(len(code) // 8, ctypes.addressof(self.buffer))

    def install(self, pid: int) -> None:
        for offset in self.pid_offsets:
            struct.pack_into("<I", self.buffer, offset, pid)
        if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self.prog), 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"PR_SET_SECCOMP: {os.strerror(err)}")


def _probe_seccomp(filt: _SeccompFilter) -> str | None:
    """None if a forked child can install the filter and is then refused a write open, else why not."""
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            _no_new_privs()
            filt.install(os.getpid())
            code = 101
            os.close(os.open("/", os.O_RDONLY | os.O_CREAT | os.O_DIRECTORY))
        except PermissionError:
            code = 0 if code == 101 else errno.EPERM
        except OSError as exc:
            code = (exc.errno or 102) if code == 100 else 101
        except BaseException:
            code = 102
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 103
    if code == 0:
        return None
    return {101: "the filter loaded but did not refuse a write open", 102: "probe failed",
            103: "probe child killed"}.get(code, f"prctl: {os.strerror(code)}")


# --------------------------------------------------------------------------- the audit hook (Python level)

# Audit events a transform has no business raising.
_BLOCKED_EVENTS = frozenset(
    """os.kill os.killpg signal.pthread_kill os.fork os.forkpty os.posix_spawn os.spawn os.exec
    os.system os.startfile subprocess.Popen pty.spawn os.remove os.rmdir os.rename os.mkdir os.chmod
    os.chown os.link os.symlink os.truncate os.utime os.putenv os.unsetenv os.chdir os.chroot
    os.setxattr os.removexattr shutil.rmtree shutil.move shutil.copyfile shutil.copymode shutil.copystat
    shutil.chown shutil.make_archive shutil.unpack_archive socket.__new__ socket.bind socket.connect
    socket.getaddrinfo socket.sendto resource.setrlimit resource.prlimit""".split()
)
_BLOCKED_PREFIXES = ("ctypes.", "_ctypes.", "winreg.", "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_LISTING_EVENTS = frozenset(("os.listdir", "os.scandir", "glob.glob", "os.walk"))
_realpath, _fspath, _sep = os.path.realpath, os.fspath, os.sep


def _make_audit_hook(readable: tuple[str, ...]) -> Any:
    prefixes = tuple(p.rstrip(_sep) + _sep for p in readable)

    def readable_path(path: Any) -> bool:
        if isinstance(path, int):
            return True  # an fd it already holds: /dev/null or its result pipe
        try:
            real = _realpath(_fspath(path) if path is not None else ".")
        except BaseException:
            return False
        if isinstance(real, bytes):
            real = real.decode("utf-8", "surrogateescape")
        return (real + _sep).startswith(prefixes)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE_FLAGS):
                raise PermissionError(f"sandbox: opening {args[0]!r} for writing is not allowed")
            if not readable_path(args[0]):
                raise PermissionError(f"sandbox: reading {args[0]!r} is not allowed")
            return
        if event in _LISTING_EVENTS:
            if not readable_path(args[0] if args else None):
                raise PermissionError(f"sandbox: listing {args[0] if args else '.'!r} is not allowed")
            return
        if event in _BLOCKED_EVENTS or event.startswith(_BLOCKED_PREFIXES):
            raise PermissionError(f"sandbox: {event} is not allowed")

    return hook


def _refuse_special_files() -> None:
    """os.mkfifo / os.mknod raise no audit event: at the Python level they are replaced."""
    import posix

    def refused(*args: Any, **kwargs: Any) -> None:
        raise PermissionError("sandbox: creating special files is not allowed")

    for module in (os, posix):
        for name in ("mkfifo", "mknod"):
            if hasattr(module, name):
                setattr(module, name, refused)


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """Prepared once in a worker (probe, ruleset, filter); `enter()` in each forked child."""

    def __init__(self, requested: frozenset[Layer] = ALL_LAYERS) -> None:
        self.readable = read_allowlist()
        missing: dict[str, str] = {}
        self.ruleset_fd: int | None = None
        self.seccomp: _SeccompFilter | None = None
        abi = 0
        if Layer.LANDLOCK in requested:
            try:
                abi = landlock_abi()
                self.ruleset_fd = _landlock_ruleset(abi, self.readable)
            except OSError as exc:
                missing[Layer.LANDLOCK.value] = exc.strerror or str(exc)
                abi = 0
        if Layer.SECCOMP in requested:
            if sys.platform != "linux" or platform.machine() != "x86_64":
                missing[Layer.SECCOMP.value] = f"no filter for {platform.machine()}"
            else:
                self.seccomp = _SeccompFilter()
                why = _probe_seccomp(self.seccomp)
                if why is not None:
                    missing[Layer.SECCOMP.value] = why
                    self.seccomp = None
        self.audit_hook = _make_audit_hook(self.readable) if Layer.AUDIT_HOOK in requested else None
        if self.audit_hook is not None:
            _refuse_special_files()  # in the worker itself: every child inherits it
        active = tuple(layer for layer, on in ((Layer.LANDLOCK, self.ruleset_fd is not None),
                                               (Layer.SECCOMP, self.seccomp is not None),
                                               (Layer.AUDIT_HOOK, self.audit_hook is not None)) if on)
        self.report = SandboxReport(active, missing, abi)

    def keep_fds(self) -> tuple[int, ...]:
        """Descriptors the child must keep open until `enter()`."""
        return () if self.ruleset_fd is None else (self.ruleset_fd,)

    def enter(self) -> None:
        """In the child, after fork and its own limits; raises OSError if a prepared layer fails."""
        if self.ruleset_fd is not None or self.seccomp is not None:
            _no_new_privs()
        if self.ruleset_fd is not None:
            _landlock_restrict(self.ruleset_fd)
            os.close(self.ruleset_fd)
        if self.seccomp is not None:
            self.seccomp.install(os.getpid())
        if self.audit_hook is not None:
            sys.addaudithook(self.audit_hook)  # cannot be removed once added

    def close(self) -> None:
        if self.ruleset_fd is not None:
            os.close(self.ruleset_fd)
            self.ruleset_fd = None




if __name__ == "__main__":  # python -m arc25.sandbox: what programs would run under on this machine
    print(Sandbox().report.describe())
