"""The data factory as one Apache Beam graph: read -> preprocess -> score -> filter -> dedup -> write.

The graph is laid out so that whole documents cross a shuffle only twice, whatever the runner:
  1. `read_score`: one DoFn per input file reads, preprocesses and scores every document.
  2. The perplexity cutoffs (percentiles of this corpus, a side input) are the one global barrier
     before `curate`: bucketing, the rule filters, and the dedup keys and signatures of the survivors.
  3. Dedup runs on small key records (id, URL key, text key, signature), never on documents:
     URL groups, then exact groups, then MinHash/SimHash bands, each stage seeing only the survivors
     of the one before (the paper's order). Its decisions are joined back to the documents by id.
Every DoFn counts what it does per bundle (in, out, drops and removed fragments by reason) and emits
the counts when the bundle finishes, so `input = output + drops` holds on any runner (a retried
bundle's counts are discarded with its outputs) without a counting transform per document. Dropped
documents and fragments are written to `rejected/` with their step and reason.

The run writes into `<out>.partial` and renames it to `<out>` only after the pipeline and the
evaluation finished; a complete output directory is never overwritten unless asked, and a stale
`.partial` is discarded, never mixed.
"""
from __future__ import annotations

import collections
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
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from ziya_jax.data import dedup as dd
from ziya_jax.data.filters import FilterConfig, RuleFilter
from ziya_jax.data.io import atomic_write_text, common_root, doc_to_example, expand_inputs, read_file
from ziya_jax.data.preprocess import PreprocessConfig, Preprocessor
from ziya_jax.data.records import drop
from ziya_jax.data.scoring import STEP as SCORE_STEP
from ziya_jax.data.scoring import LanguageModelFiles, PerplexityScorer, bucket_for, find_models

REJECTED = "rejected"
COUNTS = "counts"
PPL = "ppl"
KEYS = "keys"
AUTO = "auto_sample"
HUMAN = "human_sample"
STEP_ORDER = ("read", "preprocess", "score", "filter", "dedup_url", "dedup_exact", "dedup_fuzzy")
# a dedup key record: (doc id, normalised URL, text key, MinHash signature bytes or SimHash int)
KEY_ID, KEY_URL, KEY_TEXT, KEY_SIG = range(4)


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


def _json(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False)


# ----- DoFns -----

class CountingDoFn(beam.DoFn):
    """A DoFn that tallies (kind, step[, reason]) per bundle and emits the tallies to COUNTS at its end."""

    def start_bundle(self):
        self.tally: collections.Counter = collections.Counter()
        if os.environ.get("ZT"): print(f"ZT start {type(self).__name__} {os.getpid()} {time.time():.2f}", file=sys.stderr, flush=True)

    def finish_bundle(self):
        if os.environ.get("ZT"): print(f"ZT end {type(self).__name__} {os.getpid()} {time.time():.2f} {sum(v for k, v in self.tally.items() if k[0]=='in')}", file=sys.stderr, flush=True)
        for key, n in self.tally.items():
            yield beam.pvalue.TaggedOutput(COUNTS, WindowedValue((key, n), MIN_TIMESTAMP, [GlobalWindow()]))

    def rejected(self, record: dict):
        """Count a dropped document (or a removed fragment) and return its `rejected/` line."""
        kind = "drop" if record["level"] == "document" else "fragment"
        self.tally[(kind, record["step"], record["reason"])] += 1
        return beam.pvalue.TaggedOutput(REJECTED, _json(record))


class ReadScoreFn(CountingDoFn):
    """One input file -> its documents, preprocessed and scored (perplexity; -1 where no model)."""

    def __init__(self, root: str, total_files: int, cfg: PreprocessConfig, models: dict[str, LanguageModelFiles]):
        self.root, self.total, self.cfg, self.models = root, total_files, cfg, models

    def setup(self):
        self.preprocess = Preprocessor(self.cfg)
        self.scorer = PerplexityScorer(self.models)

    def process(self, path):
        n_ok = n_bad = 0
        tally = self.tally
        for ok, rec in read_file(path, self.root):
            tally[("in", "read")] += 1
            if not ok:
                n_bad += 1
                yield self.rejected(rec)
                continue
            n_ok += 1
            tally[("out", "read")] += 1
            tally[("in", "preprocess")] += 1
            doc, rej = self.preprocess(rec)
            if doc is None:
                yield self.rejected(rej)
                continue
            tally[("out", "preprocess")] += 1
            lang = doc["lang"]
            ppl = self.scorer.perplexity(doc["text"], lang) if lang in self.models else -1.0
            doc["ppl"] = ppl
            if ppl >= 0 and math.isfinite(ppl):
                yield beam.pvalue.TaggedOutput(PPL, (lang, ppl))
            yield doc
        print(f"[data] read {os.path.relpath(path, self.root) if self.root else path}: {n_ok} documents, "
              f"{n_bad} bad records ({self.total} files in the run)", file=sys.stderr, flush=True)


