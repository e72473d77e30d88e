"""Tiny random Hugging Face LLaMA models saved to disk, for parity tests."""
from __future__ import annotations

from pathlib import Path

import torch
import transformers

SHAPES = {
    # name: (vocab, hidden, intermediate, layers, heads, kv_heads)
    "mha": (128, 48, 80, 2, 4, 4),
    "gqa": (131, 64, 100, 3, 8, 2),
    "odd": (97, 40, 67, 2, 5, 1),        # odd sizes, head_dim 8, multi-query attention
}


def make_hf_model(kind: str, seed: int = 0, dtype=torch.float32) -> transformers.LlamaForCausalLM:
    vocab, hidden, inter, layers, heads, kv = SHAPES[kind]
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                                   max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
                                   tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norm scales so a swapped norm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype)


def save_hf_model(model, path: Path, **kwargs) -> Path:
    model.save_pretrained(path, **kwargs)
    return path
