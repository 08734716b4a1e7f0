"""The sandbox table: what a program may and may not do, under every layer set the sandbox can fall back to.

Each row is a small program that tries one thing and answers [[0]] when it got a
PermissionError (denied), [[1]] (plus a pid's digits, for rows that start a process)
when it did it. A row names the layers any one of which must deny it; under a layer
set with none of them the row is expected *done*, so the "none" column is the control
that shows every hostile row really does what it says when nothing stops it. Layer sets
are forced through `Executor(layers=...)`; the kernel-refuses-a-layer fallbacks (old
kernel, Docker profile without Landlock, no seccomp) are forced for real by a seccomp
filter put on a subprocess before it starts an executor (`test_fallback_when_the_kernel_refuses`).

On main before this table (the audit hook alone, which allowed every read): the rows
read_secret_file, read_run_solutions, list_run_folder, read_kaggle_json, parent_cmdline,
parent_environ, self_environ, mkfifo and mknod_fifo were let through.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from arc25.execution import ErrorKind, ExecutionResult, Executor
from arc25.sandbox import ALL_LAYERS, Layer, landlock_abi

LANDLOCK, SECCOMP, AUDIT = Layer.LANDLOCK, Layer.SECCOMP, Layer.AUDIT_HOOK
READERS = frozenset({LANDLOCK, AUDIT})  # the layers that confine reading
WRITERS = frozenset({LANDLOCK, SECCOMP, AUDIT})  # ... and creating files of any kind
BASELINE = None  # denied whatever the layers: the environment is emptied before any layer
SECRET = "sandbox-test-secret-4242"
GRID = np.array([[1, 2], [3, 4]])

CONFIGS = {
    "all": ALL_LAYERS,
    "landlock": frozenset({LANDLOCK}),
    "seccomp": frozenset({SECCOMP}),
    "audit_hook": frozenset({AUDIT}),
    "none": frozenset(),
}

PROGRAM = """\
import os, socket, stat, subprocess, sys, time

def transform(input_grid):
    try:
        {body}
    except PermissionError:
        return [[0]]
    return [[1]]
