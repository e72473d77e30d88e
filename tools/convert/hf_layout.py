"""How Hugging Face LLaMA tensors map onto ziya-jax parameters, both ways.

HF stores linear weights as [out, in]; ours are [in, ...out] with heads split out, e.g.
q_proj [H*hd, D] <-> attn/query/kernel [D, H, hd]. Both use the rotate-half RoPE layout, so no
q/k permutation is needed. With scanned layers every per-layer leaf gains a leading layer axis.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ziya_jax.model.config import ConfigError, ModelConfig
from ziya_jax.streaming import transpose_2d

Path_ = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TensorRule:
    hf_name: str                                        # may contain {i} for the layer index
    path: Path_                                         # our path, relative to the layer for per-layer rules
    ours_shape: Callable[[ModelConfig], tuple[int, ...]]
    to_ours: Callable[[np.ndarray, ModelConfig], np.ndarray]
    to_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.hf_name

    def hf_shape(self, cfg: ModelConfig) -> tuple[int, ...]:
        return _HF_SHAPE[self.to_hf](self.ours_shape(cfg))


def _identity(x, cfg):
    return x


def _t(x, cfg):
    return transpose_2d(x, x.dtype)


def _split_heads(heads: Callable[[ModelConfig], int]):
    return lambda x, cfg: _t(x, cfg).reshape(cfg.hidden_size, heads(cfg), cfg.head_dim)


def _merge_heads(x, cfg):
    return _t(x.reshape(cfg.hidden_size, -1), cfg)


def _o_to_ours(x, cfg):
    return _t(x, cfg).reshape(cfg.num_heads, cfg.head_dim, cfg.hidden_size)


def _o_to_hf(x, cfg):
    return _t(x.reshape(cfg.num_heads * cfg.head_dim, cfg.hidden_size), cfg)


_HF_SHAPE = {  # our shape -> HF shape, for each to_hf transform
    _identity: lambda s: s,
    _t: lambda s: (s[1], s[0]),
    _merge_heads: lambda s: (s[1] * s[2], s[0]),
    _o_to_hf: lambda s: (s[2], s[0] * s[1]),
}

_H = lambda c: c.num_heads  # noqa: E731
_KV = lambda c: c.num_kv_heads  # noqa: E731

RULES: tuple[TensorRule, ...] = (
    TensorRule("model.embed_tokens.weight", ("embed", "embedding"),
               lambda c: (c.vocab_size, c.hidden_size), _identity, _identity),
    TensorRule("model.layers.{i}.self_attn.q_proj.weight", ("attn", "query", "kernel"),
               lambda c: (c.hidden_size, c.num_heads, c.head_dim), _split_heads(_H), _merge_heads),
    TensorRule("model.layers.{i}.self_attn.k_proj.weight", ("attn", "key", "kernel"),
               lambda c: (c.hidden_size, c.num_kv_heads, c.head_dim), _split_heads(_KV), _merge_heads),
    TensorRule("model.layers.{i}.self_attn.v_proj.weight", ("attn", "value", "kernel"),
               lambda c: (c.hidden_size, c.num_kv_heads, c.head_dim), _split_heads(_KV), _merge_heads),
    TensorRule("model.layers.{i}.self_attn.o_proj.weight", ("attn", "out", "kernel"),
               lambda c: (c.num_heads, c.head_dim, c.hidden_size), _o_to_ours, _o_to_hf),
    TensorRule("model.layers.{i}.mlp.gate_proj.weight", ("mlp", "wi_gate", "kernel"),
               lambda c: (c.hidden_size, c.intermediate_size), _t, _t),
    TensorRule("model.layers.{i}.mlp.up_proj.weight", ("mlp", "wi_up", "kernel"),
               lambda c: (c.hidden_size, c.intermediate_size), _t, _t),
    TensorRule("model.layers.{i}.mlp.down_proj.weight", ("mlp", "wo", "kernel"),
               lambda c: (c.intermediate_size, c.hidden_size), _t, _t),
    TensorRule("model.layers.{i}.input_layernorm.weight", ("pre_attn_norm", "scale"),
               lambda c: (c.hidden_size,), _identity, _identity),
    TensorRule("model.layers.{i}.post_attention_layernorm.weight", ("pre_mlp_norm", "scale"),
               lambda c: (c.hidden_size,), _identity, _identity),
    TensorRule("model.norm.weight", ("final_norm", "scale"), lambda c: (c.hidden_size,), _identity, _identity),
    TensorRule("lm_head.weight", ("lm_head",), lambda c: (c.hidden_size, c.vocab_size), _t, _t),
)
# HF tensors that carry no weights (buffers some versions save); ignored on import.
IGNORED_HF = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One parameter leaf of ours and the HF tensors it is made of (several when scanned)."""

    path: Path_
    shape: tuple[int, ...]
    rule: TensorRule
    hf_names: tuple[str, ...]
    stacked: bool


