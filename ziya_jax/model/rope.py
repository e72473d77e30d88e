"""Rotary position embeddings in the Hugging Face rotate-half layout, computed in float32.

The sin/cos table is computed in float64 on the host and stored as float32, so every entry is
the correctly rounded value: forming the angle `position * inv_freq` in float32 alone would
lose ~2e-4 rad at position 4,096, and in bfloat16 (as the Ziya v1 Megatron code did by casting
the cached cos/sin to the activation dtype) ~1e-2. The rotation itself runs in float32.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=16)
def rope_table(max_len: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 (cos, sin) of shape [max_len, head_dim // 2], computed in float64."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.arange(max_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, *, max_len: int, theta: float) -> jax.Array:
    """Rotate `x` [batch, length, heads, head_dim] by integer `positions` [batch, length].

    Computation is float32; the result has x's dtype. Positions must lie in [0, max_len).
    """
    head_dim = x.shape[-1]
    cos_t, sin_t = rope_table(max_len, head_dim, float(theta))
    cos = jnp.take(jnp.asarray(cos_t), positions, axis=0, mode="clip")[:, :, None, :]
    sin = jnp.take(jnp.asarray(sin_t), positions, axis=0, mode="clip")[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., : head_dim // 2], xf[..., head_dim // 2:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def apply_rope_low_precision(x: jax.Array, positions: jax.Array, *, theta: float,
                             dtype=jnp.bfloat16) -> jax.Array:
    """The precision Ziya2 moved away from: angles, sin/cos and rotation in `dtype`.

    Kept only to measure the error it causes (tests, docs); the model never calls it.
    """
    head_dim = x.shape[-1]
    inv_freq = (1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    cos = jnp.cos(angles).astype(dtype)[:, :, None, :]
    sin = jnp.sin(angles).astype(dtype)[:, :, None, :]
    xl = x.astype(dtype)
    x1, x2 = xl[..., : head_dim // 2], xl[..., head_dim // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
