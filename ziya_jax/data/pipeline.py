"""The data factory as one Apache Beam graph: read -> preprocess -> score -> filter -> dedup -> write.

Every step has a main output and a `rejected` output; the counts of both (and of removed fragments)
are combined into `stats.json` inside the pipeline, so `input = output + drops` holds on any runner.
Dedup stages group by key across all shards (global). The run writes into `<out>.partial` and
renames it to `<out>` only after the pipeline and the evaluation finished; a complete output
directory is never overwritten unless asked, and a stale `.partial` is discarded, never mixed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import apache_beam as beam
import ml_collections
from apache_beam.options.pipeline_options import PipelineOptions

from ziya_jax.data import dedup as dd
from ziya_jax.data.filters import FilterConfig, RuleFilter
from ziya_jax.data.io import atomic_write_text, common_root, doc_to_example, expand_inputs, read_file
from ziya_jax.data.preprocess import PreprocessConfig, Preprocessor
from ziya_jax.data.records import drop
from ziya_jax.data.scoring import STEP as SCORE_STEP
from ziya_jax.data.scoring import LanguageModelFiles, PerplexityScorer, bucket_for, find_models

REJECTED = "rejected"
FRAGMENTS = "fragments"
STEP_ORDER = ("read", "preprocess", "score", "filter", "dedup_url", "dedup_exact", "dedup_fuzzy")


class PipelineError(ValueError):
    pass


def dataclass_from(cls, section: ml_collections.ConfigDict):
    values = {}
    for f in dataclasses.fields(cls):
        v = section[f.name]
        values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


def stable_fraction(doc_id: str) -> float:
    """A deterministic pseudo-random number in [0, 1) from a document id (for sampling)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little") / 2**64


# ----- DoFns -----

class ReadFn(beam.DoFn):
    def __init__(self, root: str, total_files: int):
        self.root, self.total = root, total_files

    def process(self, path):
        n_ok = n_bad = 0
        for ok, rec in read_file(path, self.root):
            if ok:
                n_ok += 1
                yield rec
            else:
                n_bad += 1
                yield beam.pvalue.TaggedOutput(REJECTED, rec)
        print(f"[data] read {os.path.relpath(path, self.root) if self.root else path}: {n_ok} documents, "
              f"{n_bad} bad records ({self.total} files in the run)", file=sys.stderr, flush=True)


class PreprocessFn(beam.DoFn):
    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg

    def setup(self):
        self.fn = Preprocessor(self.cfg)

    def process(self, doc):
        out, rej = self.fn(doc)
        if out is not None:
            yield out
        else:
            yield beam.pvalue.TaggedOutput(REJECTED, rej)


class PerplexityFn(beam.DoFn):
    def __init__(self, models: dict[str, LanguageModelFiles]):
        self.models = models

    def setup(self):
        self.scorer = PerplexityScorer(self.models)

    def process(self, doc):
        lang = doc["lang"]
        ppl = self.scorer.perplexity(doc["text"], lang) if lang in self.models else -1.0
        yield dict(doc, ppl=ppl)


def assign_bucket(doc, cutoffs):
    lang = doc["lang"]
    if doc["ppl"] < 0:
        yield dict(doc, quality="unscored")
        return
    if not math.isfinite(doc["ppl"]):
        yield beam.pvalue.TaggedOutput(REJECTED, drop(doc, SCORE_STEP, "unscorable", detail="no tokens to score"))
        return
    cut = cutoffs.get(lang)
    bucket = bucket_for(doc["ppl"], cut)
    if bucket == "low":
        yield beam.pvalue.TaggedOutput(REJECTED, drop(doc, SCORE_STEP, "perplexity_low_quality",
                                                      detail=f"ppl {doc['ppl']:.1f} > {cut[1]:.1f} ({lang})"))
    else:
        yield dict(doc, quality=bucket)


class FilterFn(beam.DoFn):
    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg

    def setup(self):
        self.fn = RuleFilter(self.cfg)

    def process(self, doc):
        out, drops = self.fn(doc)
        for d in drops:
            yield beam.pvalue.TaggedOutput(FRAGMENTS if d["level"] != "document" else REJECTED, d)
        if out is not None:
            yield out


def pick_smallest(kv, step: str, reason: str):
    """Group of documents sharing a key: the smallest id survives, the others are drops naming it."""
    _, docs = kv
    docs = sorted(docs, key=lambda d: d["id"])
    yield docs[0]
    for d in docs[1:]:
        yield beam.pvalue.TaggedOutput(REJECTED, drop(d, step, reason, survivor=docs[0]["id"]))


