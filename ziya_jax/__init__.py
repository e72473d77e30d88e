"""ziya-jax: Ziya2 (continual pre-training of LLaMA2) in JAX.

    import ziya_jax
    model = ziya_jax.load_pretrained("path/to/ckpt")
    logits = model(input_ids)     # int32 [B, T] -> float32 [B, T, vocab]

The model API is imported on first use, so tools that need no JAX (the data factory's Beam
workers, the converters' readers) start without importing it.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {"ModelConfig": "ziya_jax.model.config", "PretrainedModel": "ziya_jax.pretrained",
         "load_pretrained": "ziya_jax.pretrained", "save_pretrained": "ziya_jax.pretrained"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ziya_jax' has no attribute {name!r}")
