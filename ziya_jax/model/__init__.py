"""The Flax LLaMA2 model family."""
from ziya_jax.model.config import ConfigError, ModelConfig
from ziya_jax.model.llama import Llama

__all__ = ["ConfigError", "Llama", "ModelConfig"]
