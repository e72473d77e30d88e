"""Attention implementations: selection by platform, fallbacks, and numerical agreement."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ziya_jax.model import attention as attn


def _inputs(b=2, t=256, h=4, kv=2, d=32, seed=0):
    r = np.random.RandomState(seed)
    q, k, v = (jnp.asarray(r.randn(b, t, n, d).astype(np.float32)) for n in (h, kv, kv))
    cut = t * 2 // 5
    seg = jnp.asarray(np.array([[1] * cut + [2] * (t - cut), [1] * (t - 10) + [0] * 10], np.int32)[:b])
    idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
    return q, k, v, seg, idx


def test_selection_by_platform():
    assert attn.resolve_impl("auto", "cpu") == "xla"
    assert attn.resolve_impl("auto", "gpu") == "cudnn"
    assert attn.resolve_impl("auto", "tpu") == "splash"
    assert attn.resolve_impl("cudnn", "gpu") == "cudnn"
    assert attn.resolve_impl("splash", "tpu") == "splash"


def test_kernels_fall_back_with_a_clear_message(caplog, monkeypatch):
    monkeypatch.delenv("ZIYA_PALLAS_INTERPRET", raising=False)
    attn._warned.clear()
    with caplog.at_level(logging.WARNING):
        assert attn.resolve_impl("cudnn", "cpu") == "xla"
        assert attn.resolve_impl("splash", "gpu") == "xla"
    text = caplog.text
    assert "attention_impl='cudnn' needs a gpu" in text and "falling back to the XLA reference" in text
    assert "attention_impl='splash' needs a tpu" in text
    with pytest.raises(ValueError, match="unknown attention implementation"):
        attn.resolve_impl("flash3", "cpu")


def test_xla_reference_matches_naive_float64():
    q, k, v, seg, idx = _inputs(t=32)
    out = np.asarray(attn.xla_attention(q, k, v, attn.attention_mask(idx, idx, seg, seg)))
    qn, kn, vn = (np.asarray(x, np.float64) for x in (q, k, v))
    kn, vn = np.repeat(kn, 2, axis=2), np.repeat(vn, 2, axis=2)
    logits = np.einsum("bthd,bshd->bhts", qn, kn) / np.sqrt(32)
    mask = np.asarray(attn.attention_mask(idx, idx, seg, seg))
    logits = np.where(mask, logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = np.einsum("bhts,bshd->bthd", p, vn)
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_splash_kernel_matches_reference_in_interpret_mode(monkeypatch):
    """The TPU Pallas kernel itself, run by the Pallas interpreter on CPU, with packed segments."""
    monkeypatch.setenv("ZIYA_PALLAS_INTERPRET", "1")
    q, k, v, seg, idx = _inputs(b=1, t=256)
    assert attn.resolve_impl("splash", "cpu") == "splash"
    out = attn.dot_product_attention(q, k, v, q_index=idx, kv_index=idx, q_segment=seg, kv_segment=seg,
                                     impl="splash")
    ref = attn.xla_attention(q, k, v, attn.attention_mask(idx, idx, seg, seg))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5)


def test_splash_falls_back_for_unaligned_length(monkeypatch, caplog):
    monkeypatch.setenv("ZIYA_PALLAS_INTERPRET", "1")
    attn._warned.clear()
    q, k, v, seg, idx = _inputs(b=1, t=100)
    seg = seg[:, :100]
    with caplog.at_level(logging.WARNING):
        out = attn.dot_product_attention(q, k, v, q_index=idx, kv_index=idx, q_segment=seg, kv_segment=seg,
                                         impl="splash")
    assert "divisible by 128" in caplog.text
    ref = attn.xla_attention(q, k, v, attn.attention_mask(idx, idx, seg, seg))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


def test_bf16_inputs_softmax_in_fp32():
    """With bf16 q/k/v the logits/softmax still run in fp32: rows sum to one to fp32 accuracy."""
    q, k, v, seg, idx = _inputs(t=64)
    mask = attn.attention_mask(idx, idx, seg, seg)
    jaxpr = str(jax.make_jaxpr(attn.xla_attention)(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16),
                                                   v.astype(jnp.bfloat16), mask))
    assert "preferred_element_type=float32" in jaxpr
    assert "reduce_max" in jaxpr and "exp" in jaxpr
    out = attn.xla_attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16), mask)
    assert out.dtype == jnp.bfloat16