"""


@dataclass(frozen=True)
class Row:
    body: str  # runs inside transform; falls through to [[1]] when it did what it tried
    deniers: frozenset[Layer] | None  # any one of these denies it; None: always denied
    done: ErrorKind | None = None  # how "done" shows when it ends the process (execve), else an [[1]] output


def _abi() -> int:
    try:
        return landlock_abi()
    except OSError:
        return 0


# Landlock refuses TCP connect from ABI 4 and signals out of the sandbox from ABI 6.
LANDLOCK_NET = frozenset({LANDLOCK}) if _abi() >= 4 else frozenset()
LANDLOCK_SIGNAL = frozenset({LANDLOCK}) if _abi() >= 6 else frozenset()
# A started process's pid comes back as digits after the 1.
RETURN_PID = "        return [[1] + [int(d) for d in str(pid)]]"


def rows(paths: dict[str, str], port: int) -> dict[str, Row]:
    p = {k: repr(v) for k, v in paths.items()}
    return {
        "read_imports": Row("import statistics, fractions, scipy.spatial, numpy, common\n"
                            "        open(numpy.__file__).read()\n"
                            "        assert common.find_connected_components is not None", frozenset()),
        "threads": Row("import threading\n        t = threading.Thread(target=sorted, args=([3, 1],))\n"
                       "        t.start()\n        t.join()", frozenset()),
        "read_rlimit": Row("import resource\n        resource.getrlimit(resource.RLIMIT_AS)", frozenset()),
        "set_rlimit": Row("import resource\n        try:\n            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
                          "        except ValueError as exc:  # Python's words for EPERM here\n"
                          "            raise PermissionError(exc)",
                          frozenset({SECCOMP, AUDIT})),
        "read_secret_file": Row(f"open({p['secret']}).read()", READERS),
        "read_run_solutions": Row(f"open({p['solutions']}).read()", READERS),
        "list_run_folder": Row(f"os.listdir({p['run']})", READERS),
        "read_kaggle_json": Row(f"open({p['kaggle']}).read()", READERS),
        "parent_cmdline": Row("open(f'/proc/{os.getppid()}/cmdline', 'rb').read()", READERS),
        "parent_environ": Row("open(f'/proc/{os.getppid()}/environ', 'rb').read()", READERS),
        "self_environ": Row("open('/proc/self/environ', 'rb').read()", READERS),
        "environment_secret": Row(f"if not os.environ and {SECRET!r} not in repr(os.environ):\n"
                                  "            raise PermissionError('empty')", BASELINE),
        "inherited_fds": Row("n = 0\n        for fd in range(3, 1024):\n            try:\n                os.fstat(fd)\n"
                             "                n += 1\n            except OSError:\n                pass\n"
                             "        if n <= 1:  # its result pipe alone\n"
                             "            raise PermissionError('no inherited fd')", BASELINE),
        "mkfifo": Row(f"os.mkfifo({p['fifo']})", WRITERS),
        "mknod_fifo": Row(f"os.mknod({p['node']}, stat.S_IFIFO | 0o600)", WRITERS),
        "write_file": Row(f"open({p['written']}, 'w').write('x')", WRITERS),
        "make_dir": Row(f"os.mkdir({p['made']})", WRITERS),
        "socket_connect": Row(f"socket.create_connection(('127.0.0.1', {port}), timeout=1)",
                              frozenset({SECCOMP, AUDIT}) | LANDLOCK_NET),
        "signal_worker": Row("os.kill(os.getppid(), 0)", frozenset({SECCOMP, AUDIT}) | LANDLOCK_SIGNAL),
        "fork": Row("pid = os.fork()\n        if pid == 0:\n            os.closerange(3, 1024)\n"
                    "            time.sleep(60)\n            os._exit(0)\n" + RETURN_PID, frozenset({SECCOMP, AUDIT})),
        "subprocess": Row("pid = subprocess.Popen(['/bin/sleep', '60'], close_fds=True).pid\n" + RETURN_PID,
                          frozenset({LANDLOCK, SECCOMP, AUDIT})),
        "execve": Row("os.execv('/bin/true', ['true'])", frozenset({LANDLOCK, SECCOMP, AUDIT}), ErrorKind.CRASHED),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files a program must not reach, a writable folder, a loopback listener, a secret in the environment."""
    base = tmp_path_factory.mktemp("sandbox")
    run = base / "run"
    run.mkdir()
    (run / "solutions.json").write_text('{"task": [[[1]]]}')
    (run / "run.json").write_text(json.dumps({"solutions": str(run / "solutions.json")}))
    (base / "secret.txt").write_text(SECRET)
    (base / "home" / ".kaggle").mkdir(parents=True)
    (base / "home" / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "u", "key": SECRET}))
    writable = base / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    listener = socket.create_server(("127.0.0.1", 0))
    paths = {"run": run, "solutions": run / "solutions.json", "secret": base / "secret.txt",
             "kaggle": base / "home" / ".kaggle" / "kaggle.json", "fifo": writable / "fifo",
             "node": writable / "node", "written": writable / "w.txt", "made": writable / "made"}
    yield {k: str(v) for k, v in paths.items()}, listener
    listener.close()


@pytest.fixture(scope="module", params=list(CONFIGS))
def verdicts(request, world):
    """Every row run once under one layer set (one fresh worker), and that executor's report."""
    paths, listener = world
    table = rows(paths, listener.getsockname()[1])
    os.environ["KAGGLE_KEY"] = SECRET  # the parent has it; the program must not
    try:
        with Executor(workers=1, timeout_s=5.0, layers=CONFIGS[request.param]) as ex:
            results = ex.run([(PROGRAM.format(body=r.body), [GRID]) for r in table.values()])
            report = ex.sandbox
    finally:
        del os.environ["KAGGLE_KEY"]
    created = {}
    for path in ("fifo", "node", "written", "made"):  # what it made, then an empty folder for the next config
        created[path] = os.path.lexists(paths[path])
        _remove(Path(paths[path]))
    listener.setblocking(False)
    accepted = 0
    while True:
        try:
            listener.accept()[0].close()
            accepted += 1
        except BlockingIOError:
            break
    return request.param, table, dict(zip(table, results)), report, (created, accepted)


def _remove(path: Path) -> None:
    if path.is_dir():
        path.rmdir()
    elif path.exists() or path.is_fifo():
        path.unlink()


def _expected_done(row: Row, active: frozenset[Layer]) -> bool:
    return row.deniers is not BASELINE and not (row.deniers & active)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped
    except FileNotFoundError:
        return False


ROW_NAMES = list(rows({k: "/x" for k in ("run", "solutions", "secret", "kaggle", "fifo", "node", "written", "made")}, 1))


