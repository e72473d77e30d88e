"""`python -m ziya_jax eval`: run the Table-3 benchmarks on a checkpoint and write the report.

Multiple choice (MMLU, CMMLU, C-Eval): the prediction is the letter with the highest
log-likelihood; accuracy per subject, and the benchmark score is the macro average over subjects
(OpenCompass's naive average; the micro average over questions is reported too).
GSM8K, MATH: greedy generation with a KV cache and stop strings, then extraction and exact match /
equivalence. HumanEval: greedy completion, pass@1 from the sandboxed execution of the tests.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PAPER_TABLE3 = {  # paper Table 3 (OpenCompass, 5-shot)
    "LLaMA2-13B (paper)": {"mmlu": 55.74, "cmmlu": 37.90, "ceval": 34.99, "gsm8k": 28.81, "math": 4.98,
                           "humaneval": 15.24},
    "Ziya2-13B (paper)": {"mmlu": 61.36, "cmmlu": 60.95, "ceval": 58.84, "gsm8k": 68.46, "math": 10.98,
                          "humaneval": 28.87},
}
TITLES = {"mmlu": "MMLU", "cmmlu": "CMMLU", "ceval": "C-Eval", "gsm8k": "GSM8K", "math": "MATH",
          "humaneval": "HumanEval"}
MAX_NEW_TOKENS = {"gsm8k": 256, "math": 512, "humaneval": 512}


class Progress:
    def __init__(self, name: str, total: int):
        self.name, self.total, self.done, self.start = name, total, 0, time.perf_counter()

    def __call__(self, n: int) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        print(f"\r{self.name}: {self.done}/{self.total} ({rate:.1f}/s)", end="" if self.done < self.total else "\n",
              file=sys.stderr, flush=True)


def _text(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def load_examples(benchmark: str, limit: int | None) -> list[dict]:
    """The registered SeqIO task's eval split as Python dicts; `limit` per subject (MC) or per task."""
    import seqio
    import tensorflow_datasets as tfds

    from tasks.evaluation import EVAL_SPLIT, task_name
    ds = seqio.get_mixture_or_task(task_name(benchmark)).get_dataset(
        sequence_length=None, split=EVAL_SPLIT[benchmark], shuffle=False, use_cached=False, num_epochs=1)
    examples = []
    mc = benchmark in ("mmlu", "cmmlu", "ceval")
    for ex in tfds.as_numpy(ds):
        examples.append({k: (v.tolist() if k == "inputs" else
                             [_text(c) for c in v] if k == "choices" else
                             int(v) if k == "answer" and mc else _text(v)) for k, v in ex.items() if k != "targets"})
    key = "task_id" if benchmark == "humaneval" else "id"
    examples.sort(key=lambda e: _natural(e[key]))
    if limit:
        if benchmark in ("mmlu", "cmmlu", "ceval"):
            kept, seen = [], {}
            for e in examples:
                seen[e["subject"]] = seen.get(e["subject"], 0) + 1
                if seen[e["subject"]] <= limit:
                    kept.append(e)
            examples = kept
        else:
            examples = examples[:limit]
    return examples


