"""Sandbox launcher: applies the isolation layers to itself, then execs the program.

Run as `python -I -S sandbox_launch.py SETTINGS_JSON PROGRAM` in a fresh (single-threaded)
interpreter, so nothing runs between fork and exec in the evaluator. Standard library only: it
runs under the sandbox's Python, which need not have this project's dependencies.
"""
import ctypes
import json
import os
import resource
import sys

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_NO_NEW_PRIVS = 38
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
WRITE_V1 = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
REFER, TRUNCATE, NET_BIND_CONNECT = 1 << 13, 1 << 14, (1 << 0) | (1 << 1)
libc = ctypes.CDLL(None, use_errno=True)


def fail(what):
    sys.stderr.write(f"sandbox: {what} failed (errno {ctypes.get_errno()})\n")
    os._exit(125)


def landlock(writable, abi):
    class RulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    fs = WRITE_V1 | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    attr = RulesetAttr(fs, NET_BIND_CONNECT if abi >= 4 else 0)
    size = ctypes.sizeof(RulesetAttr) if abi >= 4 else 8
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        fail("landlock_create_ruleset")
    for path, rights in ((writable, fs), ("/dev/null", (1 << 1) | (TRUNCATE if abi >= 3 else 0))):
        fd = os.open(path, os.O_PATH)
        rule = PathBeneath(rights, fd)
        if libc.syscall(SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
            fail(f"landlock_add_rule {path}")
        os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("prctl(NO_NEW_PRIVS)")
    if libc.syscall(SYS_RESTRICT_SELF, ruleset, 0) != 0:
        fail("landlock_restrict_self")
    os.close(ruleset)


def main():
    s = json.loads(sys.argv[1])
    program = sys.argv[2]
    root = os.geteuid() == 0
    if s["network_namespace"] and libc.unshare(CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNET) != 0:
        fail("unshare(network)")
    for name, value in (("RLIMIT_CPU", (s["cpu_s"], s["cpu_s"] + 1)), ("RLIMIT_AS", (s["memory"],) * 2),
                        ("RLIMIT_FSIZE", (s["file"],) * 2), ("RLIMIT_NOFILE", (s["files"],) * 2),
                        ("RLIMIT_CORE", (0, 0)), ("RLIMIT_NPROC", (s["nproc"],) * 2)):
        resource.setrlimit(getattr(resource, name), value)
    if s["landlock_abi"] >= 1:
        landlock(s["workdir"], s["landlock_abi"])
    if root and s["uid"] is not None:
        os.setgroups([])
        os.setgid(s["uid"])
        os.setuid(s["uid"])
    os.execv(sys.executable, [sys.executable, "-I", "-B", program])


if __name__ == "__main__":
    main()
