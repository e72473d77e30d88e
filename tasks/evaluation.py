"""SeqIO evaluation tasks of paper Table 3: MMLU, CMMLU, C-Eval, GSM8K, MATH and HumanEval.

    ziya2_eval_mmlu / _cmmlu / _ceval   5-shot multiple choice (shots: the subject's dev split, first n)
    ziya2_eval_gsm8k                    8-shot chain of thought (the standard exemplars)
    ziya2_eval_math                     4-shot Minerva prompt
    ziya2_eval_humaneval                0-shot code completion

Each example carries `inputs` (the full prompt, tokenized, with `inputs_pretokenized`), `targets`
(the reference answer text) and the benchmark's own fields (subject, choices, answer, gold, test, ...).
Sources are `seqio.TfdsDataSource`s over the builders of ziya_jax/evaluation/sources.py, prepared
offline from the official files in `DATA_DIR/downloads/manual/<benchmark>/`.

`register(data_dir, vocab_path, benchmarks, shots)` registers them; on import they are registered
from ZIYA_EVAL_DATA_DIR and ZIYA_VOCAB when both are set.
"""
from __future__ import annotations

import functools
import os

import seqio
import tensorflow as tf

from ziya_jax.evaluation import prompts
from ziya_jax.evaluation.sources import BUILDERS, VERSION, prepare

BENCHMARKS = ("mmlu", "cmmlu", "ceval", "gsm8k", "math", "humaneval")
EVAL_SPLIT = {"mmlu": "test", "cmmlu": "test", "ceval": "validation", "gsm8k": "test", "math": "test",
              "humaneval": "test"}
DEFAULT_SHOTS = {"mmlu": 5, "cmmlu": 5, "ceval": 5, "gsm8k": 8, "math": 4, "humaneval": 0}


def task_name(benchmark: str) -> str:
    return f"ziya2_eval_{benchmark}"


def _dev_shots(benchmark: str, data_dir: str, shots: int) -> dict[str, str]:
    """Subject -> few-shot prefix (header + the first `shots` dev questions in file order)."""
    import tensorflow_datasets as tfds
    dev = tfds.as_numpy(BUILDERS[benchmark](data_dir=data_dir).as_dataset(split="dev"))
    by_subject: dict[str, list[dict]] = {}
    for ex in dev:
        rec = {"id": ex["id"].decode(), "question": ex["question"].decode(),
               "choices": [c.decode() for c in ex["choices"]], "answer": int(ex["answer"])}
        by_subject.setdefault(ex["subject"].decode(), []).append(rec)
    prefixes = {}
    for subject, recs in by_subject.items():
        recs.sort(key=lambda r: int(r["id"].rsplit("/", 1)[1]) if r["id"].rsplit("/", 1)[1].isdigit() else r["id"])
        prefixes[subject] = prompts.mc_prefix(benchmark, subject, recs[:shots])
    return prefixes


def _mc_format(benchmark: str, prefixes: dict[str, str]):
    keys = list(prefixes)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys or [""]), tf.constant([prefixes[k] for k in keys] or [""])), default_value="")
    answer_word = "Answer:" if benchmark == "mmlu" else "答案："
    conts = tf.constant(prompts.mc_continuations(benchmark))

    def fmt(ds):
        def one(ex):
            subject_prefix = table.lookup(ex["subject"])
            header = tf.where(tf.strings.length(subject_prefix) > 0, subject_prefix,
                              tf.constant(prompts.mc_header(benchmark, "")))
            parts = [header, tf.strings.strip(ex["question"]), "\n"]
            for i, letter in enumerate(prompts.LETTERS):
                parts += [f"{letter}. ", ex["choices"][i], "\n"]
            parts.append(answer_word)
            return {**ex, "inputs": tf.strings.join(parts), "targets": tf.gather(conts, ex["answer"])}
        return ds.map(one, num_parallel_calls=tf.data.AUTOTUNE)
    return fmt


def _gsm8k_format(shots: int):
    prefix = prompts.gsm8k_prefix(prompts.gsm8k_exemplars()[:shots])

    def fmt(ds):
        return ds.map(lambda ex: {**ex, "inputs": tf.strings.join([prefix, "Q: ", ex["question"], "\nA:"]),
                                  "targets": ex["gold"]})
    return fmt


def _math_format(shots: int):
    prefix = prompts.math_prefix(prompts.math_exemplars()[:shots])

    def fmt(ds):
        return ds.map(lambda ex: {**ex, "inputs": tf.strings.join([prefix, "Problem:\n", ex["problem"],
                                                                   "\n\nSolution:"]), "targets": ex["gold"]})
    return fmt


def _humaneval_format(ds):
    return ds.map(lambda ex: {**ex, "inputs": ex["prompt"], "targets": ex["canonical_solution"]})


def register(data_dir: str, vocab_path: str, benchmarks=BENCHMARKS, shots: dict[str, int] | None = None,
             prepare_missing: bool = True) -> seqio.SentencePieceVocabulary:
    """Prepare (if needed) and register the evaluation tasks of `benchmarks`."""
    shots = {**DEFAULT_SHOTS, **(shots or {})}
    vocab = seqio.SentencePieceVocabulary(vocab_path)
    features = {"inputs": seqio.Feature(vocab, add_eos=False), "targets": seqio.Feature(vocab, add_eos=False)}
    for b in benchmarks:
        if prepare_missing:
            prepare(b, data_dir)
        if b in ("mmlu", "cmmlu", "ceval"):
            fmt = _mc_format(b, _dev_shots(b, data_dir, shots[b]))
        elif b == "gsm8k":
            fmt = _gsm8k_format(shots[b])
        elif b == "math":
            fmt = _math_format(shots[b])
        else:
            fmt = _humaneval_format
        seqio.TaskRegistry.remove(task_name(b))
        seqio.TaskRegistry.add(
            task_name(b), source=seqio.TfdsDataSource(f"{BUILDERS[b].name}:{VERSION}", tfds_data_dir=data_dir),
            preprocessors=[fmt, functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=True)],
            output_features=features)
    return vocab


if os.environ.get("ZIYA_EVAL_DATA_DIR") and os.environ.get("ZIYA_VOCAB"):
    register(os.environ["ZIYA_EVAL_DATA_DIR"], os.environ["ZIYA_VOCAB"], prepare_missing=False)
