"""Dot-product attention behind one interface, with implementations chosen by config.

* ``xla``: the reference; any backend. Logits accumulate in float32, mask and softmax in float32.
* ``cudnn``: ``jax.nn.dot_product_attention(implementation="cudnn")`` (flash attention on GPU).
* ``splash``: the Pallas splash-attention kernel on TPU.

``auto`` picks by platform (gpu: cudnn, tpu: splash, otherwise xla). A kernel that cannot run
here (wrong platform, unsupported shape, KV-cache decoding) falls back to ``xla`` with a
warning that says why. All implementations take the same masking inputs: token indices (for
causality) and segment ids (packed documents attend only within their segment).
"""
from __future__ import annotations

import functools
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from ziya_jax.precision import matmul_fp32_accumulate

log = logging.getLogger(__name__)
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
_PLATFORM_DEFAULT = {"gpu": "cudnn", "cuda": "cudnn", "rocm": "cudnn", "tpu": "splash"}
_KERNEL_PLATFORM = {"cudnn": ("gpu", "cuda", "rocm"), "splash": ("tpu",)}


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


_warned: set[str] = set()


def splash_interpret_mode() -> bool:
    """ZIYA_PALLAS_INTERPRET=1 runs the splash kernel in Pallas interpret mode (CPU tests)."""
    return os.environ.get("ZIYA_PALLAS_INTERPRET", "") == "1"


def resolve_impl(requested: str, platform: str | None = None) -> str:
    """Map a configured implementation to the one that can run on `platform`."""
    platform = platform or jax.default_backend()
    if requested == "auto":
        return _PLATFORM_DEFAULT.get(platform, "xla")
    if requested == "xla":
        return "xla"
    if requested not in _KERNEL_PLATFORM:
        raise ValueError(f"unknown attention implementation {requested!r}; use auto, xla, cudnn or splash")
    if platform in _KERNEL_PLATFORM[requested] or (requested == "splash" and splash_interpret_mode()):
        return requested
    _warn_once(f"attention_impl={requested!r} needs a {'/'.join(_KERNEL_PLATFORM[requested])} device "
               f"but the platform is {platform!r}; falling back to the XLA reference attention")
    return "xla"


def attention_mask(q_index, kv_index, q_segment, kv_segment) -> jax.Array:
    """Boolean [batch, 1, q_len, kv_len]: causal by token index and same segment."""
    causal = kv_index[:, None, :] <= q_index[:, :, None]
    same = q_segment[:, :, None] == kv_segment[:, None, :]
    return (causal & same)[:, None, :, :]


def xla_attention(q, k, v, mask) -> jax.Array:
    """q [B,T,H,D], k/v [B,S,K,D] (H a multiple of K), mask [B,1,T,S] -> [B,T,H,D]."""
    b, t, h, d = q.shape
    kvh = k.shape[2]
    q = q.reshape(b, t, kvh, h // kvh, d)
    logits = matmul_fp32_accumulate("btkgd,bskd->bkgts", q, k) * (1.0 / math.sqrt(d))
    logits = jnp.where(mask[:, :, None, :, :], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    out = matmul_fp32_accumulate("bkgts,bskd->btkgd", probs.astype(v.dtype), v)
    return out.reshape(b, t, h, d).astype(q.dtype)


def cudnn_attention(q, k, v, mask) -> jax.Array:
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=1.0 / math.sqrt(q.shape[-1]),
                                        implementation="cudnn")


@functools.lru_cache(maxsize=32)
def _splash_kernel(seq_len: int, group: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
    block = min(512, seq_len)
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                          block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                          block_q_dq=block, block_kv_dq=block)
    mask = sm.MultiHeadMask([sm.CausalMask((seq_len, seq_len)) for _ in range(group)])
    return sk.make_splash_mqa_single_device(mask, block_sizes=sizes, interpret=interpret), sk.SegmentIds


def splash_attention(q, k, v, q_segment, kv_segment) -> jax.Array:
    """Causal splash attention with segment ids; q [B,T,H,D], k/v [B,T,K,D]."""
    b, t, h, d = q.shape
    kvh = k.shape[2]
    kernel, segment_ids_cls = _splash_kernel(t, h // kvh, splash_interpret_mode())
    qg = (q * (1.0 / math.sqrt(d))).reshape(b, t, kvh, h // kvh, d).transpose(0, 2, 3, 1, 4)
    kg, vg = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B,K,T,D]

    def one(qb, kb, vb, qs, ks):  # qb [G,T,D], kb/vb [T,D]
        return kernel(qb, kb, vb, segment_ids=segment_ids_cls(q=qs, kv=ks))

    over_heads = jax.vmap(one, in_axes=(0, 0, 0, None, None))
    out = jax.vmap(over_heads)(qg, kg, vg, q_segment.astype(jnp.int32), kv_segment.astype(jnp.int32))
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d).astype(q.dtype)


def dot_product_attention(q, k, v, *, q_index, kv_index, q_segment, kv_segment, impl: str,
                          decoding: bool = False) -> jax.Array:
    """Attention with the configured implementation; see the module docstring."""
    impl = resolve_impl(impl)
    if impl == "splash":
        t = q.shape[1]
        if decoding:
            impl = "xla"  # KV-cache decoding: query and key lengths differ; the kernel is for training
        elif t % 128:
            _warn_once(f"splash attention needs a sequence length divisible by 128, got {t}; "
                       "using the XLA reference attention")
            impl = "xla"
        else:
            return splash_attention(q, k, v, q_segment, kv_segment)
    mask = attention_mask(q_index, kv_index, q_segment, kv_segment)
    if impl == "cudnn":
        try:
            return cudnn_attention(q, k, v, mask)
        except (ValueError, NotImplementedError, RuntimeError) as e:
            _warn_once(f"cuDNN attention rejected this call ({str(e).splitlines()[0]}); "
                       "using the XLA reference attention")
    return xla_attention(q, k, v, mask)
