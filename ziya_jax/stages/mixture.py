"""Deterministic, resumable mixtures of packed sources (learned from Pax's SeqIOInput and Grain).

The global batch at step N is a pure function of (seed, N):
- Per step, source s gets q_s(N) = floor(r_s*G*(N+1)) - floor(r_s*G*N) of the G rows (the source
  with the largest rate takes the remainder), so after N steps it has supplied floor(r_s*G*N)
  rows: exact long-run shares, and a position computable without replaying anything.
- r_s are row rates derived from token rates: token_rate_s / tokens_per_row_s, normalised.
- Source s's j-th row is row perm(seed, s, epoch)[j mod rows_s] with epoch = j // rows_s.
- The G rows are shuffled by a permutation seeded with (seed, N); host h of H takes rows
  [h*G/H, (h+1)*G/H) and reads only those from disk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ziya_jax.stages.cache import PackedCache
from ziya_jax.stages.packing import features


class MixtureError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    name: str
    cache: PackedCache
    token_rate: float


class DeterministicMixture:
    def __init__(self, sources: list[Source], global_batch: int, seed: int = 0, host_index: int = 0,
                 host_count: int = 1):
        if not sources:
            raise MixtureError("a mixture needs at least one source")
        if global_batch % host_count:
            raise MixtureError(f"global batch {global_batch} is not divisible by {host_count} hosts")
        if not 0 <= host_index < host_count:
            raise MixtureError(f"host index {host_index} outside [0, {host_count})")
        lengths = {s.cache.length for s in sources}
        if len(lengths) != 1:
            raise MixtureError(f"sources have different sequence lengths {sorted(lengths)}; rebuild their caches alike")
        vocabs = {s.cache.meta.get("vocabulary") for s in sources}
        if len(vocabs) != 1:
            raise MixtureError(f"sources were tokenized with different vocabularies {sorted(map(str, vocabs))}")
        for s in sources:
            if s.token_rate < 0 or not math.isfinite(s.token_rate):
                raise MixtureError(f"source {s.name}: rate {s.token_rate} must be >= 0")
        self.sources = [s for s in sources if s.token_rate > 0]
        self.length = lengths.pop()
        self.global_batch, self.seed = global_batch, seed
        self.host_index, self.host_count = host_index, host_count
        w = np.array([s.token_rate / s.cache.meta["tokens_per_row"] for s in self.sources], np.float64)
        self.row_rates = w / w.sum()
        self.remainder = int(np.argmax(self.row_rates))
        per_step = np.ceil(self.row_rates * global_batch)
        per_step[self.remainder] = 0
        if per_step.sum() > global_batch:
            raise MixtureError(f"global batch {global_batch} is too small for {len(self.sources)} sources at these rates")

    def rows_before(self, step: int) -> np.ndarray:
        """Rows each source supplied in steps [0, step)."""
        g = self.global_batch
        counts = np.floor(self.row_rates * g * step + 1e-9).astype(np.int64)
        counts[self.remainder] = g * step - (counts.sum() - counts[self.remainder])
        return counts

    @lru_cache(maxsize=16)
    def _perm(self, source: int, epoch: int) -> np.ndarray:
        rows = self.sources[source].cache.rows
        return np.random.default_rng([self.seed, source, epoch]).permutation(rows)

    def global_plan(self, step: int) -> list[tuple[int, int]]:
        """(source, row) for each of the G rows of step `step`, in batch order."""
        start, end = self.rows_before(step), self.rows_before(step + 1)
        plan = []
        for s, (a, b) in enumerate(zip(start, end)):
            rows = self.sources[s].cache.rows
            for j in range(int(a), int(b)):
                plan.append((s, int(self._perm(s, j // rows)[j % rows])))
        order = np.random.default_rng([self.seed, 1 << 20, step]).permutation(len(plan))
        return [plan[i] for i in order]

    def host_batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's rows of step `step` as model features, plus `source` (index into self.sources)."""
        per_host = self.global_batch // self.host_count
        plan = self.global_plan(step)[self.host_index * per_host:(self.host_index + 1) * per_host]
        out = {k: np.zeros((per_host, self.length), np.float32 if k == "loss_weights" else np.int32)
               for k in ("input_tokens", "target_tokens", "loss_weights", "segment_ids", "positions")}
        source_ids = np.array([s for s, _ in plan], np.int32)
        for s in np.unique(source_ids):
            slots = np.flatnonzero(source_ids == s)
            cache = self.sources[s].cache
            tok, seg = cache.read(np.array([plan[i][1] for i in slots]))
            feats = features(tok, seg, cache.mask_documents)
            for k, v in feats.items():
                out[k][slots] = v
        out["source"] = source_ids
        return out

    def iterate(self, start_step: int = 0):
        step = start_step
        while True:
            yield step, self.host_batch(step)
            step += 1
