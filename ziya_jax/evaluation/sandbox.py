"""Run untrusted generated code (HumanEval completions) in a sandboxed subprocess.

Each program runs in a fresh process and a fresh temporary directory, with these layers
(each one independent; `sandbox_layers()` says which this host provides):
- resource limits: CPU seconds, address space, output file size, open files, processes;
- a wall-clock limit, after which the whole process group is killed;
- no network: a new network namespace (only a down loopback), plus Landlock TCP denial;
- nothing of the host writable: Landlock allows writes only inside the temporary directory,
  and when the evaluator runs as root the program runs under an unprivileged, unused uid;
- an isolated interpreter (`python -I`) with an empty environment.
The evaluator never runs generated code in its own process.
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NOBODY = 65534
SANDBOX_UID_BASE = 61000   # concurrent programs run under distinct unused uids, so limits do not interfere
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SYS_LANDLOCK_CREATE_RULESET = 444


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0          # wall clock
    cpu_s: int = 10
    memory_bytes: int = 1 << 30      # address space
    file_bytes: int = 1 << 20        # largest file the program may write
    open_files: int = 64
    processes: int = 32              # RLIMIT_NPROC: new processes the program may have at once


@dataclasses.dataclass
class RunResult:
    status: str                      # "passed", "failed", "timeout"
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


_libc = ctypes.CDLL(None, use_errno=True)


def _landlock_abi() -> int:
    try:
        return int(_libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))
    except Exception:  # noqa: BLE001
        return -1


def _probe(python: str, code: str) -> bool:
    """Run a tiny stdlib-only check in a fresh interpreter (no fork of this threaded process)."""
    try:
        return subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _probe_unshare(flags: int) -> bool:
    """Whether a child may unshare `flags`."""
    return _probe(sys.executable, f"import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare({flags}) != 0)")


def _nobody_can_execute(path: str) -> bool:
    return _probe(sys.executable, f"import os, sys; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); "
                                  f"sys.exit(not (os.access({path!r}, os.X_OK) and "
                                  f"os.access(os.path.dirname({path!r}), os.X_OK)))")


def _interpreter(root: bool) -> tuple[str, bool]:
    """(python executable, whether the program can run as nobody). HumanEval needs only the stdlib,
    so any Python 3 will do; $ZIYA_SANDBOX_PYTHON picks one explicitly."""
    candidates = [os.environ.get("ZIYA_SANDBOX_PYTHON"), sys.executable, "/usr/bin/python3", shutil.which("python3")]
    candidates = [os.path.realpath(c) for c in candidates if c and os.path.exists(c)]
    if not root:
        return candidates[0], False
    for c in candidates:
        if _nobody_can_execute(c):
            return c, True
    return candidates[0], False


_LAYERS: dict | None = None
_LAYERS_LOCK = threading.Lock()


def sandbox_layers() -> dict:
    """Which isolation layers this host provides (probed once)."""
    global _LAYERS
    with _LAYERS_LOCK:
        if _LAYERS is None:
            _LAYERS = _probe_layers()
    return _LAYERS


def _probe_layers() -> dict:
    root = os.geteuid() == 0
    netns = _probe_unshare(CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNET)
    abi = _landlock_abi()
    python, as_nobody = _interpreter(root)
    return {"python": python, "rlimits": True, "process_group_kill": True, "network_namespace": netns,
            "landlock_abi": max(abi, 0), "landlock_fs": abi >= 1, "landlock_net": abi >= 4,
            "drop_to_nobody": as_nobody, "process_limit": as_nobody or not root}


def missing_guarantees(layers: dict | None = None) -> list[str]:
    """The sandbox's promises this host cannot keep (empty when fully sandboxed)."""
    layers = layers or sandbox_layers()
    missing = []
    if not (layers["network_namespace"] or layers["landlock_net"]):
        missing.append("no network (needs network namespaces or Landlock ABI >= 4)")
    if not (layers["landlock_fs"] or layers["drop_to_nobody"]):
        missing.append("host not writable (needs Landlock, or a root evaluator and a Python that nobody can run)")
    if not layers["process_limit"]:
        missing.append("process limit (root cannot be limited: give a Python that nobody can run in "
                       "$ZIYA_SANDBOX_PYTHON)")
    return missing


def _count_processes(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                n += entry.stat().st_uid == uid
            except OSError:
                pass
    return n


LAUNCHER = Path(__file__).with_name("sandbox_launch.py")


def run_program(source: str, limits: Limits = Limits(), *, slot: int = 0,
                allow_unsandboxed: bool = False) -> RunResult:
    """Run Python `source` in the sandbox; 'passed' means exit status 0 within the limits.

    Programs that run at the same time must use distinct `slot`s (their own uid when dropping root)."""
    layers = sandbox_layers()
    missing = missing_guarantees(layers)
    if missing and not allow_unsandboxed:
        raise RuntimeError("cannot sandbox generated code on this host: " + "; ".join(missing) +
                           "; run on a Linux host with these features, or pass --unsafe-allow-unsandboxed")
    workdir = tempfile.mkdtemp(prefix="ziya-sandbox-")
    try:
        program = Path(workdir) / "program.py"
        program.write_text(source, encoding="utf-8")
        uid = SANDBOX_UID_BASE + slot
        existing = 0 if os.geteuid() == 0 else _count_processes(os.getuid())
        if layers["drop_to_nobody"]:
            os.chown(workdir, uid, uid)
            os.chown(program, uid, uid)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        start = time.perf_counter()
        settings = {"network_namespace": layers["network_namespace"], "landlock_abi": layers["landlock_abi"],
                    "workdir": workdir, "uid": uid if layers["drop_to_nobody"] else None,
                    "cpu_s": max(1, int(limits.cpu_s)), "memory": limits.memory_bytes, "file": limits.file_bytes,
                    "files": limits.open_files, "nproc": limits.processes + existing}
        proc = subprocess.Popen([layers["python"], "-I", "-S", "-B", str(LAUNCHER), json.dumps(settings),
                                 str(program)], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        try:
            out, err = proc.communicate(timeout=limits.timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            status = "timeout"
        _kill_group(proc.pid)  # anything the program left behind in its group
        return RunResult(status, proc.returncode, out.decode("utf-8", "replace")[-4000:],
                         err.decode("utf-8", "replace")[-4000:], time.perf_counter() - start)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int, wait_s: float = 5.0) -> None:
    """SIGKILL the program's process group and wait until it is gone (so its processes no longer count)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.01)