def quality_bucket(doc: dict, cutoffs: dict) -> tuple[str | None, dict | None]:
    """(bucket, None) for a kept document, or (None, drop record) for a low-quality/unscorable one."""
    lang, ppl = doc["lang"], doc["ppl"]
    if ppl < 0:
        return "unscored", None
    if not math.isfinite(ppl):
        return None, drop(doc, SCORE_STEP, "unscorable", detail="no tokens to score")
    cut = cutoffs.get(lang)
    bucket = bucket_for(ppl, cut)
    if bucket == "low":
        return None, drop(doc, SCORE_STEP, "perplexity_low_quality", detail=f"ppl {ppl:.1f} > {cut[1]:.1f} ({lang})")
    return bucket, None


class CurateFn(CountingDoFn):
    """Scored document -> quality bucket -> rule filters -> (id, doc) plus its dedup key record."""

    def __init__(self, filter_cfg: FilterConfig, dedup_cfg: dd.DedupConfig):
        self.filter_cfg, self.dedup_cfg = filter_cfg, dedup_cfg

    def setup(self):
        self.rules = RuleFilter(self.filter_cfg)
        cfg = self.dedup_cfg
        self.minhash = dd.MinHasher(cfg) if cfg.fuzzy == "minhash" else None

    def keys(self, doc: dict) -> tuple:
        cfg = self.dedup_cfg
        url = dd.normalize_url(doc["url"]) if cfg.url else ""
        text = dd.text_key(doc["text"]) if cfg.exact else ""
        sig = None
        if cfg.fuzzy in ("minhash", "simhash"):
            hashes = dd.shingle_hashes(doc["text"], doc["lang"], cfg)
            sig = self.minhash.signature(hashes).tobytes() if self.minhash is not None else dd.simhash(hashes)
        return doc["id"], url, text, sig

    def process(self, doc, cutoffs):
        tally = self.tally
        tally[("in", "score")] += 1
        bucket, rej = quality_bucket(doc, cutoffs)
        if bucket is None:
            yield self.rejected(rej)
            return
        tally[("out", "score")] += 1
        tally[("in", "filter")] += 1
        out, drops = self.rules(dict(doc, quality=bucket))
        for d in drops:
            yield self.rejected(d)
        if out is None:
            return
        tally[("out", "filter")] += 1
        yield out["id"], out
        yield beam.pvalue.TaggedOutput(KEYS, self.keys(out))


def pick_smallest(kv, step: str, reason: str):
    """Key records sharing a key: the smallest id survives, the others become (id, decision) naming it."""
    _, records = kv
    records = sorted(records, key=lambda r: r[KEY_ID])
    yield records[0]
    for r in records[1:]:
        yield beam.pvalue.TaggedOutput(REJECTED, (r[KEY_ID], (step, reason, "", records[0][KEY_ID])))


def bloom_bucket(kv, key_index: int, step: str, reason: str, error_rate: float):
    """One hash bucket of key records: a Bloom filter in id order keeps the first of each key."""
    _, records = kv
    records = sorted(records, key=lambda r: r[KEY_ID])
    bloom = dd.BloomFilter(len(records), error_rate)
    for r in records:
        if bloom.add(r[key_index]):
            yield beam.pvalue.TaggedOutput(REJECTED, (r[KEY_ID], (step, reason, "bloom filter", None)))
        else:
            yield r


def dedup_by_key(keys, name: str, key_index: int, reason: str, cfg: dd.DedupConfig):
    """Global dedup of key records on one exact key; records whose key is '' pass through."""
    with_key, without = keys | f"{name}/split" >> beam.Partition(lambda r, n: 0 if r[key_index] else 1, 2)
    if cfg.key_method == "bloom":
        buckets = cfg.bloom_buckets
        res = (with_key
               | f"{name}/bucket" >> beam.Map(lambda r: (_bucket_of(r[key_index], buckets), r))
               | f"{name}/group" >> beam.GroupByKey()
               | f"{name}/bloom" >> beam.FlatMap(bloom_bucket, key_index, name, reason, cfg.bloom_error_rate)
               .with_outputs(REJECTED, main="kept"))
    elif cfg.key_method == "group":
        res = (with_key | f"{name}/key" >> beam.Map(lambda r: (r[key_index], r))
               | f"{name}/group" >> beam.GroupByKey()
               | f"{name}/pick" >> beam.FlatMap(pick_smallest, name, reason).with_outputs(REJECTED, main="kept"))
    else:
        raise PipelineError(f"dedup.key_method {cfg.key_method!r} must be 'group' or 'bloom'")
    kept = (res.kept, without) | f"{name}/merge" >> beam.Flatten()
    return kept, res[REJECTED]


