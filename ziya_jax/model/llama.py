"""Flax (linen) LLaMA2 decoder with Ziya2's precision policy and logical axis names.

Parameters and key activations carry logical axis names only (``embed``, ``heads``, ...);
``ziya_jax.parallel`` maps them onto a device mesh. The model never names a mesh axis.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from ziya_jax.model.attention import dot_product_attention
from ziya_jax.model.config import ModelConfig
from ziya_jax.model.rope import apply_rope
from ziya_jax.precision import PrecisionPolicy, matmul_fp32_accumulate

BATCH, LENGTH, EMBED = "activation_batch", "activation_length", "activation_embed"


def _policy(cfg: ModelConfig) -> PrecisionPolicy:
    return PrecisionPolicy.from_names(cfg.param_dtype, cfg.dtype)


def _init(cfg: ModelConfig, names: tuple[str, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev=cfg.initializer_range), names)


class RMSNorm(nn.Module):
    """RMSNorm whose statistics and scale multiply run in float32."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        policy = _policy(self.cfg)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                           (x.shape[-1],), policy.param_dtype)
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + self.cfg.rms_norm_eps)
        return (y * scale.astype(jnp.float32)).astype(policy.compute_dtype)


class Dense(nn.Module):
    """Linear map contracting x's last `contract` dims; the kernel has its true N-d shape.

    (Flax's DenseGeneral initialises a flattened 2-D kernel, which does not carry N-d logical
    axis names through a mesh.) Inputs and kernel are cast to the compute dtype.
    """

    cfg: ModelConfig
    features: tuple[int, ...]
    axes: tuple[str, ...]
    contract: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        policy = _policy(self.cfg)
        shape = tuple(x.shape[x.ndim - self.contract:]) + tuple(self.features)
        kernel = self.param("kernel", _init(self.cfg, self.axes), shape, policy.param_dtype)
        dims = (tuple(range(x.ndim - self.contract, x.ndim)), tuple(range(self.contract)))
        return jax.lax.dot_general(policy.cast_compute(x), policy.cast_compute(kernel), (dims, ((), ())))


class Attention(nn.Module):
    """Multi-head / grouped-query self-attention with RoPE, packing masks and a KV cache."""

    cfg: ModelConfig
    decode: bool = False

    def _proj(self, x, heads: int, names: tuple[str, ...], name: str) -> jax.Array:
        return Dense(self.cfg, (heads, self.cfg.head_dim), names, name=name)(x)

    @nn.compact
    def __call__(self, x, positions, segment_ids) -> jax.Array:
        cfg = self.cfg
        q = self._proj(x, cfg.num_heads, ("embed", "heads", "head_dim"), "query")
        k = self._proj(x, cfg.num_kv_heads, ("embed", "kv_heads", "head_dim"), "key")
        v = self._proj(x, cfg.num_kv_heads, ("embed", "kv_heads", "head_dim"), "value")
        q = nn.with_logical_constraint(q, (BATCH, LENGTH, "activation_heads", "activation_kv"))
        k = nn.with_logical_constraint(k, (BATCH, LENGTH, "activation_kv_heads", "activation_kv"))
        v = nn.with_logical_constraint(v, (BATCH, LENGTH, "activation_kv_heads", "activation_kv"))
        q = apply_rope(q, positions, max_len=cfg.max_seq_len, theta=cfg.rope_theta)
        k = apply_rope(k, positions, max_len=cfg.max_seq_len, theta=cfg.rope_theta)
        q, k, v = (checkpoint_name(q, "query_proj"), checkpoint_name(k, "key_proj"),
                   checkpoint_name(v, "value_proj"))

        t = x.shape[1]
        index = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], segment_ids.shape)
        q_index, kv_index, kv_segment = index, index, segment_ids
        if self.decode:
            k, v, q_index, kv_index, kv_segment = self._update_cache(k, v, segment_ids)
        out = dot_product_attention(q, k, v, q_index=q_index, kv_index=kv_index, q_segment=segment_ids,
                                    kv_segment=kv_segment, impl=cfg.attention_impl, decoding=self.decode)
        out = nn.with_logical_constraint(out, (BATCH, LENGTH, "activation_heads", "activation_kv"))
        out = Dense(cfg, (cfg.hidden_size,), ("heads", "head_dim", "embed"), contract=2, name="out")(out)
        return checkpoint_name(out, "out_proj")

    def _update_cache(self, k, v, segment_ids):
        """Write this call's keys/values at the cache index; return the whole cache to attend to.

        The cache length is fixed by the input length of the `init` call that created it.
        """
        initialized = self.has_variable("cache", "cached_key")
        ck = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
        cv = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        cs = self.variable("cache", "cached_segment", jnp.zeros, segment_ids.shape, jnp.int32)
        ci = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        b, t = segment_ids.shape
        if not initialized:  # shape-only pass that creates the cache
            index = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
            return k, v, index, index, segment_ids
        start = ci.value
        ck.value = jax.lax.dynamic_update_slice(ck.value, k.astype(ck.value.dtype), (0, start, 0, 0))
        cv.value = jax.lax.dynamic_update_slice(cv.value, v.astype(cv.value.dtype), (0, start, 0, 0))
        cs.value = jax.lax.dynamic_update_slice(cs.value, segment_ids.astype(jnp.int32), (0, start))
        ci.value = start + t
        s = ck.value.shape[1]
        q_index = jnp.broadcast_to(start + jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        kv_index = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32)[None], (b, s))
        return ck.value, cv.value, q_index, kv_index, cs.value


