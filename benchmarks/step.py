"""Forward+backward throughput of our model vs transformers (PyTorch) on the same config and CPU.

    python benchmarks/step.py [--hidden 512 --layers 8 --seq 512 --batch 4 --steps 5]

Both run fp32 on this machine's CPU, same shapes (LLaMA layout, untied embeddings), same
number of threads. Prints one JSON line: tokens/s of each, the ratio, and MFU of ours against
this CPU's measured fp32 matmul FLOP/s (a 2048^3 jitted matmul). Target: ratio >= 1.5.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def measured_matmul_flops() -> float:
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(5):
        f(a).block_until_ready()
    return 5 * 2 * n**3 / (time.perf_counter() - t)


def ours(cfg, batch: int, seq: int, steps: int) -> float:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ziya_jax.model import Llama
    from ziya_jax.model.llama import init_params

    params = init_params(cfg, jax.random.PRNGKey(0))
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, seq + 1)))

    def loss(p, t):
        logits = Llama(cfg).apply({"params": p}, t[:, :-1])
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, t[:, 1:, None], axis=-1))

    step = jax.jit(jax.value_and_grad(loss))
    jax.block_until_ready(step(params, tokens))
    t = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(step(params, tokens))
    return batch * seq * steps / (time.perf_counter() - t)


def torch_reference(cfg, batch: int, seq: int, steps: int) -> float:
    import numpy as np
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_seq_len, tie_word_embeddings=False, attn_implementation="sdpa"))
    tokens = torch.tensor(np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, seq + 1)))

    def step():
        model.zero_grad(set_to_none=True)
        out = model(tokens[:, :-1], labels=tokens[:, :-1])
        out.loss.backward()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * seq * steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    import torch

    from ziya_jax.model import ModelConfig

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    cfg = ModelConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=int(a.hidden * 8 / 3 // 64 * 64),
                      num_layers=a.layers, num_heads=a.heads, num_kv_heads=a.heads, max_seq_len=a.seq,
                      dtype="float32", attention_impl="xla")
    peak = measured_matmul_flops()
    ours_tps = ours(cfg, a.batch, a.seq, a.steps)
    torch_tps = torch_reference(cfg, a.batch, a.seq, a.steps)
    mfu = ours_tps * cfg.flops_per_token(a.seq) / peak
    print(json.dumps({"benchmark": "step", "config": {"hidden": a.hidden, "layers": a.layers, "seq": a.seq,
                                                      "batch": a.batch, "vocab": a.vocab, "dtype": "float32"},
                      "cpu_threads": threads, "ours_tokens_per_s": round(ours_tps, 1),
                      "torch_tokens_per_s": round(torch_tps, 1), "ratio_vs_torch": round(ours_tps / torch_tps, 3),
                      "cpu_matmul_gflops": round(peak / 1e9, 1), "ours_mfu_vs_cpu_matmul": round(mfu, 3),
                      "target_met": ours_tps / torch_tps >= 1.5}))


if __name__ == "__main__":
    main()
