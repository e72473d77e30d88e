"""HumanEval in the sandbox: every canonical solution passes, wrong and hostile programs fail and are contained."""
import os
import socket
import threading
import time

import pytest

from ziya_jax.evaluation.humaneval import check_completions, program, read_problems, truncate_completion
from ziya_jax.evaluation.sandbox import Limits, missing_guarantees, run_program, sandbox_layers

pytestmark = pytest.mark.skipif(bool(missing_guarantees()), reason=f"sandbox incomplete here: {missing_guarantees()}")


@pytest.fixture(scope="module")
def problems():
    return read_problems()


def test_all_164_canonical_solutions_pass(problems):
    assert len(problems) == 164 and problems[0]["task_id"] == "HumanEval/0"
    results = check_completions(problems, [p["canonical_solution"] for p in problems], workers=4)
    failed = [(p["task_id"], r.status, r.stderr[-200:]) for p, r in zip(problems, results) if not r.passed]
    assert not failed


def test_wrong_solution_fails(problems):
    p = problems[0]   # has_close_elements
    r = check_completions([p], ["    return False\n"])[0]
    assert r.status == "failed" and "AssertionError" in r.stderr


def test_hostile_completions_are_contained(problems, tmp_path):
    p = problems[0]
    indent = "    "
    outside = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)           # writable by anyone: only the sandbox itself may stop the write
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    hits = []

    def accept():
        end = time.time() + 20
        while time.time() < end:
            try:
                conn, _ = server.accept()
                hits.append(conn.recv(100))
            except OSError:
                pass

    listener = threading.Thread(target=accept, daemon=True)
    listener.start()
    hostile = {
        "infinite_loop": "while True:\n        pass\n",
        "fork_bomb": "import ctypes\n    libc = ctypes.CDLL(None)\n    while True:\n        libc.fork()\n",
        "memory_hog": "x = [bytearray(1 << 26) for _ in range(1000)]\n    return False\n",
        "write_outside": f"open({str(outside)!r}, 'w').write('escaped')\n    return False\n",
        "socket": f"import socket\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                  "    s.sendall(b'leak')\n    return False\n",
    }
    limits = Limits(timeout_s=4, cpu_s=4)
    start = time.time()
    results = check_completions([p] * len(hostile), [indent + c for c in hostile.values()], workers=3, limits=limits)
    by_name = dict(zip(hostile, results))
    assert all(not r.passed for r in results), {k: r.status for k, r in by_name.items()}
    assert by_name["infinite_loop"].status == "timeout"
    assert by_name["memory_hog"].status == "failed" and "MemoryError" in by_name["memory_hog"].stderr
    assert "PermissionError" in by_name["write_outside"].stderr and not outside.exists()
    assert "PermissionError" in by_name["socket"].stderr or "Network is unreachable" in by_name["socket"].stderr
    assert time.time() - start < 40
    server.close()
    assert hits == []
    # the evaluator is still running and the next program passes
    assert check_completions([p], [p["canonical_solution"]])[0].passed


def test_sandbox_layers_and_helpers(problems):
    layers = sandbox_layers()
    assert layers["rlimits"] and (layers["network_namespace"] or layers["landlock_net"])
    assert run_program("import os\nprint(os.getcwd())").stdout.strip().startswith("/tmp/ziya-sandbox-")
    assert truncate_completion("    return 1\n\ndef other():\n    pass") == "    return 1\n"
    assert program(problems[0], "    return 1\n").endswith("check(has_close_elements)\n")