def bloom_bucket(kv, step: str, reason: str, error_rate: float):
    """One hash bucket of (key, doc): a Bloom filter in id order keeps the first of each key."""
    _, items = kv
    items = sorted(items, key=lambda kd: kd[1]["id"])
    bloom = dd.BloomFilter(len(items), error_rate)
    for key, doc in items:
        if bloom.add(key):
            yield beam.pvalue.TaggedOutput(REJECTED, drop(doc, step, reason, detail="bloom filter"))
        else:
            yield doc


def dedup_by_key(docs, name: str, key_fn, reason: str, cfg: dd.DedupConfig):
    """Global dedup on an exact key; documents whose key is '' pass through."""
    keyed = docs | f"{name}/key" >> beam.Map(lambda d: (key_fn(d), d))
    with_key, without = keyed | f"{name}/split" >> beam.Partition(lambda kv, n: 0 if kv[0] else 1, 2)
    if cfg.key_method == "bloom":
        buckets = cfg.bloom_buckets
        res = (with_key
               | f"{name}/bucket" >> beam.Map(lambda kv: (_bucket_of(kv[0], buckets), kv))
               | f"{name}/group" >> beam.GroupByKey()
               | f"{name}/bloom" >> beam.FlatMap(bloom_bucket, name, reason, cfg.bloom_error_rate)
               .with_outputs(REJECTED, main="docs"))
    elif cfg.key_method == "group":
        res = (with_key | f"{name}/group" >> beam.GroupByKey()
               | f"{name}/pick" >> beam.FlatMap(pick_smallest, name, reason).with_outputs(REJECTED, main="docs"))
    else:
        raise PipelineError(f"dedup.key_method {cfg.key_method!r} must be 'group' or 'bloom'")
    passed = without | f"{name}/unkeyed" >> beam.Values()
    kept = (res.docs, passed) | f"{name}/merge" >> beam.Flatten()
    return kept, res[REJECTED]


def _bucket_of(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") % n


class SignatureFn(beam.DoFn):
    def __init__(self, cfg: dd.DedupConfig):
        self.cfg = cfg

    def setup(self):
        self.hasher = dd.MinHasher(self.cfg) if self.cfg.fuzzy == "minhash" else None

    def process(self, doc):
        hashes = dd.shingle_hashes(doc["text"], doc["lang"], self.cfg)
        if self.hasher is not None:
            sig = self.hasher.signature(hashes)
            for band in self.hasher.bands(sig):
                yield band, (doc["id"], sig)
        else:
            value = dd.simhash(hashes)
            for band in dd.simhash_bands(value, self.cfg.simhash_max_hamming):
                yield band, (doc["id"], value)


def join_fuzzy(kv, step: str):
    _, groups = kv
    docs, survivors = list(groups["doc"]), list(groups["dup"])
    for doc in docs:
        if survivors:
            yield beam.pvalue.TaggedOutput(REJECTED, drop(doc, step, "near_duplicate", survivor=survivors[0]))
        else:
            yield doc


def dedup_fuzzy(docs, cfg: dd.DedupConfig):
    name = "dedup_fuzzy"
    edges = (docs
             | f"{name}/signature" >> beam.ParDo(SignatureFn(cfg))
             | f"{name}/band" >> beam.GroupByKey()
             | f"{name}/verify" >> beam.FlatMap(lambda kv: dd.verify_bucket(list(kv[1]), cfg.fuzzy, cfg)))
    dup_pairs = (edges
                 | f"{name}/edges" >> beam.combiners.ToList()
                 | f"{name}/cluster" >> beam.FlatMap(dd.clusters_to_survivors))
    by_id = docs | f"{name}/by_id" >> beam.Map(lambda d: (d["id"], d))
    res = ({"doc": by_id, "dup": dup_pairs}
           | f"{name}/join" >> beam.CoGroupByKey()
           | f"{name}/drop" >> beam.FlatMap(join_fuzzy, name).with_outputs(REJECTED, main="docs"))
    return res.docs, res[REJECTED]


# ----- counting -----

def _count(pcoll, label: str, key: tuple):
    return (pcoll | f"count/{label}" >> beam.combiners.Count.Globally()
            | f"count/{label}/key" >> beam.Map(lambda n: (key, n)))


def _reasons(pcoll, label: str, kind: str):
    return (pcoll | f"reasons/{label}" >> beam.Map(lambda r: ((kind, r["step"], r["reason"]), 1))
            | f"reasons/{label}/sum" >> beam.CombinePerKey(sum))


def assemble_stats(entries: list) -> dict:
    counts = {}
    for key, n in entries:
        counts[tuple(key)] = n
    steps = []
    for name in STEP_ORDER:
        if ("in", name) not in counts:
            continue
        dropped = {k[2]: v for k, v in sorted(counts.items()) if k[0] == "drop" and k[1] == name}
        fragments = {k[2]: v for k, v in sorted(counts.items()) if k[0] == "fragment" and k[1] == name}
        step = {"name": name, "in": counts[("in", name)], "out": counts[("out", name)], "dropped": dropped}
        if fragments:
            step["removed_fragments"] = fragments
        steps.append(step)
    return {"input_records": steps[0]["in"], "output_records": steps[-1]["out"], "steps": steps}


def write_json(obj, path: str) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False))


