"""Data-factory throughput: MB/s per core for each step and for the whole Beam pipeline (one JSON line).

A >= 100 MB raw corpus is generated from the demo corpus (real packaged text, re-mixed and lightly
perturbed per copy so dedup does not collapse it). Per-step figures run each step's function in one
process on the documents that reach that step; the end-to-end figure runs the real pipeline on the
DirectRunner (multi_processing, one worker per core) and divides by the number of cores.
Target: >= 1 MB/s per core end to end. `datatrove`, where it installs, is measured on the same
MinHash dedup in the same run (ratio); it is skipped with a note otherwise.

    python benchmarks/data_factory.py [--mb 100] [--workdir /tmp/ziya_bench_data]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generate_corpus(demo_dir: Path, out_dir: Path, target_mb: float, seed: int = 0) -> int:
    """Write shards of re-mixed demo documents until target_mb of raw JSON Lines exist; returns bytes."""
    from ziya_jax.data.io import read_file, expand_inputs, common_root
    files = expand_inputs(str(demo_dir / "raw" / "**" / "*"))
    root = common_root(files)
    docs = [d for f in files for ok, d in read_file(f, root) if ok and len(d["text"]) < 200_000]
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    total, shard, copy = 0, 0, 0
    while total < target_mb * 1e6:
        path = out_dir / f"part-{shard:04d}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            for d in rng.sample(docs, min(len(docs), 2000)):
                copy += 1
                paras = d["text"].split("\n\n")
                rng.shuffle(paras)   # a different document per copy: re-ordered paragraphs and a marker
                text = "\n\n".join(paras) + f"\n\n{rng.choice(['Note', '注'])} {copy}"
                line = json.dumps({"text": text, "url": f"https://bench.example/{copy}", "source": d["source"],
                                   "lang": d["lang"] if d["lang"] in ("python",) else ""}, ensure_ascii=False)
                fh.write(line + "\n")
                total += len(line.encode()) + 1
        shard += 1
    return total


def per_step(corpus_dir: Path, lm_dir: Path) -> dict:
    from ziya_jax.data import dedup as dd
    from ziya_jax.data.filters import RuleFilter
    from ziya_jax.data.io import common_root, expand_inputs, read_file
    from ziya_jax.data.preprocess import Preprocessor
    from ziya_jax.data.scoring import PerplexityScorer, find_models

    files = expand_inputs(str(corpus_dir / "*.jsonl.gz"))[:8]   # a sample of shards is enough per step
    root = common_root(files)
    figures = {}
    t = time.perf_counter()
    docs = [d for f in files for ok, d in read_file(f, root) if ok]
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    figures["read"] = mb / (time.perf_counter() - t)

    def timed(name, fn, items):
        nbytes = sum(len(d["text"].encode()) for d in items) / 1e6
        t0 = time.perf_counter()
        out = fn(items)
        figures[name] = round(nbytes / (time.perf_counter() - t0), 3)
        return out

    pre = Preprocessor()
    docs = timed("preprocess", lambda ds: [o for o in (pre(d)[0] for d in ds) if o], docs)
    scorer = PerplexityScorer(find_models(str(lm_dir), ("zh", "en")))
    scored = [d for d in docs if d["lang"] in ("zh", "en")]
    timed("score", lambda ds: [scorer.perplexity(d["text"], d["lang"]) for d in ds], scored)
    rf = RuleFilter()
    docs = timed("filter", lambda ds: [o for o in (rf(d)[0] for d in ds) if o], docs)
    timed("dedup_keys", lambda ds: [(dd.normalize_url(d["url"]), dd.text_key(d["text"])) for d in ds], docs)
    cfg = dd.DedupConfig()
    mh = dd.MinHasher(cfg)
    timed("dedup_minhash_signature", lambda ds: [mh.signature(dd.shingle_hashes(d["text"], d["lang"], cfg))
                                                 for d in ds], docs)
    figures["read"] = round(figures["read"], 3)
    return figures


def datatrove_ratio(corpus_dir: Path, workdir: Path) -> dict:
    """Our MinHash signatures vs datatrove's MinhashDedupSignature (same 14x8 scheme, 5-word shingles)
    on the same English documents, one process each."""
    import importlib.util
    if importlib.util.find_spec("datatrove") is None:
        return {"datatrove": "not installed (pip install -r benchmarks/requirements-bench.txt to compare)"}
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    from ziya_jax.data import dedup as dd
    from ziya_jax.data.io import common_root, expand_inputs, read_file
    files = expand_inputs(str(corpus_dir / "*.jsonl.gz"))[:4]
    root = common_root(files)
    docs = [d for f in files for ok, d in read_file(f, root) if ok and d["source"] in ("books", "web_en")][:3000]
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    cfg = dd.DedupConfig()
    mh = dd.MinHasher(cfg)
    t0 = time.perf_counter()
    for d in docs:
        mh.signature(dd.shingle_hashes(d["text"], "en", cfg))
    ours = mb / (time.perf_counter() - t0)
    step = MinhashDedupSignature(output_folder=str(workdir / "datatrove_sigs"),
                                 config=MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8))
    dt_docs = [Document(text=d["text"], id=d["id"]) for d in docs]
    t0 = time.perf_counter()
    step.run(iter(dt_docs), rank=0, world_size=1)
    theirs = mb / (time.perf_counter() - t0)
    return {"minhash_compare_mb": round(mb, 2), "minhash_ours_mb_per_s": round(ours, 3),
            "minhash_datatrove_mb_per_s": round(theirs, 3), "minhash_speed_ratio_vs_datatrove": round(ours / theirs, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--workdir", default="/tmp/ziya_bench_data")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from ziya_jax.config import load_config
    from ziya_jax.data.demo_corpus import build_demo_corpus, train_demo_models
    from ziya_jax.data.pipeline import run

    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    build_demo_corpus(str(work / "demo"))
    train_demo_models(str(work / "lm"))
    raw_bytes = generate_corpus(work / "demo", work / "corpus", a.mb)
    steps = per_step(work / "corpus", work / "lm")
    cfg = load_config("configs/data/ziya2.py", [f"--config.score.model_dir={work / 'lm'}"])
    t0 = time.perf_counter()
    stats = run(str(work / "corpus" / "*.jsonl.gz"), str(work / "out"), cfg,
                ["--direct_running_mode=multi_processing", f"--direct_num_workers={a.workers}"])
    wall = time.perf_counter() - t0
    text_mb = raw_bytes / 1e6
    result = {"benchmark": "data_factory", "corpus_mb": round(text_mb, 1), "input_records": stats["input_records"],
              "output_records": stats["output_records"], "workers": a.workers, "pipeline_seconds": round(wall, 1),
              "pipeline_mb_per_s_per_core": round(text_mb / wall / a.workers, 3),
              "target_mb_per_s_per_core": 1.0, "step_mb_per_s_single_core": steps}
    result.update(datatrove_ratio(work / "corpus", work))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