def _natural(s: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


class Runner:
    def __init__(self, engine, sp, bos: bool = True, max_new_tokens: int | None = None):
        self.engine, self.sp, self.bos, self.budget = engine, sp, bos, max_new_tokens
        # SentencePiece drops the leading space of a decoded sequence ("▁▁▁▁return" -> "   return");
        # generated text continues a prompt, so it is decoded after an anchor piece that is then cut.
        self._anchor = sp.encode("a")
        self._anchor_text = sp.decode(self._anchor)

    def _bos(self) -> list[int]:
        return [self.engine.cfg.bos_token_id] if self.bos else []

    def encode(self, text: str) -> list[int]:
        return self._bos() + self.sp.encode(text)

    def prompt_ids(self, example: dict) -> list[int]:
        """The prompt as the SeqIO task tokenized it (same SentencePiece model), after BOS."""
        return self._bos() + list(example["inputs"])

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids as a continuation (leading spaces and indentation kept)."""
        text = self.sp.decode(self._anchor + list(ids))
        return text[len(self._anchor_text):] if text.startswith(self._anchor_text) else self.sp.decode(list(ids))

    # -------------------------------------------------------------- multiple choice
    def multiple_choice(self, benchmark: str, examples: list[dict]) -> tuple[dict, list[dict]]:
        from ziya_jax.evaluation.prompts import mc_continuations
        conts = mc_continuations(benchmark)
        contexts = []
        singles = True
        for e in examples:
            ctx = self.prompt_ids(e)
            ids = []
            for c in conts:
                whole = self.encode(e["inputs_pretokenized"] + c)
                ids.append(whole[len(ctx):] if whole[:len(ctx)] == ctx else whole[-1:])
            singles &= all(len(i) == 1 for i in ids)
            contexts.append((ctx, ids))
        prog = Progress(benchmark, len(examples))
        if singles:
            logp = self.engine.choice_logprobs([c for c, _ in contexts], [[i[0] for i in ids] for _, ids in contexts],
                                               progress=prog)
        else:
            reqs = [(c, i) for c, ids in contexts for i in ids]
            ll = self.engine.loglikelihood(reqs, progress=lambda n: None)
            logp = np.asarray([r[0] for r in ll], np.float64).reshape(len(examples), len(conts))
            prog(len(examples))
        samples, per_subject = [], {}
        for e, lp in zip(examples, logp):
            pred = int(np.argmax(lp))
            ok = pred == e["answer"]
            per_subject.setdefault(e["subject"], []).append(ok)
            samples.append({"id": e["id"], "subject": e["subject"], "answer": "ABCD"[e["answer"]],
                            "prediction": "ABCD"[pred], "correct": bool(ok), "logprobs": [round(float(x), 6) for x in lp]})
        subjects = {s: 100.0 * float(np.mean(v)) for s, v in sorted(per_subject.items())}
        result = {"metric": "accuracy", "score": float(np.mean(list(subjects.values()))) if subjects else 0.0,
                  "average": "macro over subjects (OpenCompass naive average)",
                  "micro_accuracy": 100.0 * float(np.mean([s["correct"] for s in samples])) if samples else 0.0,
                  "n": len(samples), "subjects": subjects}
        return result, samples

    # -------------------------------------------------------------- generation
    def max_new_tokens(self, benchmark: str) -> int:
        """The benchmark's budget, capped at half the model's context (prompts keep their end)."""
        return min(self.budget or MAX_NEW_TOKENS[benchmark], self.engine.max_length // 2)

    def _generate(self, benchmark: str, examples: list[dict], stop) -> list[str]:
        prompts = [self.prompt_ids(e) for e in examples]
        return self.engine.generate(prompts, max_new_tokens=self.max_new_tokens(benchmark), decode=self.decode,
                                    stop=stop, progress=Progress(benchmark, len(examples)))

    def gsm8k(self, examples: list[dict]) -> tuple[dict, list[dict]]:
        from ziya_jax.evaluation.answers import extract_gsm8k, normalize_number
        from ziya_jax.evaluation.prompts import GSM8K_STOP
        outs = self._generate("gsm8k", examples, GSM8K_STOP)
        samples = []
        for e, text in zip(examples, outs):
            pred, how = extract_gsm8k(text)
            samples.append({"id": e["id"], "gold": e["gold"], "prediction": pred, "extracted_by": how,
                            "correct": pred is not None and pred == normalize_number(e["gold"]), "completion": text})
        strict = [s["correct"] and s["extracted_by"] == "strict" for s in samples]
        return ({"metric": "exact match", "score": _pct([s["correct"] for s in samples]),
                 "strict_match": _pct(strict), "n": len(samples)}, samples)

    def math(self, examples: list[dict]) -> tuple[dict, list[dict]]:
        from ziya_jax.evaluation.answers import extract_math, math_equivalent
        from ziya_jax.evaluation.prompts import MATH_STOP
        outs = self._generate("math", examples, MATH_STOP)
        samples, by_type = [], {}
        for e, text in zip(examples, outs):
            pred = extract_math(text)
            ok = math_equivalent(pred, e["gold"])
            by_type.setdefault(e["type"], []).append(ok)
            samples.append({"id": e["id"], "type": e["type"], "level": e["level"], "gold": e["gold"],
                            "prediction": pred, "correct": ok, "completion": text})
        return ({"metric": "equivalence (normalised string or sympy)", "score": _pct([s["correct"] for s in samples]),
                 "n": len(samples), "subjects": {t: _pct(v) for t, v in sorted(by_type.items())}}, samples)

    def humaneval(self, examples: list[dict], workers: int, allow_unsandboxed: bool) -> tuple[dict, list[dict]]:
        from ziya_jax.evaluation.humaneval import STOP_SEQUENCES, check_completions
        from ziya_jax.evaluation.sandbox import sandbox_layers
        outs = self._generate("humaneval", examples, STOP_SEQUENCES)
        problems = [{k: e[k] for k in ("task_id", "prompt", "entry_point", "test")} for e in examples]
        results = check_completions(problems, outs, workers=workers, allow_unsandboxed=allow_unsandboxed)
        samples = [{"task_id": p["task_id"], "passed": r.passed, "status": r.status, "completion": c,
                    "stderr_tail": r.stderr[-300:]} for p, c, r in zip(problems, outs, results)]
        return ({"metric": "pass@1 (greedy)", "score": _pct([s["passed"] for s in samples]), "n": len(samples),
                 "sandbox": sandbox_layers()}, samples)


def _pct(flags) -> float:
    flags = list(flags)
    return 100.0 * float(np.mean(flags)) if flags else 0.0


def evaluate(ckpt: str, benchmarks: list[str], data_dir: str, out: str, *, limit: int | None = None,
             batch_size: int = 8, tokenizer: str | None = None, dtype: str | None = None,
             mesh: dict | None = None, humaneval_workers: int = 4, allow_unsandboxed: bool = False,
             overwrite: bool = False, shots: dict | None = None,
             max_new_tokens: int | None = None) -> dict[str, Any]:
    import sentencepiece as spm

    from tasks.evaluation import BENCHMARKS, register
    from ziya_jax.evaluation.engine import EvalEngine
    from ziya_jax.parallel import make_mesh
    from ziya_jax.params_io import atomic_directory
    from ziya_jax.pretrained import load_pretrained

    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {','.join(BENCHMARKS)}")
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite or choose another --out")
    tok = Path(tokenizer) if tokenizer else Path(ckpt) / "hf_files" / "tokenizer.model"
    if not tok.is_file():
        raise FileNotFoundError(f"{tok}: no SentencePiece model; pass --tokenizer PATH/tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=str(tok))
    model = load_pretrained(ckpt, dtype=dtype)
    if sp.get_piece_size() > model.config.vocab_size:
        raise ValueError(f"{tok} has {sp.get_piece_size()} pieces but the model's vocabulary is "
                         f"{model.config.vocab_size}; pass the checkpoint's own tokenizer")
    register(data_dir, str(tok), benchmarks, shots)
    engine = EvalEngine(model.config, model.params, batch_size=batch_size, mesh=make_mesh(mesh or {"fsdp": -1}))
    runner = Runner(engine, sp, max_new_tokens=max_new_tokens)
    report: dict[str, Any] = {"checkpoint": str(ckpt), "tokenizer": str(tok), "limit": limit,
                              "batch_size": engine.batch_size, "mesh": dict(engine.mesh.shape), "tasks": {}}
    all_samples = {}
    for b in benchmarks:
        start = time.perf_counter()
        examples = load_examples(b, limit)
        if b in ("mmlu", "cmmlu", "ceval"):
            result, samples = runner.multiple_choice(b, examples)
        elif b == "gsm8k":
            result, samples = runner.gsm8k(examples)
        elif b == "math":
            result, samples = runner.math(examples)
        else:
            result, samples = runner.humaneval(examples, humaneval_workers, allow_unsandboxed)
        result["seconds"] = round(time.perf_counter() - start, 2)
        if b in MAX_NEW_TOKENS:
            result["max_new_tokens"] = runner.max_new_tokens(b)
        report["tasks"][b] = result
        all_samples[b] = samples
        print(f"{TITLES[b]}: {result['score']:.2f} ({result['metric']}, n={result['n']})", file=sys.stderr)
    report["average"] = float(np.mean([r["score"] for r in report["tasks"].values()]))
    with atomic_directory(out, overwrite=overwrite) as tmp:
        (tmp / "samples").mkdir()
        for b, samples in all_samples.items():
            (tmp / "samples" / f"{b}.jsonl").write_text(
                "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        (tmp / "report.md").write_text(markdown_report(report), encoding="utf-8")
    return report


def markdown_report(report: dict) -> str:
    names = [b for b in TITLES if b in report["tasks"]]
    lines = ["# Evaluation report (paper Table 3 protocol)", "",
             f"Checkpoint: `{report['checkpoint']}`; tokenizer `{report['tokenizer']}`; "
             f"limit {report['limit'] or 'none'}; batch {report['batch_size']}; mesh {report['mesh']}.", "",
             "| Model | " + " | ".join(TITLES[b] for b in names) + " | Average |",
             "|---" * (len(names) + 2) + "|",
             "| this checkpoint | " + " | ".join(f"{report['tasks'][b]['score']:.2f}" for b in names) +
             f" | {report['average']:.2f} |"]
    for model, scores in PAPER_TABLE3.items():
        vals = [scores[b] for b in names]
        lines.append(f"| {model} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.mean(vals):.2f} |")
    lines += ["", "Scores are percentages. MMLU/CMMLU/C-Eval: accuracy, macro average over subjects. "
              "GSM8K: exact match. MATH: equivalence. HumanEval: pass@1 (greedy).", ""]
    for b in names:
        r = report["tasks"][b]
        lines += [f"## {TITLES[b]}", "", f"- metric: {r['metric']}; n = {r['n']}; score {r['score']:.2f}; "
                  f"{r['seconds']} s"]
        for k in ("micro_accuracy", "strict_match"):
            if k in r:
                lines.append(f"- {k.replace('_', ' ')}: {r[k]:.2f}")
        if "sandbox" in r:
            lines.append("- sandbox layers: " + ", ".join(f"{k}={v}" for k, v in r["sandbox"].items()))
        if r.get("subjects"):
            lines += ["", "| subject | score |", "|---|---|"]
            lines += [f"| {s} | {v:.2f} |" for s, v in r["subjects"].items()]
        lines.append("")
    return "\n".join(lines)