class MLP(nn.Module):
    """SwiGLU feed-forward block."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        gate = Dense(cfg, (cfg.intermediate_size,), ("embed", "mlp"), name="wi_gate")(x)
        up = Dense(cfg, (cfg.intermediate_size,), ("embed", "mlp"), name="wi_up")(x)
        h = nn.silu(gate) * up
        h = nn.with_logical_constraint(h, (BATCH, LENGTH, "activation_mlp"))
        h = checkpoint_name(h, "mlp_hidden")
        return Dense(cfg, (cfg.hidden_size,), ("mlp", "embed"), name="wo")(h)


class DecoderLayer(nn.Module):
    cfg: ModelConfig
    decode: bool = False

    @nn.compact
    def __call__(self, x, positions, segment_ids):
        x = nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED))
        h = Attention(self.cfg, self.decode, name="attn")(RMSNorm(self.cfg, name="pre_attn_norm")(x),
                                                          positions, segment_ids)
        x = x + h
        x = x + MLP(self.cfg, name="mlp")(RMSNorm(self.cfg, name="pre_mlp_norm")(x))
        x = nn.with_logical_constraint(x, (BATCH, LENGTH, EMBED))
        return x, None


REMAT_POLICIES: dict[str, Any] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "qkv_proj": jax.checkpoint_policies.save_only_these_names("query_proj", "key_proj", "value_proj"),
    "qkv_out_proj": jax.checkpoint_policies.save_only_these_names(
        "query_proj", "key_proj", "value_proj", "out_proj"),
    "minimal": jax.checkpoint_policies.save_only_these_names(
        "query_proj", "key_proj", "value_proj", "out_proj", "mlp_hidden"),
}


class Llama(nn.Module):
    """LLaMA2 decoder: int32 tokens [B, T] -> float32 logits [B, T, vocab].

    `positions` (default 0..T-1) and `segment_ids` (default all ones; 0 marks padding) support
    packed sequences: tokens attend causally and only within their own segment. With
    ``decode=True`` the model keeps a KV cache in the "cache" collection (see generate.py).
    """

    cfg: ModelConfig
    decode: bool = False

    @nn.compact
    def __call__(self, tokens, positions=None, segment_ids=None, logits_at=None) -> jax.Array:
        """Logits [B, T, vocab]; with `logits_at` (int [B, P] token indices) only there: [B, P, vocab]."""
        cfg, policy = self.cfg, _policy(self.cfg)
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=policy.compute_dtype,
                         param_dtype=policy.param_dtype, embedding_init=_init(cfg, ("vocab", "embed")),
                         name="embed")
        x = embed(tokens)

        layer = DecoderLayer
        if cfg.remat_policy != "none":
            layer = nn.remat(layer, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            stack = nn.scan(layer, variable_axes={"params": 0, "cache": 0}, split_rngs={"params": True},
                            in_axes=(nn.broadcast, nn.broadcast), length=cfg.num_layers,
                            metadata_params={nn.PARTITION_NAME: "layers"})
            x, _ = stack(cfg, self.decode, name="layers")(x, positions, segment_ids)
        else:
            for i in range(cfg.num_layers):
                x, _ = layer(cfg, self.decode, name=f"layers_{i}")(x, positions, segment_ids)

        if logits_at is not None:       # e.g. scoring: the LM head only where the logits are read
            x = jnp.take_along_axis(x, logits_at[..., None].astype(jnp.int32), axis=1)
        x = RMSNorm(cfg, name="final_norm")(x)
        kernel = self.param("lm_head", _init(cfg, ("embed", "vocab")), (cfg.hidden_size, cfg.vocab_size),
                            policy.param_dtype)
        logits = matmul_fp32_accumulate("btd,dv->btv", x, kernel.astype(policy.compute_dtype))
        return nn.with_logical_constraint(logits, (BATCH, LENGTH, "activation_vocab"))


def _dummy_tokens(batch: int = 1, length: int = 1) -> jax.Array:
    return jnp.zeros((batch, length), jnp.int32)


def init_params(cfg: ModelConfig, rng: jax.Array) -> dict[str, Any]:
    """Randomly initialised parameters (plain arrays, logical metadata removed)."""
    return nn.unbox(Llama(cfg).init(rng, _dummy_tokens())["params"])


def abstract_params(cfg: ModelConfig) -> dict[str, Any]:
    """Parameter tree of `jax.ShapeDtypeStruct`s, without allocating anything."""
    boxed = jax.eval_shape(lambda: Llama(cfg).init(jax.random.PRNGKey(0), _dummy_tokens())["params"])
    return nn.unbox(boxed)


def logical_axes(cfg: ModelConfig) -> dict[str, Any]:
    """Parameter tree of logical axis-name tuples (PartitionSpecs of logical names)."""
    boxed = jax.eval_shape(lambda: Llama(cfg).init(jax.random.PRNGKey(0), _dummy_tokens())["params"])
    return nn.get_partition_spec(boxed)