# ----- the graph -----

def build(p: beam.Pipeline, files: list[str], root: str, cfg: ml_collections.ConfigDict, out: str,
          models: dict[str, LanguageModelFiles]) -> None:
    stats_parts, rejected_parts = [], []

    def record(name, inp, outp, rejected, fragments=None):
        if inp is not None:
            stats_parts.append(_count(inp, f"{name}/in", ("in", name)))
        stats_parts.append(_count(outp, f"{name}/out", ("out", name)))
        stats_parts.append(_reasons(rejected, name, "drop"))
        rejected_parts.append(rejected)
        if fragments is not None:
            stats_parts.append(_reasons(fragments, f"{name}/fragments", "fragment"))
            rejected_parts.append(fragments)

    read = (p | "files" >> beam.Create(files) | "reshuffle_files" >> beam.Reshuffle()
            | "read" >> beam.ParDo(ReadFn(root, len(files))).with_outputs(REJECTED, main="docs"))
    raw_all = (read.docs, read[REJECTED]) | "read/all" >> beam.Flatten()
    record("read", raw_all, read.docs, read[REJECTED])
    docs = read.docs

    pre = docs | "preprocess" >> beam.ParDo(PreprocessFn(dataclass_from(PreprocessConfig, cfg.preprocess))) \
        .with_outputs(REJECTED, main="docs")
    record("preprocess", docs, pre.docs, pre[REJECTED])
    docs = pre.docs

    scored = docs | "score/perplexity" >> beam.ParDo(PerplexityFn(models))
    fractions = (cfg.score.high_fraction, cfg.score.medium_fraction)
    nq = cfg.score.num_quantiles
    cutoffs = (scored
               | "score/values" >> beam.FlatMap(lambda d: [(d["lang"], d["ppl"])] if d["ppl"] >= 0 and
                                                math.isfinite(d["ppl"]) else [])
               | "score/quantiles" >> beam.transforms.stats.ApproximateQuantiles.PerKey(nq)
               | "score/cutoffs" >> beam.Map(lambda kv: (kv[0], (kv[1][round(fractions[0] * (len(kv[1]) - 1))],
                                                                 kv[1][round(fractions[1] * (len(kv[1]) - 1))]))))
    _ = (cutoffs | "score/cutoffs_list" >> beam.combiners.ToList()
         | "score/write_cutoffs" >> beam.Map(lambda kvs: write_json({k: {"high_max_ppl": v[0], "medium_max_ppl": v[1]}
                                                                     for k, v in sorted(kvs)},
                                                                    os.path.join(out, "ppl_cutoffs.json"))))
    bucketed = scored | "score/bucket" >> beam.FlatMap(assign_bucket, beam.pvalue.AsDict(cutoffs)) \
        .with_outputs(REJECTED, main="docs")
    record("score", docs, bucketed.docs, bucketed[REJECTED])
    docs = bucketed.docs

    filt = docs | "filter" >> beam.ParDo(FilterFn(dataclass_from(FilterConfig, cfg.filter))) \
        .with_outputs(REJECTED, FRAGMENTS, main="docs")
    record("filter", docs, filt.docs, filt[REJECTED], filt[FRAGMENTS])
    docs = filt.docs

    dcfg = dataclass_from(dd.DedupConfig, cfg.dedup)
    if dcfg.url:
        kept, rej = dedup_by_key(docs, "dedup_url", lambda d: dd.normalize_url(d["url"]), "duplicate_url", dcfg)
        record("dedup_url", docs, kept, rej)
        docs = kept
    if dcfg.exact:
        kept, rej = dedup_by_key(docs, "dedup_exact", lambda d: dd.text_key(d["text"]), "exact_duplicate", dcfg)
        record("dedup_exact", docs, kept, rej)
        docs = kept
    if dcfg.fuzzy in ("minhash", "simhash"):
        kept, rej = dedup_fuzzy(docs, dcfg)
        record("dedup_fuzzy", docs, kept, rej)
        docs = kept
    elif dcfg.fuzzy != "none":
        raise PipelineError(f"dedup.fuzzy {dcfg.fuzzy!r} must be minhash, simhash or none")

    num_shards = int(cfg.output.num_shards)
    _ = (docs | "write/encode" >> beam.Map(doc_to_example)
         | "write/curated" >> beam.io.WriteToTFRecord(os.path.join(out, "data", "curated"),
                                                      file_name_suffix=".tfrecord", num_shards=num_shards))
    _ = (tuple(rejected_parts) | "rejected/all" >> beam.Flatten()
         | "rejected/json" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False))
         | "rejected/write" >> beam.io.WriteToText(os.path.join(out, "rejected", "rejected"), file_name_suffix=".jsonl",
                                                   num_shards=int(cfg.output.rejected_shards)))
    frac = float(cfg.eval.sample_fraction)
    _ = (docs | "eval/auto_sample" >> beam.Filter(lambda d: stable_fraction(d["id"]) < frac)
         | "eval/auto_json" >> beam.Map(lambda d: json.dumps(d, ensure_ascii=False))
         | "eval/auto_write" >> beam.io.WriteToText(os.path.join(out, "eval", "auto_sample"),
                                                    file_name_suffix=".jsonl", num_shards=1))
    _ = (docs | "eval/human_sample" >> beam.combiners.Top.Of(int(cfg.eval.human_samples),
                                                                key=lambda d: -stable_fraction(d["id"]))
         | "eval/human_flat" >> beam.FlatMap(lambda docs_: docs_)
         | "eval/human_json" >> beam.Map(lambda d: json.dumps(d, ensure_ascii=False))
         | "eval/human_write" >> beam.io.WriteToText(os.path.join(out, "eval", "human_sample"),
                                                     file_name_suffix=".jsonl", num_shards=1))
    _ = (tuple(stats_parts) | "stats/all" >> beam.Flatten() | "stats/list" >> beam.combiners.ToList()
         | "stats/write" >> beam.Map(lambda entries: write_json(assemble_stats(entries), os.path.join(out, "stats.json"))))


