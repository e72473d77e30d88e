"""Small benchmark files in the exact official schemas, for tests and the demo (`eval fixtures`).

Questions are simple arithmetic generated from a seed (so answers are known); file layouts and
columns match the real releases, so the same builders read these and the real data.
"""
from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

from ziya_jax.data.io import atomic_write_text as _atomic_write_text


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(path, text)

MC_LAYOUT = {  # benchmark: (subjects, {split_dir: (count, file name pattern)})
    "mmlu": (("elementary_mathematics", "high_school_mathematics"),
             {"dev": (5, "data/dev/{s}_dev.csv"), "val": (2, "data/val/{s}_val.csv"),
              "test": (6, "data/test/{s}_test.csv")}),
    "cmmlu": (("elementary_mathematics", "high_school_mathematics"),
              {"dev": (5, "dev/{s}.csv"), "test": (6, "test/{s}.csv")}),
    "ceval": (("high_school_mathematics", "middle_school_mathematics"),
              {"dev": (5, "dev/{s}_dev.csv"), "val": (6, "val/{s}_val.csv")}),
}


def _mc_item(rng: random.Random, zh: bool) -> tuple[str, list[str], str]:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    op = rng.choice("+*")
    value = a + b if op == "+" else a * b
    options = {value}
    while len(options) < 4:
        options.add(value + rng.choice([-1, 1]) * rng.randint(1, 9))
    options = sorted(options)
    rng.shuffle(options)
    q = f"{a} {'加' if op == '+' else '乘以'} {b} 等于多少？" if zh else f"What is {a} {op} {b}?"
    return q, [str(o) for o in options], "ABCD"[options.index(value)]


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_fixtures(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write manual_dir trees for all six benchmarks under root/<benchmark>/; returns them."""
    root = Path(root)
    rng = random.Random(seed)
    out = {}
    for bench, (subjects, splits) in MC_LAYOUT.items():
        for s in subjects:
            for split, (count, pattern) in splits.items():
                rows = []
                for i in range(count):
                    q, opts, ans = _mc_item(rng, zh=bench != "mmlu")
                    if bench == "mmlu":
                        rows.append([q, *opts, ans])
                    elif bench == "cmmlu":
                        rows.append([str(i), q, *opts, ans])
                    else:
                        rows.append([str(i), q, *opts, ans] + (["略"] if split == "dev" else []))
                header = {"mmlu": None, "cmmlu": ["", "Question", "A", "B", "C", "D", "Answer"],
                          "ceval": ["id", "question", "A", "B", "C", "D", "answer"] +
                          (["explanation"] if split == "dev" else [])}[bench]
                atomic_write_text(root / bench / pattern.format(s=s), _csv(([header] if header else []) + rows))
        out[bench] = root / bench
    for split, n in (("train", 4), ("test", 6)):
        lines = []
        for _ in range(n):
            a, b = rng.randint(2, 40), rng.randint(2, 40)
            lines.append(json.dumps({"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
                                     "answer": f"Tom has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}))
        atomic_write_text(root / "gsm8k" / "grade_school_math" / "data" / f"{split}.jsonl", "\n".join(lines) + "\n")
    out["gsm8k"] = root / "gsm8k"
    math_items = [("Compute $\\frac{1}{2} + \\frac{1}{4}$.", "We have $\\frac{2}{4}+\\frac{1}{4}=\\boxed{\\frac{3}{4}}$.",
                   "Prealgebra", "Level 1"),
                  ("Solve for $x$: $2x + 3 = 11$.", "Subtracting 3 gives $2x = 8$, so $x = \\boxed{4}$.", "Algebra",
                   "Level 1"),
                  ("What is $\\sqrt{50}$ in simplest form?", "$\\sqrt{50} = \\sqrt{25\\cdot 2} = \\boxed{5\\sqrt{2}}$.",
                   "Prealgebra", "Level 2"),
                  ("Find the sum of the roots of $x^2 - 5x + 6 = 0$.", "By Vieta, the sum is $\\boxed{5}$.",
                   "Algebra", "Level 2")]
    for split in ("train", "test"):
        for i, (problem, solution, typ, level) in enumerate(math_items):
            atomic_write_text(root / "math" / "MATH" / split / typ.lower() / f"{i}.json",
                              json.dumps({"problem": problem, "level": level, "type": typ, "solution": solution}))
    out["math"] = root / "math"
    return out
