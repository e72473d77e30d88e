"""Evaluation throughput of ours vs transformers on the same tiny config, in the same run.

    python benchmarks/eval.py [--hidden 256 --layers 4 --questions 64 --prompt-len 384 --new-tokens 64]

Multiple choice: each question is a context of --prompt-len tokens and four single-token answer
letters; both sides run one forward per question in batches of --batch and read the letters'
log-probabilities at the last position (the same algorithm). Generation: greedy decoding of
--new-tokens tokens with a KV cache for --batch left-padded prompts (ours: EvalEngine.generate;
transformers: model.generate). Same weights and dtype, same device: GPU when one is present (JAX and PyTorch both), else CPU
(`make bench` sets JAX_PLATFORMS=cpu).
Prints one JSON line: examples/s and tokens/s of each and the ratios (ours / transformers).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=384)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                    help="compute dtype of both sides (bfloat16: HF weights in bf16, ours bf16 compute)")
    a = ap.parse_args()

    import jax
    import numpy as np
    import torch
    import transformers

    import ziya_jax
    from tools.convert import hf_to_orbax
    from ziya_jax.evaluation.engine import EvalEngine
    from ziya_jax.parallel import make_mesh

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.hidden * 8 // 3,
                                   num_hidden_layers=a.layers, num_attention_heads=a.heads,
                                   num_key_value_heads=a.kv_heads, max_position_embeddings=2048,
                                   tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    tmp = Path(tempfile.mkdtemp())
    hf.save_pretrained(tmp / "hf")
    hf_to_orbax.convert(tmp / "hf", tmp / "ckpt", progress=False)
    hf = hf.to(device, dtype=getattr(torch, a.dtype))
    ours = ziya_jax.load_pretrained(tmp / "ckpt", dtype=a.dtype)
    engine = EvalEngine(ours.config, ours.params, batch_size=a.batch,
                        mesh=make_mesh({"fsdp": 1}, devices=jax.devices()[:1]))

    rng = np.random.default_rng(0)
    lengths = rng.integers(a.prompt_len // 2, a.prompt_len + 1, a.questions)
    contexts = [[1] + rng.integers(3, a.vocab, n - 1).tolist() for n in lengths]
    letters = [[319, 350, 315, 360]] * a.questions      # " A".." D" in the LLaMA vocabulary

    def ours_mc():
        return engine.choice_logprobs(contexts, letters)

    def hf_mc():
        out = np.zeros((a.questions, 4), np.float32)
        order = sorted(range(a.questions), key=lambda i: -len(contexts[i]))
        with torch.inference_mode():
            for s in range(0, a.questions, a.batch):
                idx = order[s:s + a.batch]
                width = max(len(contexts[i]) for i in idx)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros_like(ids)
                for j, i in enumerate(idx):
                    ids[j, :len(contexts[i])] = torch.tensor(contexts[i])
                    mask[j, :len(contexts[i])] = 1
                logits = hf(ids.to(device), attention_mask=mask.to(device)).logits.float()
                last = torch.tensor([len(contexts[i]) - 1 for i in idx], device=device)
                logp = torch.log_softmax(logits[torch.arange(len(idx), device=device), last], -1)
                out[idx] = logp[:, torch.tensor(letters[0], device=device)].cpu().numpy()
        return out

    def timed(fn):
        fn()                                              # compile / warm up
        best = float("inf")
        for _ in range(a.repeats):
            t = time.perf_counter()
            res = fn()
            best = min(best, time.perf_counter() - t)
        return best, res

    t_ours_mc, lp_ours = timed(ours_mc)
    t_hf_mc, lp_hf = timed(hf_mc)

    prompts = contexts[:a.batch]

    def ours_gen():
        engine.generated_tokens = 0
        engine.generate(prompts, max_new_tokens=a.new_tokens, decode=lambda ids: " ".join(map(str, ids)),
                        chunk=a.new_tokens)
        return engine.generated_tokens

    def hf_gen():
        width = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, p in enumerate(prompts):                   # left padding
            ids[j, width - len(p):] = torch.tensor(p)
            mask[j, width - len(p):] = 1
        with torch.inference_mode():
            out = hf.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=a.new_tokens,
                              min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0)
        return int((out.shape[1] - width) * len(prompts))

    t_ours_gen, n_ours = timed(ours_gen)
    t_hf_gen, n_hf = timed(hf_gen)
    result = {
        "benchmark": "eval", "device": device if device == "cuda" else "cpu",
        "jax_device": str(jax.devices()[0].device_kind), "attention": ours.config.attention_impl,
        "config": vars(a),
        "mc_examples_per_s": {"ours": a.questions / t_ours_mc, "transformers": a.questions / t_hf_mc},
        "mc_ratio": t_hf_mc / t_ours_mc,
        "mc_max_abs_logprob_diff": float(np.abs(lp_ours - lp_hf).max()),
        "gen_tokens_per_s": {"ours": n_ours / t_ours_gen, "transformers": n_hf / t_hf_gen},
        "gen_ratio": (n_ours / t_ours_gen) / (n_hf / t_hf_gen),
        "gen_tokens": {"ours": n_ours, "transformers": n_hf},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