def leaves(cfg: ModelConfig) -> list[Leaf]:
    """Our parameter leaves in HF order (layer by layer when unscanned)."""
    out: list[Leaf] = []
    per_layer = [r for r in RULES if r.per_layer]
    out.append(_global_leaf(RULES[0], cfg))
    if cfg.scan_layers:
        for r in per_layer:
            names = tuple(r.hf_name.format(i=i) for i in range(cfg.num_layers))
            out.append(Leaf(("layers",) + r.path, (cfg.num_layers,) + r.ours_shape(cfg), r, names, True))
    else:
        for i in range(cfg.num_layers):
            for r in per_layer:
                out.append(Leaf((f"layers_{i}",) + r.path, r.ours_shape(cfg), r, (r.hf_name.format(i=i),), False))
    out += [_global_leaf(r, cfg) for r in RULES[1:] if not r.per_layer]
    return out


def _global_leaf(rule: TensorRule, cfg: ModelConfig) -> Leaf:
    return Leaf(rule.path, rule.ours_shape(cfg), rule, (rule.hf_name,), False)


def hf_tensor_names(cfg: ModelConfig) -> list[str]:
    return [n for leaf in leaves(cfg) for n in leaf.hf_names]


# ----------------------------------------------------------------------------------------- config

_SUPPORTED_ACTS = ("silu", "swish")


def config_from_hf(hf: dict[str, Any], source: str, **overrides: Any) -> ModelConfig:
    """Build our ModelConfig from an HF LLaMA config.json dict; refuse what we cannot represent."""
    def need(key: str) -> Any:
        if key not in hf:
            raise ConfigError(f"{source}: missing required key {key!r}; is this a LLaMA config.json?")
        return hf[key]

    model_type = hf.get("model_type", "llama")
    if model_type not in ("llama",):
        raise ConfigError(f"{source}: model_type {model_type!r} is not supported; only LLaMA checkpoints convert")
    if hf.get("rope_scaling") not in (None, {}) and (hf["rope_scaling"] or {}).get("rope_type", "default") != "default":
        raise ConfigError(f"{source}: rope_scaling={hf['rope_scaling']} is not supported; use an unscaled model")
    if hf.get("hidden_act", "silu") not in _SUPPORTED_ACTS:
        raise ConfigError(f"{source}: hidden_act={hf['hidden_act']!r} is not supported (LLaMA uses silu)")
    for flag in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
        if hf.get(flag):
            raise ConfigError(f"{source}: {flag}=true is not supported; LLaMA2/Ziya2 use {flag}=false")
    rope_theta = hf.get("rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    values = dict(
        vocab_size=int(need("vocab_size")), hidden_size=int(need("hidden_size")),
        intermediate_size=int(need("intermediate_size")), num_layers=int(need("num_hidden_layers")),
        num_heads=int(need("num_attention_heads")),
        num_kv_heads=int(hf.get("num_key_value_heads") or hf["num_attention_heads"]),
        head_dim=int(hf.get("head_dim") or 0), max_seq_len=int(hf.get("max_position_embeddings", 4096)),
        rope_theta=float(rope_theta), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        initializer_range=float(hf.get("initializer_range", 0.02)),
        bos_token_id=_int_or(hf.get("bos_token_id"), 1), eos_token_id=_int_or(hf.get("eos_token_id"), 2),
        pad_token_id=_int_or(hf.get("pad_token_id"), 0),
    )
    values.update(overrides)
    return ModelConfig(**values)


def _int_or(value: Any, default: int) -> int:
    if isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else int(value)


def config_to_hf(cfg: ModelConfig, torch_dtype: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """An HF LlamaConfig dict for `cfg`, keeping unrelated keys of the original config if given."""
    hf = dict(base or {})
    hf.pop("rope_parameters", None)
    hf.update({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim, "max_position_embeddings": cfg.max_seq_len, "rope_theta": cfg.rope_theta,
        "rope_scaling": None, "rms_norm_eps": cfg.rms_norm_eps, "initializer_range": cfg.initializer_range,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
        "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
        "torch_dtype": torch_dtype,
    })
    return hf


def read_hf_config(hf_dir: Path) -> dict[str, Any]:
    path = hf_dir / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; --hf-dir must contain config.json") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e}); fix or re-download config.json") from None