def prepare_output(out: str, overwrite: bool) -> str:
    """Refuse to mix with a finished run; discard a stale partial one. Returns the temporary directory."""
    final, partial = Path(out), Path(out + ".partial")
    if final.exists() and any(final.iterdir()):
        if not overwrite:
            raise PipelineError(f"output directory {out} already holds a run (see its stats.json); "
                                "pass --overwrite to replace it or choose a new --output")
    if partial.exists():
        print(f"[data] discarding the unfinished run in {partial}", file=sys.stderr)
        shutil.rmtree(partial)
    for sub in ("data", "rejected", "eval"):
        (partial / sub).mkdir(parents=True)
    return str(partial)


def default_options(beam_args: list[str]) -> PipelineOptions:
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    runner = next(a.split("=", 1)[1] for a in args if a.startswith("--runner"))
    if runner == "DirectRunner":
        if not any(a.startswith("--direct_running_mode") for a in args):
            args.append("--direct_running_mode=multi_processing")
        if not any(a.startswith("--direct_num_workers") for a in args):
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    return PipelineOptions(args)


def run(input_glob: str, output: str, cfg: ml_collections.ConfigDict, beam_args: list[str] | None = None,
        overwrite: bool = False) -> dict:
    """Run the factory; returns stats.json's content. Evaluation files are written after the pipeline."""
    from ziya_jax.data.evaluate import evaluate_output

    import logging
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    files = expand_inputs(input_glob)
    root = common_root(files)
    languages = tuple(cfg.score.languages)
    models = find_models(cfg.score.model_dir, languages) if cfg.score.model_dir else {}
    if not models:
        print("[data] no scoring models (score.model_dir is empty): every document is kept as 'unscored'",
              file=sys.stderr)
    RuleFilter(dataclass_from(FilterConfig, cfg.filter))  # fail fast on bad word lists / rule names
    tmp = prepare_output(output, overwrite)
    t0 = time.time()
    print(f"[data] {len(files)} input files under {root}; writing to {tmp}", file=sys.stderr, flush=True)
    with beam.Pipeline(options=default_options(beam_args or [])) as p:
        build(p, files, root, cfg, tmp, models)
    elapsed = time.time() - t0
    stats = json.loads(Path(tmp, "stats.json").read_text())
    stats["input_bytes"] = sum(os.path.getsize(f) for f in files)
    stats["seconds"] = round(elapsed, 2)
    stats["config"] = cfg.to_dict()
    write_json(stats, os.path.join(tmp, "stats.json"))
    evaluate_output(tmp, cfg)
    if Path(output).exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    print(f"[data] done in {elapsed:.1f}s: {stats['input_records']} records in, {stats['output_records']} curated "
          f"-> {output}/data, drops in {output}/rejected, stats in {output}/stats.json", file=sys.stderr)
    return stats
