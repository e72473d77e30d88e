"""Autoregressive decoding with a KV cache: greedy, temperature and nucleus (top-p) sampling.

Prompts are left-padded ([B, T] with a 0/1 mask): padding gets segment id 0 so real tokens
never attend to it, and positions count real tokens only, so a left-padded row decodes
exactly as it would alone.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ziya_jax.model.config import ModelConfig
from ziya_jax.model.llama import Llama


class GenerateOutput(NamedTuple):
    tokens: jax.Array    # int32 [B, max_new_tokens]; after EOS, filled with pad_token_id
    lengths: jax.Array   # int32 [B]: generated tokens up to and including EOS


def init_cache(cfg: ModelConfig, batch: int, length: int) -> Any:
    """A zero KV cache for `batch` rows of up to `length` tokens."""
    shapes = jax.eval_shape(lambda: Llama(cfg, decode=True).init(
        jax.random.PRNGKey(0), jnp.zeros((batch, length), jnp.int32))["cache"])
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def decode_apply(cfg: ModelConfig, params, cache, tokens, positions, segment_ids):
    """Run `tokens` through the model, appending them to `cache`; returns (logits, cache)."""
    logits, mutated = Llama(cfg, decode=True).apply({"params": params, "cache": cache}, tokens, positions,
                                                    segment_ids, mutable=["cache"])
    return logits, mutated["cache"]


def sample_logits(logits: jax.Array, rng: jax.Array, temperature: float, top_p: float) -> jax.Array:
    """Greedy when temperature == 0; otherwise temperature sampling restricted to the top-p mass."""
    logits = logits.astype(jnp.float32)
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each candidate
        cutoff_index = jnp.sum(before < top_p, axis=-1, keepdims=True) - 1
        threshold = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "temperature", "top_p"))
def generate(cfg: ModelConfig, params, prompt: jax.Array, prompt_mask: jax.Array | None = None, *,
             max_new_tokens: int, rng: jax.Array | None = None, temperature: float = 0.0,
             top_p: float = 1.0) -> GenerateOutput:
    """Generate `max_new_tokens` after left-padded `prompt` [B, T]; stops a row at EOS."""
    b, t = prompt.shape
    if t + max_new_tokens > cfg.max_seq_len:
        raise ValueError(f"prompt length {t} + max_new_tokens {max_new_tokens} exceeds the model's "
                         f"max_seq_len {cfg.max_seq_len}")
    mask = jnp.ones((b, t), jnp.int32) if prompt_mask is None else prompt_mask.astype(jnp.int32)
    rng = jax.random.PRNGKey(0) if rng is None else rng
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    cache = init_cache(cfg, b, t + max_new_tokens)
    logits, cache = decode_apply(cfg, params, cache, prompt.astype(jnp.int32), positions, mask)
    next_pos = positions[:, -1] + 1

    def step(carry, key):
        cache, last_logits, pos, done = carry
        token = sample_logits(last_logits, key, temperature, top_p)
        token = jnp.where(done, cfg.pad_token_id, token)
        new_done = done | (token == cfg.eos_token_id)
        logits, cache = decode_apply(cfg, params, cache, token[:, None], pos[:, None],
                                     jnp.ones((b, 1), jnp.int32))
        return (cache, logits[:, -1], pos + 1, new_done), (token, ~done)

    keys = jax.random.split(rng, max_new_tokens)
    _, (tokens, live) = jax.lax.scan(step, (cache, logits[:, -1], next_pos, jnp.zeros((b,), bool)), keys)
    return GenerateOutput(tokens.T, live.T.sum(axis=1).astype(jnp.int32))
