"""Ziya2's precision policy, in one place.

Master parameters are float32 and matrix multiplies run in the compute dtype (bfloat16 by
default). The numerically fragile pieces run in float32 whatever the compute dtype is
(Ziya2 paper, sections 4.2-4.3):

* RMSNorm statistics (mean of squares, rsqrt) and the scale multiply;
* RoPE: sin/cos tables computed in float64 on the host, stored float32, rotation in float32;
* attention logits (float32 accumulation), the mask and the softmax;
* the final logits and the loss.

Modules call the helpers below instead of choosing dtypes themselves.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

FP32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class PrecisionPolicy:
    param_dtype: jnp.dtype = jnp.float32
    compute_dtype: jnp.dtype = jnp.bfloat16

    @classmethod
    def from_names(cls, param_dtype: str, compute_dtype: str) -> "PrecisionPolicy":
        return cls(jnp.dtype(param_dtype), jnp.dtype(compute_dtype))

    def cast_compute(self, x: jax.Array) -> jax.Array:
        return x.astype(self.compute_dtype)


def matmul_fp32_accumulate(equation: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """einsum in the inputs' dtype with float32 accumulation and a float32 result."""
    return jnp.einsum(equation, a, b, preferred_element_type=FP32)
