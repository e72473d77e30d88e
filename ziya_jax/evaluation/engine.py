"""Batched scoring and generation for evaluation, on the same mesh code as training.

Params are placed by the logical-axis rules (`ziya_jax.parallel`), batches are split over
(data, fsdp). Sequences are padded to a few length buckets and batches to a fixed size, so a
benchmark compiles a handful of programs.
- `loglikelihood(requests)`: sum of log p(continuation | context) and whether it is the greedy
  continuation, per (context ids, continuation ids) request (lm-evaluation-harness semantics).
- `choice_logprobs(contexts, candidates)`: log p of each single-token candidate after each
  context, from one forward per context (multiple-choice letters).
- `generate(prompts, max_new_tokens, stop)`: greedy decoding with a KV cache, in chunks, with
  stop strings checked between chunks (a row stops when its text contains a stop string).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ziya_jax.evaluation.prompts import truncate_at_stops
from ziya_jax.model.config import ModelConfig
from ziya_jax.model.generate import decode_apply, init_cache
from ziya_jax.model.llama import Llama, logical_axes
from ziya_jax.parallel import LOGICAL_AXIS_RULES, logical_to_sharding, make_mesh


def bucket(n: int, minimum: int = 64) -> int:
    """Padded length for n tokens: a power of two up to 256, then a multiple of 128 (few compiles,
    at most 1/3 padding)."""
    if n <= 256:
        return max(minimum, 1 << max(0, math.ceil(math.log2(max(n, 1)))))
    return int(math.ceil(n / 128) * 128)


class EvalEngine:
    def __init__(self, cfg: ModelConfig, params: Any, *, batch_size: int = 8, mesh: Mesh | None = None,
                 max_length: int | None = None):
        self.cfg = cfg
        self.mesh = mesh or make_mesh({"fsdp": -1})
        batch_axes = nn.logical_to_mesh_axes(("activation_batch",), LOGICAL_AXIS_RULES)[0]
        shards = math.prod(self.mesh.shape[a] for a in (batch_axes if isinstance(batch_axes, tuple) else (batch_axes,)))
        self.batch_size = int(math.ceil(batch_size / shards) * shards)
        self.max_length = min(max_length or cfg.max_seq_len, cfg.max_seq_len)
        self.params = jax.device_put(params, logical_to_sharding(logical_axes(cfg), self.mesh))
        self._rows = NamedSharding(self.mesh, nn.logical_to_mesh_axes(("activation_batch", "activation_length"),
                                                                       LOGICAL_AXIS_RULES))
        self._vec = NamedSharding(self.mesh, nn.logical_to_mesh_axes(("activation_batch",), LOGICAL_AXIS_RULES))
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self.generated_tokens = 0

    # ------------------------------------------------------------------ scoring
    def _logits(self, params, tokens, segments, logits_at=None):
        with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
            return Llama(self.cfg).apply({"params": params}, tokens, None, segments, logits_at)

    @functools.cached_property
    def _score_targets(self):
        """Per-position log p(target) and whether the target is the argmax."""
        def score(params, tokens, segments, targets):
            logits = self._logits(params, tokens, segments).astype(jnp.float32)
            target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
            logp = target_logit - jax.nn.logsumexp(logits, axis=-1)
            return logp, jnp.argmax(logits, axis=-1) == targets
        return jax.jit(score, out_shardings=self._replicated)

    @functools.cached_property
    def _score_choices(self):
        """log p of K candidate tokens at one query position per row (softmax only there)."""
        def score(params, tokens, segments, query_pos, candidates):
            at_query = self._logits(params, tokens, segments, query_pos[:, None])[:, 0].astype(jnp.float32)
            logp = jax.nn.log_softmax(at_query, axis=-1)
            return jnp.take_along_axis(logp, candidates, axis=-1)
        return jax.jit(score, out_shardings=self._replicated)

    def _pack_rows(self, rows: list[list[int]]):
        length = bucket(max(len(r) for r in rows))
        b = self.batch_size
        tokens = np.full((b, length), self.cfg.pad_token_id, np.int32)
        segments = np.zeros((b, length), np.int32)
        targets = np.zeros((b, length), np.int32)
        for i, r in enumerate(rows):
            tokens[i, :len(r)] = r
            segments[i, :len(r)] = 1
            targets[i, :len(r) - 1] = r[1:]
        return (jax.device_put(tokens, self._rows), jax.device_put(segments, self._rows),
                jax.device_put(targets, self._rows))

    def _vector(self, values: np.ndarray) -> jax.Array:
        padded = np.zeros((self.batch_size,) + values.shape[1:], np.int32)
        padded[:len(values)] = values
        return jax.device_put(padded, self._vec)

    def _fit(self, ctx: Sequence[int], cont: Sequence[int]) -> list[int]:
        whole = list(ctx) + list(cont)
        if len(cont) > self.max_length:
            raise ValueError(f"continuation of {len(cont)} tokens exceeds max length {self.max_length}")
        return whole[-self.max_length:]   # keep the end, as lm-evaluation-harness does

    def loglikelihood(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                      progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]:
        rows = [self._fit(c, k) for c, k in requests]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = [rows[i] for i in idx]
            tokens, segments, targets = self._pack_rows(batch)
            logp, greedy = (np.asarray(o)[:len(idx)] for o in self._score_targets(self.params, tokens, segments,
                                                                                   targets))
            for j, i in enumerate(idx):
                n_cont, n = len(requests[i][1]), len(rows[i])
                span = slice(n - 1 - n_cont, n - 1)   # positions that predict the continuation
                results[i] = (float(logp[j, span].sum()), bool(greedy[j, span].all()))
            if progress:
                progress(len(idx))
        return results

    def choice_logprobs(self, contexts: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]],
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        """[N, K] log p(candidate token | context); one forward per context."""
        cands = np.asarray(candidates, np.int32)
        rows = [list(c)[-self.max_length:] for c in contexts]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out = np.zeros(cands.shape, np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = [rows[i] for i in idx]
            tokens, segments, _ = self._pack_rows(batch)
            cand_logp = self._score_choices(self.params, tokens, segments,
                                            self._vector(np.asarray([len(r) - 1 for r in batch], np.int32)),
                                            self._vector(cands[idx]))
            out[idx] = np.asarray(cand_logp)[:len(idx)]
            if progress:
                progress(len(idx))
        return out

    # ------------------------------------------------------------------ generation
    @functools.cached_property
    def _prefill(self):
        cfg = self.cfg

        def prefill(params, prompt, mask, total_len):
            b, t = prompt.shape
            positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
            cache = init_cache(cfg, b, total_len)
            with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
                logits, cache = decode_apply(cfg, params, cache, prompt, positions, mask)
            return cache, logits[:, -1].astype(jnp.float32), positions[:, -1] + 1

        return jax.jit(prefill, static_argnums=(3,))

    @functools.cached_property
    def _decode_chunk(self):
        cfg = self.cfg

        def chunk(params, cache, last_logits, pos, done, steps):
            b = pos.shape[0]

            def step(carry, _):
                cache, last_logits, pos, done = carry
                token = jnp.argmax(last_logits, axis=-1).astype(jnp.int32)
                token = jnp.where(done, cfg.pad_token_id, token)
                done = done | (token == cfg.eos_token_id)
                with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
                    logits, cache = decode_apply(cfg, params, cache, token[:, None], pos[:, None],
                                                 jnp.ones((b, 1), jnp.int32))
                return (cache, logits[:, -1].astype(jnp.float32), pos + 1, done), token

            (cache, last_logits, pos, done), tokens = jax.lax.scan(step, (cache, last_logits, pos, done), None,
                                                                   length=steps)
            return cache, last_logits, pos, done, tokens.T

        return jax.jit(chunk, static_argnums=(5,), donate_argnums=(1,))

    def generate(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, decode: Callable[[list[int]], str],
                 stop: Sequence[str] = (), chunk: int = 32,
                 progress: Callable[[int], None] | None = None) -> list[str]:
        """Greedy completions (text, cut before the first stop string) for token-id prompts."""
        results: list[str] = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        limit = self.max_length - max_new_tokens
        if limit <= 0:
            raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room in max length {self.max_length}")
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = [list(prompts[i])[-limit:] for i in idx]
            t = min(bucket(max(len(p) for p in batch)), limit)
            b = self.batch_size
            prompt = np.full((b, t), self.cfg.pad_token_id, np.int32)
            mask = np.zeros((b, t), np.int32)
            for j, p in enumerate(batch):           # left padding
                prompt[j, t - len(p):] = p
                mask[j, t - len(p):] = 1
            mask[len(batch):, -1] = 1               # padding rows: one dummy token
            steps_total = int(math.ceil(max_new_tokens / chunk) * chunk)
            cache, last, pos = self._prefill(self.params, jax.device_put(prompt, self._rows),
                                             jax.device_put(mask, self._rows), t + steps_total)
            finished = np.zeros((b,), bool)
            finished[len(batch):] = True            # padding rows
            generated = [[] for _ in range(b)]
            texts = [""] * len(batch)
            produced = 0
            while produced < max_new_tokens and not finished.all():
                cache, last, pos, done_dev, toks = self._decode_chunk(self.params, cache, last, pos,
                                                                      jax.device_put(finished, self._vec), chunk)
                toks, done_host = np.asarray(toks), np.asarray(done_dev)
                produced += chunk
                for j in range(len(batch)):
                    if finished[j]:
                        continue
                    row = toks[j].tolist()
                    if self.cfg.eos_token_id in row:
                        row = row[:row.index(self.cfg.eos_token_id)]
                    generated[j].extend(row)
                    self.generated_tokens += len(row) + (1 if done_host[j] else 0)
                    full = decode(generated[j][:max_new_tokens])
                    texts[j] = truncate_at_stops(full, stop)
                    if len(texts[j]) < len(full) or done_host[j] or len(generated[j]) >= max_new_tokens:
                        finished[j] = True
            for j, i in enumerate(idx):
                results[i] = texts[j]
            if progress:
                progress(len(idx))
        return results
