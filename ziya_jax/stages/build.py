"""Resolve the stages config, prepare TFDS sources, build packed caches, open a stage's mixture."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ziya_jax.stages.cache import CacheError, PackedCache, write_cache
from ziya_jax.stages.mixture import DeterministicMixture, Source
from ziya_jax.stages.packing import pack_bins, pack_stream

ENV = {"tfds_data_dir": "ZIYA_TFDS_DIR", "vocab": "ZIYA_VOCAB", "cache_dir": "ZIYA_CACHE_DIR"}


class StageError(ValueError):
    pass


def setting(cfg, key: str) -> str:
    value = cfg[key] or os.environ.get(ENV[key], "")
    if not value:
        raise StageError(f"no {key}: set --config.{key}=PATH or the environment variable {ENV[key]}")
    return value


def register_tasks(cfg):
    """Register the SeqIO tasks for this config; checks the vocabulary file first."""
    vocab = setting(cfg, "vocab")
    if not Path(vocab).is_file():
        raise StageError(f"vocabulary {vocab} not found; build one with `python -m ziya_jax tokenizer extend`")
    from tasks import ziya2
    return ziya2.register(setting(cfg, "tfds_data_dir"), vocab, cfg)


def mask_documents_for(task: str, cfg) -> bool:
    stage = "stage1" if task.startswith("ziya2_stage1") else ("stage2" if "stage2" in task else "stage3")
    return bool(cfg.mask_documents[stage])


def build_task_cache(task: str, cfg, overwrite: bool = False, use_cached: bool = False) -> dict:
    """Tokenize (through SeqIO), shuffle with the seed, pack and write `cache_dir/task`."""
    import seqio

    from tasks.ziya2 import TASKS
    vocab = register_tasks(cfg)
    length = int(cfg.sequence_length)
    if use_cached:
        if not cfg.seqio_cache_dir or not (Path(cfg.seqio_cache_dir) / task / "COMPLETED").is_file():
            raise StageError(f"no finished seqio cache of {task} in --config.seqio_cache_dir={cfg.seqio_cache_dir!r}; "
                             "run seqio_cache_tasks first (README: Training stages)")
        seqio.add_global_cache_dirs([cfg.seqio_cache_dir])
    ds = seqio.get_mixture_or_task(task).get_dataset(
        sequence_length=None, split="train", shuffle=True, seed=int(cfg.seed), num_epochs=1,
        shuffle_buffer_size=int(cfg.shuffle_buffer), use_cached=use_cached)
    stats: dict = {}
    if TASKS[task][1] == "stream":
        rows = pack_stream((ex["targets"] for ex in ds.as_numpy_iterator()), length)
    else:
        rows = pack_bins(((ex["task"], ex["targets"]) for ex in ds.as_numpy_iterator()), length, stats, by_task=True)
    meta = {"task": task, "packing": TASKS[task][1], "mask_documents": mask_documents_for(task, cfg),
            "seed": int(cfg.seed), "vocabulary": os.path.abspath(setting(cfg, "vocab")),
            "vocab_size": int(vocab.vocab_size)}
    out = write_cache(Path(setting(cfg, "cache_dir")) / task, rows, length, meta, overwrite)
    out["truncated_examples"] = stats.get("truncated", 0)
    return out


def stage_mixture(stage: int, cfg, global_batch: int, host_index: int = 0, host_count: int = 1,
                  model_vocab_size: int | None = None) -> DeterministicMixture:
    """The stage's deterministic mixture over its packed caches (built by `tasks cache`)."""
    from ziya_jax.stages.rates import stage_token_rates
    root = Path(setting(cfg, "cache_dir"))
    sources = []
    for task, rate in stage_token_rates(stage, cfg).items():
        if rate <= 0:
            continue
        try:
            cache = PackedCache(root / task)
        except CacheError as e:
            raise StageError(f"stage {stage} needs {task}: {e}") from None
        if model_vocab_size is not None and cache.meta["vocab_size"] > model_vocab_size:
            raise StageError(f"{root / task} was tokenized with {cache.meta['vocab_size']} pieces "
                             f"({cache.meta['vocabulary']}) but the model has vocab_size {model_vocab_size}; "
                             "extend the checkpoint with tools.convert.extend_vocab or use the model's tokenizer")
        if cache.length != int(cfg.sequence_length):
            raise StageError(f"{root / task} holds rows of {cache.length} tokens, config says {cfg.sequence_length}; "
                             "rebuild it with `tasks cache --overwrite`")
        sources.append(Source(task, cache, rate))
    return DeterministicMixture(sources, global_batch, int(cfg.seed), host_index, host_count)


def token_shares(mixture: DeterministicMixture, steps: range) -> dict[str, float]:
    """Measured share of loss-bearing (non-padding) tokens per source over `steps`."""
    counts = np.zeros(len(mixture.sources))
    for step in steps:
        b = mixture.host_batch(step)
        for s in range(len(mixture.sources)):
            counts[s] += b["segment_ids"][b["source"] == s].astype(bool).sum()
    return {src.name: float(c / counts.sum()) for src, c in zip(mixture.sources, counts)}
