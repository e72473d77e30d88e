"""ziya-jax: Ziya2 (continual pre-training of LLaMA2) in JAX."""
__version__ = "0.1.0"
