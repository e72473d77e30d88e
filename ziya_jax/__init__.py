"""ziya-jax: Ziya2 (continual pre-training of LLaMA2) in JAX.

    import ziya_jax
    model = ziya_jax.load_pretrained("path/to/ckpt")
    logits = model(input_ids)     # int32 [B, T] -> float32 [B, T, vocab]
"""
__version__ = "0.1.0"

from ziya_jax.model.config import ModelConfig  # noqa: E402
from ziya_jax.pretrained import PretrainedModel, load_pretrained, save_pretrained  # noqa: E402

__all__ = ["ModelConfig", "PretrainedModel", "load_pretrained", "save_pretrained"]
