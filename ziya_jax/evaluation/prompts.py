"""Prompt formats of the six benchmarks (OpenCompass / lm-evaluation-harness conventions).

- MMLU: Hendrycks' format; 5 shots from the subject's dev split; the answer is scored as " A".." D"
  after "Answer:".
- CMMLU, C-Eval: the Chinese subject description ("以下是关于…的单项选择题…"), shots as
  "question\\nA. …\\n答案：X"; the answer is scored as "A".."D" after "答案：".
- GSM8K: the standard 8 chain-of-thought exemplars (Wei et al.), "Q: …\\nA: … The answer is N.";
  generation stops at "Q:" or a blank line.
- MATH: the Minerva 4-shot prompt, "Problem:\\n…\\n\\nSolution:"; generation stops at "Problem:".
- HumanEval: the bare prompt (0-shot).
The exemplars and Chinese subject descriptions are read from lm-eval's package data, fetched by
`make offline-data` (see ziya_jax/data/offline.py); nothing is fetched from a hub.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

LETTERS = "ABCD"
GSM8K_STOP = ("Q:", "\n\n")
MATH_STOP = ("Problem:", "\n\n\n")


def _material() -> Path:
    from ziya_jax.data.offline import OfflineDataError, ensure_eval_material
    try:
        return ensure_eval_material() / "lm_eval" / "tasks"
    except OfflineDataError as e:
        raise FileNotFoundError(f"few-shot exemplars: {e}; run `make offline-data` on a machine with PyPI access") from None


@functools.lru_cache(maxsize=None)
def gsm8k_exemplars() -> tuple[tuple[str, str], ...]:
    import yaml
    path = _material() / "gsm8k" / "gsm8k-cot.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    shots = tuple((s["question"], s["target"]) for s in data["fewshot_config"]["samples"])
    if len(shots) != 8:
        raise ValueError(f"{path}: expected the 8 GSM8K CoT exemplars, found {len(shots)}")
    return shots


@functools.lru_cache(maxsize=None)
def math_exemplars() -> tuple[tuple[str, str], ...]:
    """The 4 Minerva exemplars, read by parsing (never importing) lm-eval's utils.py."""
    path = _material() / "minerva_math" / "utils.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "list_fewshot_samples":
            ret = next(n for n in node.body if isinstance(n, ast.Return))
            shots = tuple((s["problem"], s["solution"]) for s in ast.literal_eval(ret.value))
            if len(shots) != 4:
                raise ValueError(f"{path}: expected the 4 Minerva exemplars, found {len(shots)}")
            return shots
    raise ValueError(f"{path}: no list_fewshot_samples(); the lm-eval version changed")


@functools.lru_cache(maxsize=None)
def chinese_descriptions(benchmark: str) -> dict[str, str]:
    """Subject slug -> the benchmark's Chinese instruction line, from lm-eval's task YAML files."""
    import yaml
    folder, prefix = {"cmmlu": ("cmmlu", "cmmlu_"), "ceval": ("ceval", "ceval-valid_")}[benchmark]
    out = {}
    for f in sorted((_material() / folder).glob(f"{prefix}*.yaml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "dataset_name" in data and "description" in data:
            out[data["dataset_name"]] = data["description"]
    return out


def mc_header(benchmark: str, subject: str) -> str:
    if benchmark == "mmlu":
        return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    desc = chinese_descriptions(benchmark).get(subject)
    if desc:
        return desc
    return f"以下是关于{subject.replace('_', ' ')}的单项选择题，请直接给出正确答案的选项。\n\n"


def mc_question(benchmark: str, question: str, choices: list[str]) -> str:
    body = question.strip() + "\n" + "".join(f"{l}. {c}\n" for l, c in zip(LETTERS, choices))
    return body + ("Answer:" if benchmark == "mmlu" else "答案：")


def mc_continuations(benchmark: str) -> list[str]:
    return [f" {l}" for l in LETTERS] if benchmark == "mmlu" else list(LETTERS)


def mc_prefix(benchmark: str, subject: str, shots: list[dict]) -> str:
    """Header plus the answered shots (dicts with question, choices, answer index)."""
    cont = mc_continuations(benchmark)
    return mc_header(benchmark, subject) + "".join(
        mc_question(benchmark, s["question"], list(s["choices"])) + cont[int(s["answer"])] + "\n\n" for s in shots)


def mc_prompt(benchmark: str, subject: str, shots: list[dict], question: str, choices: list[str]) -> str:
    return mc_prefix(benchmark, subject, shots) + mc_question(benchmark, question, choices)


def gsm8k_prefix(shots=None) -> str:
    shots = gsm8k_exemplars() if shots is None else shots
    return "".join(f"Q: {q}\nA: {a}\n\n" for q, a in shots)


def gsm8k_prompt(question: str, shots=None) -> str:
    return gsm8k_prefix(shots) + f"Q: {question}\nA:"


def math_prefix(shots=None) -> str:
    shots = math_exemplars() if shots is None else shots
    return "".join(f"Problem:\n{p}\n\nSolution:\n{s}\n\n" for p, s in shots)


def math_prompt(problem: str, shots=None) -> str:
    return math_prefix(shots) + f"Problem:\n{problem}\n\nSolution:"


def truncate_at_stops(text: str, stops) -> str:
    """`text` up to the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


