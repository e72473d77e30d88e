"""Ziya2's fp32 RoPE against a float64 reference, and why bf16 RoPE is not good enough."""
import jax.numpy as jnp
import numpy as np

from ziya_jax.model.rope import apply_rope, apply_rope_low_precision


def _reference(x: np.ndarray, positions: np.ndarray, theta: float) -> np.ndarray:
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = positions.astype(np.float64)[..., None] * inv
    cos, sin = np.cos(ang)[:, :, None, :], np.sin(ang)[:, :, None, :]
    x1, x2 = x[..., : d // 2].astype(np.float64), x[..., d // 2:].astype(np.float64)
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def test_fp32_rope_is_exact_near_4096_and_bf16_is_not():
    rng = np.random.RandomState(0)
    x = rng.randn(1, 16, 4, 128).astype(np.float32)
    positions = np.arange(4080, 4096, dtype=np.int32)[None]
    ref = _reference(x, positions, 10000.0)
    ours = np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(positions), max_len=4096, theta=10000.0))
    low = np.asarray(apply_rope_low_precision(jnp.asarray(x), jnp.asarray(positions), theta=10000.0)
                     ).astype(np.float64)
    err_ours = np.abs(ours - ref).max()
    err_bf16 = np.abs(low - ref).max()
    assert err_ours <= 1e-6, err_ours
    assert err_bf16 > 1e-2, err_bf16           # measurably worse: about 4 orders of magnitude
    assert err_bf16 > 1000 * err_ours


def test_rope_keeps_dtype_and_matches_at_position_zero():
    x = jnp.ones((2, 3, 2, 8), jnp.bfloat16)
    out = apply_rope(x, jnp.zeros((2, 3), jnp.int32), max_len=16, theta=10000.0)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.ones((2, 3, 2, 8)))