@pytest.mark.parametrize("name", ROW_NAMES)
def test_sandbox_table(verdicts, name):
    config, table, results, report, _ = verdicts
    row, result = table[name], results[name]
    assert set(report.active) == CONFIGS[config] or report.missing, report  # a missing layer says why
    active = frozenset(report.active)
    done = _expected_done(row, active)
    if row.done is not None and done:  # it replaced the process: no result, the process is gone
        assert result.kind == row.done, (config, name, result.error)
        return
    assert result.ok, (config, name, result.kind, result.error)
    output = result.outputs[0].ravel().tolist()
    assert output[0] == int(done), (config, name, "expected " + ("done" if done else "denied"), output)
    if len(output) > 1:  # it started a process: nothing may survive the program
        pid = int("".join(map(str, output[1:])))
        assert not _pid_alive(pid), (config, name, pid)


def test_nothing_was_created_or_connected(verdicts):
    config, table, _, report, (created, accepted) = verdicts
    active = frozenset(report.active)
    for path, name in (("fifo", "mkfifo"), ("node", "mknod_fifo"), ("written", "write_file"), ("made", "make_dir")):
        assert created[path] == _expected_done(table[name], active), (config, name)
    assert accepted == int(_expected_done(table["socket_connect"], active)), config


def test_every_layer_is_active_where_the_kernel_has_it(verdicts):
    config, _, _, report, _ = verdicts
    if config != "all":
        return
    assert AUDIT in report.active
    if _abi() > 0:
        assert LANDLOCK in report.active and report.landlock_abi == _abi()
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        assert SECCOMP in report.active, report.missing


# --------------------------------------------------------------------------- the kernel refuses a layer

# Runs in a subprocess: a seccomp filter makes the kernel refuse Landlock (ENOSYS, as an old kernel,
# gVisor or an old Docker profile does) and, with "no_seccomp", seccomp itself (prctl EINVAL); then a
# real executor starts (its workers inherit the filter) and three rows run.
REFUSE = """
import json, os, struct, sys, ctypes
from arc25.sandbox import _insn, _LD_ABS, _JEQ, _RET, _RET_ALLOW, _RET_ERRNO, _SockFprog, _libc, _no_new_privs
import errno
prog = [_insn(_LD_ABS, 0, 0, 0)]
for nr in (444, 445, 446):
    prog += [_insn(_JEQ, 0, 1, nr), _insn(_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]
if sys.argv[1] == "no_seccomp":  # prctl(PR_SET_SECCOMP, ...) -> EINVAL
    prog += [_insn(_JEQ, 0, 3, 157), _insn(_LD_ABS, 0, 0, 16), _insn(_JEQ, 0, 1, 22),
             _insn(_RET, 0, 0, _RET_ERRNO | errno.EINVAL)]
prog.append(_insn(_RET, 0, 0, _RET_ALLOW))
code = b"".join(prog)
buf = ctypes.create_string_buffer(code, len(code))
fprog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
_no_new_privs()
assert _libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0
from arc25.execution import Executor
programs = json.loads(sys.argv[2])
with Executor(workers=1, timeout_s=5.0) as ex:
    results = ex.run([(p, [[[1]]]) for p in programs])
    print(json.dumps({"report": ex.sandbox.to_dict(),
                      "outputs": [None if r.outputs[0] is None else r.outputs[0].tolist() for r in results],
                      "errors": [r.error for r in results]}))
"""


@pytest.mark.parametrize("scenario, active", [("no_landlock", ["seccomp", "audit_hook"]),
                                              ("no_seccomp", ["audit_hook"])])
def test_fallback_when_the_kernel_refuses(world, scenario, active):
    if not (sys.platform == "linux" and os.uname().machine == "x86_64"):
        pytest.skip("the refusing filter is written for x86_64")
    paths, _ = world
    table = rows(paths, 1)
    names = ["read_imports", "read_secret_file", "parent_cmdline", "mkfifo", "fork"]
    programs = [PROGRAM.format(body=table[n].body) for n in names]
    proc = subprocess.run([sys.executable, "-c", REFUSE, scenario, json.dumps(programs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    report = out["report"]
    assert report["active"] == active
    assert report["missing"]["landlock"] == "Function not implemented"
    if scenario == "no_seccomp":
        assert report["missing"]["seccomp"] == "prctl: Invalid argument"
    verdicts = {n: (o[0][0] if o else e) for n, o, e in zip(names, out["outputs"], out["errors"])}
    assert verdicts == {"read_imports": 1, "read_secret_file": 0, "parent_cmdline": 0, "mkfifo": 0, "fork": 0}
    assert not Path(paths["fifo"]).exists()
