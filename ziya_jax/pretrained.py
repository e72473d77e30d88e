"""The user-facing model API: load a ziya-jax checkpoint and call it.

    model = ziya_jax.load_pretrained("path/to/ckpt")
    logits = model(input_ids)          # int32 [B, T] -> float32 [B, T, vocab]
    out = model.generate(prompt_ids, max_new_tokens=32)
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ziya_jax.model.config import ModelConfig
from ziya_jax.model.generate import GenerateOutput, generate
from ziya_jax.model.llama import Llama, abstract_params
from ziya_jax.params_io import (CONFIG_FILE, PARAMS_DIR, atomic_directory, check_params_match, flatten_params,
                                load_model_config, load_params, param_shapes, save_params)


@dataclasses.dataclass
class PretrainedModel:
    config: ModelConfig
    params: Any

    @functools.cached_property
    def _forward(self):
        module = Llama(self.config)
        return jax.jit(lambda p, tokens, positions, segments: module.apply({"params": p}, tokens, positions, segments))

    def __call__(self, input_ids, positions=None, segment_ids=None) -> jax.Array:
        """int32 [B, T] -> float32 logits [B, T, vocab]."""
        tokens = jnp.asarray(input_ids, jnp.int32)
        if tokens.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {tokens.shape}")
        if int(jnp.max(tokens)) >= self.config.vocab_size or int(jnp.min(tokens)) < 0:
            raise ValueError(f"input_ids must lie in [0, {self.config.vocab_size})")
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        return self._forward(self.params, tokens, jnp.asarray(positions, jnp.int32),
                             jnp.asarray(segment_ids, jnp.int32))

    def generate(self, prompt_ids, prompt_mask=None, *, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0) -> GenerateOutput:
        return generate(self.config, self.params, jnp.asarray(prompt_ids, jnp.int32),
                        None if prompt_mask is None else jnp.asarray(prompt_mask),
                        max_new_tokens=max_new_tokens, rng=jax.random.PRNGKey(seed),
                        temperature=temperature, top_p=top_p)


def expected_shapes(cfg: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    return {path: tuple(s.shape) for path, s in flatten_params(abstract_params(cfg)).items()}


def load_pretrained(path: str | Path, *, dtype: str | None = None, attention_impl: str | None = None,
                    scan_layers: bool | None = None) -> PretrainedModel:
    """Load config + params of a ziya-jax checkpoint (as written by tools.convert.hf_to_orbax).

    `dtype` overrides the compute dtype (e.g. "float32" for exact comparisons); parameters keep
    the stored dtype. Layer layout (scanned or not) follows the checkpoint.
    """
    cfg = load_model_config(path)
    changes = {k: v for k, v in {"dtype": dtype, "attention_impl": attention_impl}.items() if v is not None}
    cfg = cfg.replace(**changes)
    if scan_layers is not None and scan_layers != cfg.scan_layers:
        raise ValueError(f"{path} stores {'scanned' if cfg.scan_layers else 'unscanned'} layers; "
                         "convert it again with the other layout")
    check_params_match(cfg, param_shapes(path), expected_shapes(cfg), str(path))
    params = jax.tree_util.tree_map(jnp.asarray, load_params(path))
    return PretrainedModel(cfg, params)


def save_pretrained(path: str | Path, cfg: ModelConfig, params: Any, overwrite: bool = False) -> None:
    """Write `params` (a Flax params tree) and `cfg` as a ziya-jax checkpoint, atomically."""
    host = jax.tree_util.tree_map(np.asarray, params)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_params(tmp / PARAMS_DIR, host)
        cfg.save_json(tmp / CONFIG_FILE)
