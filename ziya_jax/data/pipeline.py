"""The data factory as one Apache Beam graph: read -> preprocess -> score -> filter -> dedup -> write.

Work is per input file, and whole documents never pass through the runner's shuffle:
  1. `read_score`: one DoFn per input file reads, preprocesses and scores every document and spills
     them to one file under `<out>.partial/spill/` (the runner only sees the file's name).
  2. The perplexity cutoffs (percentiles of this corpus, a side input) are the one global barrier
     before `curate`: per spilled file, bucketing, the rule filters, and the dedup keys and signatures
     of the survivors, which are spilled again.
  3. Dedup runs on small key records (id, URL key, text key, signature, input file index), never on
     documents: URL groups, then exact groups, then MinHash/SimHash bands (packed per shuffle bucket),
     each stage seeing only the survivors of the one before (the paper's order). Its decisions are
     grouped by input file, and `finalize` applies them while reading that file once more.
Spill files are written through Beam's FileSystems (local disk, GCS, ...) and deleted after the run.
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
import io
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
from apache_beam.io.filesystems import FileSystems
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
UNKEYED = "unkeyed"
KEYED = "keyed"
AUTO = "auto_sample"
HUMAN = "human_sample"
STEP_ORDER = ("read", "preprocess", "score", "filter", "dedup_url", "dedup_exact", "dedup_fuzzy")
SPILL = "spill"     # scored/curated documents between stages, one JSON Lines file per input file
# a dedup key record: (doc id, normalised URL, text key, MinHash signature bytes or SimHash int, input file index)
KEY_ID, KEY_URL, KEY_TEXT, KEY_SIG, KEY_FILE = range(5)


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


def spill_path(out: str, kind: str, file_index: int) -> str:
    """The spill file of one input file (by its index in the run's sorted file list) for one stage
    ('scored' or 'curated')."""
    return os.path.join(out, SPILL, kind, f"{file_index:07d}.jsonl")


class SpillWriter:
    """Documents handed to the next stage through the filesystem, streamed in blocks (a retried bundle
    rewrites the same file from the start)."""

    BLOCK = 512

    def __init__(self, path: str):
        self.fh = FileSystems.create(path)
        self.lines: list[str] = []

    def write(self, doc: dict) -> None:
        self.lines.append(_json(doc))
        if len(self.lines) >= self.BLOCK:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.fh.write(("\n".join(self.lines) + "\n").encode("utf-8"))
            self.lines = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()
        self.fh.close()


def read_spill(path: str):
    with FileSystems.open(path) as fh:
        for line in io.TextIOWrapper(fh, encoding="utf-8"):
            yield json.loads(line)


# ----- DoFns -----

class CountingDoFn(beam.DoFn):
    """A DoFn that tallies (kind, step[, reason]) per bundle and emits the tallies to COUNTS at its end."""

    def start_bundle(self):
        self.tally: collections.Counter = collections.Counter()

    def finish_bundle(self):
        for key, n in self.tally.items():
            yield beam.pvalue.TaggedOutput(COUNTS, WindowedValue((key, n), MIN_TIMESTAMP, [GlobalWindow()]))

    def rejected(self, record: dict):
        """Count a dropped document (or a removed fragment) and return its `rejected/` line."""
        kind = "drop" if record["level"] == "document" else "fragment"
        self.tally[(kind, record["step"], record["reason"])] += 1
        return beam.pvalue.TaggedOutput(REJECTED, _json(record))


class ReadScoreFn(CountingDoFn):
    """One input file -> its documents, preprocessed and scored (perplexity; -1 where no model), spilled
    to one file for `curate`; emits the input's index (the large data never passes through the runner)."""

    def __init__(self, root: str, total_files: int, cfg: PreprocessConfig, models: dict[str, LanguageModelFiles],
                 out: str):
        self.root, self.total, self.cfg, self.models, self.out = root, total_files, cfg, models, out

    def setup(self):
        self.preprocess = Preprocessor(self.cfg)
        self.scorer = PerplexityScorer(self.models)

    def process(self, item):
        index, path = item
        with SpillWriter(spill_path(self.out, "scored", index)) as spill:
            yield from self.read_and_score(path, spill)
        yield index

    def read_and_score(self, path: str, spill: SpillWriter):
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
            spill.write(doc)
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
    """One input's scored documents -> quality bucket -> rule filters; survivors are spilled again for
    `finalize`, and each yields its dedup key record."""

    def __init__(self, filter_cfg: FilterConfig, dedup_cfg: dd.DedupConfig, out: str):
        self.filter_cfg, self.dedup_cfg, self.out = filter_cfg, dedup_cfg, out

    def setup(self):
        self.rules = RuleFilter(self.filter_cfg)
        cfg = self.dedup_cfg
        self.minhash = dd.MinHasher(cfg) if cfg.fuzzy == "minhash" else None

    def keys(self, doc: dict, index: int) -> tuple:
        cfg = self.dedup_cfg
        url = dd.normalize_url(doc["url"]) if cfg.url else ""
        text = dd.text_key(doc["text"]) if cfg.exact else ""
        sig = None
        if cfg.fuzzy in ("minhash", "simhash"):
            hashes = dd.shingle_hashes(doc["text"], doc["lang"], cfg)
            sig = self.minhash.signature(hashes).tobytes() if self.minhash is not None else dd.simhash(hashes)
        return doc["id"], url, text, sig, index

    def process(self, index, cutoffs):
        with SpillWriter(spill_path(self.out, "curated", index)) as spill:
            for doc in read_spill(spill_path(self.out, "scored", index)):
                yield from self.curate(doc, cutoffs, index, spill)
        yield index

    def curate(self, doc, cutoffs, index: int, spill: SpillWriter):
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
        spill.write(out)
        yield beam.pvalue.TaggedOutput(KEYS, self.keys(out, index))


def pick_smallest(kv, step: str, reason: str):
    """Key records sharing a key: the smallest id survives, the others become (id, decision) naming it."""
    _, records = kv
    records = sorted(records, key=lambda r: r[KEY_ID])
    yield records[0]
    for r in records[1:]:
        yield beam.pvalue.TaggedOutput(REJECTED, (r[KEY_FILE], (r[KEY_ID], step, reason, "", records[0][KEY_ID])))


def bloom_bucket(kv, key_index: int, step: str, reason: str, error_rate: float):
    """One hash bucket of key records: a Bloom filter in id order keeps the first of each key."""
    _, records = kv
    records = sorted(records, key=lambda r: r[KEY_ID])
    bloom = dd.BloomFilter(len(records), error_rate)
    for r in records:
        if bloom.add(r[key_index]):
            yield beam.pvalue.TaggedOutput(REJECTED, (r[KEY_FILE], (r[KEY_ID], step, reason, "bloom filter", None)))
        else:
            yield r


class KeySplitFn(CountingDoFn):
    """Counts the key records entering a dedup step; keyed ones go to the grouping ((key or its Bloom
    bucket, record)), those without the key (no URL) pass the step untouched."""

    def __init__(self, step: str, key_index: int, bloom_buckets: int | None):
        self.step, self.key_index, self.bloom_buckets = step, key_index, bloom_buckets

    def process(self, record):
        self.tally[("in", self.step)] += 1
        key = record[self.key_index]
        if not key:
            yield beam.pvalue.TaggedOutput(UNKEYED, record)
        else:
            group = _bucket_of(key, self.bloom_buckets) if self.bloom_buckets else key
            yield beam.pvalue.TaggedOutput(KEYED, (group, record))


def dedup_by_key(keys, name: str, key_index: int, reason: str, cfg: dd.DedupConfig):
    """Global dedup of key records on one exact key; records whose key is '' pass through.
    Returns (surviving key records, decisions, counts)."""
    split = keys | f"{name}/split" >> beam.ParDo(KeySplitFn(
        name, key_index, cfg.bloom_buckets if cfg.key_method == "bloom" else None)).with_outputs(
        KEYED, UNKEYED, COUNTS, main="none")     # all tagged: Beam infers no KV type for a mixed main output
    grouped = split[KEYED] | f"{name}/group" >> beam.GroupByKey()
    if cfg.key_method == "bloom":       # build() has checked the method's name
        res = grouped | f"{name}/bloom" >> beam.FlatMap(bloom_bucket, key_index, name, reason, cfg.bloom_error_rate) \
            .with_outputs(REJECTED, main="kept")
    else:
        res = grouped | f"{name}/pick" >> beam.FlatMap(pick_smallest, name, reason).with_outputs(REJECTED, main="kept")
    kept = (res.kept, split[UNKEYED]) | f"{name}/merge" >> beam.Flatten()
    return kept, res[REJECTED], split[COUNTS]


def _bucket_of(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") % n


def band_bucket(band: tuple[int, bytes | int], buckets: int) -> int:
    """Shuffle bucket of an LSH band (index, rows): MinHash rows and SimHash slices are already hashes."""
    index, value = band
    x = int.from_bytes(value[:8], "little") if isinstance(value, bytes) else value
    return ((x ^ (index * 0x9E3779B97F4A7C15)) * 0xBF58476D1CE4E5B9 >> 21) % buckets


class BandBucketsFn(CountingDoFn):
    """Key records -> (bucket, packed entries): every LSH band of every document, packed per shuffle
    bucket within a bundle into four flat fields (ids, file indices, band indices, signatures), so the
    shuffle moves a few large byte records instead of one small record per band and document."""

    MAX_BUFFERED = 100_000       # band entries held before a flush (bounds worker memory)

    def __init__(self, cfg: dd.DedupConfig):
        self.cfg = cfg

    def setup(self):
        self.minhash = dd.MinHasher(self.cfg) if self.cfg.fuzzy == "minhash" else None

    def start_bundle(self):
        super().start_bundle()
        self.buffer: dict[int, list] = collections.defaultdict(list)
        self.buffered = 0

    def bands(self, sig) -> list:
        if self.minhash is not None:
            return self.minhash.bands(sig)
        return dd.simhash_bands(sig, self.cfg.simhash_max_hamming)

    def flush(self):
        out = []
        for bucket, entries in self.buffer.items():
            ids, files, bands, sigs = zip(*entries)
            packed_sigs = b"".join(sigs) if self.minhash is not None else np.array(sigs, dtype=np.uint64).tobytes()
            out.append((bucket, ("\x00".join(ids), np.array(files, dtype=np.int64).tobytes(), bytes(bands),
                                 packed_sigs)))
        self.buffer, self.buffered = collections.defaultdict(list), 0
        return out

    def process(self, record):
        self.tally[("in", "dedup_fuzzy")] += 1
        doc_id, sig, file_index = record[KEY_ID], record[KEY_SIG], record[KEY_FILE]
        n = self.cfg.lsh_shuffle_buckets
        for band in self.bands(sig):
            self.buffer[band_bucket(band, n)].append((doc_id, file_index, band[0], sig))
            self.buffered += 1
        if self.buffered >= self.MAX_BUFFERED:
            yield from self.flush()

    def finish_bundle(self):
        yield from super().finish_bundle()
        for kv in self.flush():
            yield WindowedValue(kv, MIN_TIMESTAMP, [GlobalWindow()])


def unpack_bands(packed_list, cfg: dd.DedupConfig):
    """The entries of one shuffle bucket: (member ids [(doc id, file index)], band keys, signatures)."""
    ids, files, bands, sigs = [], [], [], []
    for id_text, file_bytes, band_bytes, sig_bytes in packed_list:
        ids.extend(id_text.split("\x00"))
        files.append(np.frombuffer(file_bytes, dtype=np.int64))
        bands.append(np.frombuffer(band_bytes, dtype=np.uint8))
        sigs.append(sig_bytes)
    files, bands = np.concatenate(files), np.concatenate(bands)
    members = list(zip(ids, files.tolist()))
    if cfg.fuzzy == "minhash":
        r = cfg.rows_per_band
        sig = np.frombuffer(b"".join(sigs), dtype=np.uint32).reshape(len(ids), cfg.num_bands * r)
        rows = np.take_along_axis(sig, bands[:, None].astype(np.int64) * r + np.arange(r), axis=1).tobytes()
        w = 4 * r
        keys = [(b, rows[j * w:(j + 1) * w]) for j, b in enumerate(bands.tolist())]
    else:
        sig = np.frombuffer(b"".join(sigs), dtype=np.uint64)
        keys = [dd.simhash_bands(int(v), cfg.simhash_max_hamming)[b] for v, b in zip(sig.tolist(), bands.tolist())]
    return members, keys, sig


class VerifyBandsFn(beam.DoFn):
    """One shuffle bucket: documents sharing a band are candidates, verified against the band's first
    id. A pair met again in another band of the same bundle is neither verified nor emitted twice."""

    MAX_REMEMBERED = 2_000_000

    def __init__(self, cfg: dd.DedupConfig):
        self.cfg = cfg

    def start_bundle(self):
        self.seen: set = set()

    def process(self, kv):
        cfg = self.cfg
        members, keys, sig = unpack_bands(kv[1], cfg)
        by_band: dict = collections.defaultdict(list)
        for j, key in enumerate(keys):
            by_band[key].append(j)
        if len(self.seen) > self.MAX_REMEMBERED:
            self.seen.clear()
        for rows in by_band.values():
            if len(rows) < 2:              # most bands hold one document: nothing to compare
                continue
            rows.sort(key=lambda j: members[j])
            first = members[rows[0]]
            fresh = [j for j in rows[1:] if members[j] != first and (first, members[j]) not in self.seen]
            if not fresh:
                continue
            self.seen.update((first, members[j]) for j in fresh)
            value = (lambda j: sig[j]) if cfg.fuzzy == "minhash" else (lambda j: int(sig[j]))
            yield from dd.verify_bucket([(members[j], value(j)) for j in [rows[0]] + fresh], cfg.fuzzy, cfg)


def dedup_fuzzy(keys, cfg: dd.DedupConfig):
    """(file index, decision) for every non-survivor of a near-duplicate cluster (MinHash-LSH or SimHash
    bands); returns (decisions, counts)."""
    name = "dedup_fuzzy"
    bands = keys | f"{name}/bands" >> beam.ParDo(BandBucketsFn(cfg)).with_outputs(COUNTS, main="packed")
    return (bands.packed
            | f"{name}/group" >> beam.GroupByKey()
            | f"{name}/verify" >> beam.ParDo(VerifyBandsFn(cfg))
            | f"{name}/edges" >> beam.combiners.ToList()
            | f"{name}/cluster" >> beam.FlatMap(dd.clusters_to_survivors)
            | f"{name}/decide" >> beam.Map(lambda pair: (pair[0][1], (pair[0][0], name, "near_duplicate", "",
                                                                     pair[1][0])))), bands[COUNTS]


class FinalizeFn(CountingDoFn):
    """(input file index, its dedup decisions) -> the curated spill's tf.Examples and `rejected/` lines for the
    duplicates; plus the evaluation samples."""

    def __init__(self, last_step: str | None, sample_fraction: float, out: str):
        self.last_step, self.fraction, self.out = last_step, sample_fraction, out

    def process(self, kv):
        index, joined = kv
        decisions: dict[str, tuple] = {}
        for doc_id, *decision in sorted(joined["decision"], key=lambda d: STEP_ORDER.index(d[1])):
            decisions.setdefault(doc_id, tuple(decision))
        for doc in read_spill(spill_path(self.out, "curated", index)):
            decision = decisions.get(doc["id"])
            if decision is not None:
                step, reason, detail, survivor = decision
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

def assemble_stats(entries: list, steps_run: tuple[str, ...] = STEP_ORDER) -> dict:
    """stats.json from (key, count) pairs; a step that saw no documents reports zeros. A dedup step's
    output is what the next dedup step counted coming in (the last one's is counted by `finalize`)."""
    counts = collections.Counter()
    for key, n in entries:
        counts[tuple(key)] += n
    for name, following in zip(steps_run, steps_run[1:]):
        if name.startswith("dedup_"):
            counts[("out", name)] = counts[("in", following)]
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

    read = (p | "files" >> beam.Create(list(enumerate(files))) | "reshuffle_files" >> beam.Reshuffle()
            | "read_score" >> beam.ParDo(ReadScoreFn(root, len(files), dataclass_from(PreprocessConfig, cfg.preprocess),
                                                    models, out)).with_outputs(REJECTED, COUNTS, PPL, main="files"))

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
    curated = read.files | "curate" >> beam.ParDo(
        CurateFn(dataclass_from(FilterConfig, cfg.filter), dcfg, out), beam.pvalue.AsDict(cutoffs)) \
        .with_outputs(REJECTED, COUNTS, KEYS, main="files")

    stats_parts = [read[COUNTS], curated[COUNTS]]
    decisions = []
    keys = curated[KEYS]
    for name, index, reason in (("dedup_url", KEY_URL, "duplicate_url"), ("dedup_exact", KEY_TEXT, "exact_duplicate")):
        if name in dedup_steps:
            keys, dropped, counts = dedup_by_key(keys, name, index, reason, dcfg)
            decisions.append(dropped)
            stats_parts.append(counts)
    if "dedup_fuzzy" in dedup_steps:
        dropped, counts = dedup_fuzzy(keys, dcfg)
        decisions.append(dropped)
        stats_parts.append(counts)
    decisions = (tuple(decisions) or (p | "no_decisions" >> beam.Create([]),)) | "decisions" >> beam.Flatten()

    final = ({"file": curated.files | "file_keys" >> beam.Map(lambda f: (f, None)), "decision": decisions}
             | "join" >> beam.CoGroupByKey()
             | "finalize" >> beam.ParDo(FinalizeFn(dedup_steps[-1] if dedup_steps else None,
                                                   float(cfg.eval.sample_fraction), out))
             .with_outputs(REJECTED, COUNTS, AUTO, HUMAN, main="examples"))
    stats_parts.append(final[COUNTS])

    _ = final.examples | "write/curated" >> beam.io.WriteToTFRecord(
        os.path.join(out, "data", "curated"), file_name_suffix=".tfrecord", num_shards=int(cfg.output.num_shards))
    for label, rejected in (("read_score", read[REJECTED]), ("curate", curated[REJECTED]), ("dedup", final[REJECTED])):
        # one sink per producing stage: written where they are produced, never buffered by the runner
        _ = rejected | f"rejected/{label}/write" >> beam.io.WriteToText(
            os.path.join(out, "rejected", label), file_name_suffix=".jsonl", num_shards=int(cfg.output.rejected_shards))
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
    for sub in ("data", "rejected", "eval", f"{SPILL}/scored", f"{SPILL}/curated"):
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
    shutil.rmtree(os.path.join(tmp, SPILL), ignore_errors=True)
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