def _bucket_of(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") % n


def signature_bands(record, cfg: dd.DedupConfig):
    """(band, (id, signature)) for every LSH band of a key record."""
    doc_id, sig = record[KEY_ID], record[KEY_SIG]
    if cfg.fuzzy == "minhash":
        width = cfg.rows_per_band * 4     # bytes per band of uint32 rows
        for i in range(cfg.num_bands):
            yield (i, sig[i * width:(i + 1) * width]), (doc_id, sig)
    else:
        for band in dd.simhash_bands(sig, cfg.simhash_max_hamming):
            yield band, (doc_id, sig)


def verify_band(kv, cfg: dd.DedupConfig):
    members = list(kv[1])
    if cfg.fuzzy == "minhash":
        members = [(i, np.frombuffer(s, dtype=np.uint32)) for i, s in members]
    return dd.verify_bucket(members, cfg.fuzzy, cfg)


def dedup_fuzzy(keys, cfg: dd.DedupConfig):
    """(id, decision) for every non-survivor of a near-duplicate cluster (MinHash-LSH or SimHash bands)."""
    name = "dedup_fuzzy"
    return (keys
            | f"{name}/bands" >> beam.FlatMap(signature_bands, cfg)
            | f"{name}/group" >> beam.GroupByKey()
            | f"{name}/verify" >> beam.FlatMap(verify_band, cfg)
            | f"{name}/edges" >> beam.combiners.ToList()
            | f"{name}/cluster" >> beam.FlatMap(dd.clusters_to_survivors)
            | f"{name}/decide" >> beam.Map(lambda pair: (pair[0], (name, "near_duplicate", "", pair[1]))))


class FinalizeFn(CountingDoFn):
    """(id, {doc, decision}) -> a curated tf.Example, or its `rejected/` line; plus the evaluation samples."""

    def __init__(self, last_step: str | None, sample_fraction: float):
        self.last_step, self.fraction = last_step, sample_fraction

    def process(self, kv):
        _, joined = kv
        decisions = sorted(joined["decision"], key=lambda d: STEP_ORDER.index(d[0]))
        for doc in joined["doc"]:
            if decisions:
                step, reason, detail, survivor = decisions[0]
                yield self.rejected(drop(doc, step, reason, detail=detail, survivor=survivor))
                continue
            if self.last_step:
                self.tally[("out", self.last_step)] += 1
            yield doc_to_example(doc)
            fraction = stable_fraction(doc["id"])
            line = _json(doc)
            if fraction < self.fraction:
                yield beam.pvalue.TaggedOutput(AUTO, line)
            yield beam.pvalue.TaggedOutput(HUMAN, (fraction, line))


# ----- counting -----

def _count(pcoll, label: str, key: tuple):
    return (pcoll | f"count/{label}" >> beam.combiners.Count.Globally()
            | f"count/{label}/key" >> beam.Map(lambda n: (key, n)))


def assemble_stats(entries: list, steps_run: tuple[str, ...] = STEP_ORDER) -> dict:
    """stats.json from (key, count) pairs; a step that saw no documents reports zeros."""
    counts = collections.Counter()
    for key, n in entries:
        counts[tuple(key)] += n
    steps = []
    for name in steps_run:
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
    dcfg = dataclass_from(dd.DedupConfig, cfg.dedup)
    if dcfg.fuzzy not in ("minhash", "simhash", "none"):
        raise PipelineError(f"dedup.fuzzy {dcfg.fuzzy!r} must be minhash, simhash or none")
    if dcfg.key_method not in ("group", "bloom"):
        raise PipelineError(f"dedup.key_method {dcfg.key_method!r} must be 'group' or 'bloom'")
    dedup_steps = tuple(s for s, on in (("dedup_url", dcfg.url), ("dedup_exact", dcfg.exact),
                                        ("dedup_fuzzy", dcfg.fuzzy != "none")) if on)
    steps_run = STEP_ORDER[:4] + dedup_steps

    read = (p | "files" >> beam.Create(files) | "reshuffle_files" >> beam.Reshuffle()
            | "read_score" >> beam.ParDo(ReadScoreFn(root, len(files), dataclass_from(PreprocessConfig, cfg.preprocess),
                                                    models)).with_outputs(REJECTED, COUNTS, PPL, main="docs"))

    fractions = (cfg.score.high_fraction, cfg.score.medium_fraction)
    nq = cfg.score.num_quantiles
    cutoffs = (read[PPL]
               | "score/quantiles" >> beam.transforms.stats.ApproximateQuantiles.PerKey(nq)
               | "score/cutoffs" >> beam.Map(lambda kv: (kv[0], (kv[1][round(fractions[0] * (len(kv[1]) - 1))],
                                                                 kv[1][round(fractions[1] * (len(kv[1]) - 1))]))))
    _ = (cutoffs | "score/cutoffs_list" >> beam.combiners.ToList()
         | "score/write_cutoffs" >> beam.Map(lambda kvs: write_json({k: {"high_max_ppl": v[0], "medium_max_ppl": v[1]}
                                                                     for k, v in sorted(kvs)},
                                                                    os.path.join(out, "ppl_cutoffs.json"))))
    curated = read.docs | "curate" >> beam.ParDo(
        CurateFn(dataclass_from(FilterConfig, cfg.filter), dcfg), beam.pvalue.AsDict(cutoffs)) \
        .with_outputs(REJECTED, COUNTS, KEYS, main="docs")

    stats_parts = [read[COUNTS], curated[COUNTS]]
    decisions = []
    keys = curated[KEYS]
    for name, index, reason in (("dedup_url", KEY_URL, "duplicate_url"), ("dedup_exact", KEY_TEXT, "exact_duplicate")):
        if name in dedup_steps:
            stats_parts.append(_count(keys, f"{name}/in", ("in", name)))
            keys, dropped = dedup_by_key(keys, name, index, reason, dcfg)
            decisions.append(dropped)
            if name != dedup_steps[-1]:
                stats_parts.append(_count(keys, f"{name}/out", ("out", name)))
    if "dedup_fuzzy" in dedup_steps:
        stats_parts.append(_count(keys, "dedup_fuzzy/in", ("in", "dedup_fuzzy")))
        decisions.append(dedup_fuzzy(keys, dcfg))
    decisions = (tuple(decisions) or (p | "no_decisions" >> beam.Create([]),)) | "decisions" >> beam.Flatten()

    final = ({"doc": curated.docs, "decision": decisions}
             | "join" >> beam.CoGroupByKey()
             | "finalize" >> beam.ParDo(FinalizeFn(dedup_steps[-1] if dedup_steps else None,
                                                   float(cfg.eval.sample_fraction)))
             .with_outputs(REJECTED, COUNTS, AUTO, HUMAN, main="examples"))
    stats_parts.append(final[COUNTS])

    _ = final.examples | "write/curated" >> beam.io.WriteToTFRecord(
        os.path.join(out, "data", "curated"), file_name_suffix=".tfrecord", num_shards=int(cfg.output.num_shards))
    _ = ((read[REJECTED], curated[REJECTED], final[REJECTED]) | "rejected/all" >> beam.Flatten()
         | "rejected/write" >> beam.io.WriteToText(os.path.join(out, "rejected", "rejected"), file_name_suffix=".jsonl",
                                                   num_shards=int(cfg.output.rejected_shards)))
    _ = final[AUTO] | "eval/auto_write" >> beam.io.WriteToText(os.path.join(out, "eval", "auto_sample"),
                                                               file_name_suffix=".jsonl", num_shards=1)
    _ = (final[HUMAN] | "eval/human_sample" >> beam.combiners.Top.Smallest(int(cfg.eval.human_samples))
         | "eval/human_flat" >> beam.FlatMap(lambda pairs: [line for _, line in pairs])
         | "eval/human_write" >> beam.io.WriteToText(os.path.join(out, "eval", "human_sample"),
                                                     file_name_suffix=".jsonl", num_shards=1))
    _ = (tuple(stats_parts) | "stats/all" >> beam.Flatten() | "stats/sum" >> beam.CombinePerKey(sum)
         | "stats/list" >> beam.combiners.ToList()
         | "stats/write" >> beam.Map(lambda entries: write_json(assemble_stats(entries, steps_run),
                                                                os.path.join(out, "stats.json"))))


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
    if os.environ.get("ZT"): print(f"ZT t0 {t0:.2f}", file=sys.stderr)
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
