"""`make demo`: the spine end to end on a tiny LLaMA (seconds on a laptop CPU).

A random `transformers` LlamaForCausalLM (GQA) is saved as sharded safetensors, converted to
an Orbax checkpoint with scanned layers, loaded with `ziya_jax.load_pretrained`, checked
against PyTorch (logits and greedy KV-cache decoding), and exported back to HF safetensors,
which must be bit-identical. Stages of the full Ziya2 flow that are not built yet are listed
as skipped.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

SKIPPED = ("tokenizer extension + SeqIO stages (issue 6)",
           "three-stage training (issue 4)", "benchmark evaluation (issue 7)")


def _tiny_hf_model(seed: int):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   rms_norm_eps=1e-6, tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(cfg).eval()


def run_data_factory(out: Path) -> dict:
    """Data factory on the demo corpus: scoring models (real lmplz) -> Beam pipeline -> report."""
    from ziya_jax.config import load_config
    from ziya_jax.data.demo_corpus import build_demo_corpus, train_demo_models
    from ziya_jax.data.pipeline import run
    from ziya_jax.data.report import write_report

    build_demo_corpus(str(out / "corpus"))
    train_demo_models(str(out / "lm"))
    cfg = load_config("configs/data/ziya2.py", [f"--config.score.model_dir={out / 'lm'}"])
    stats = run(str(out / "corpus" / "raw" / "**" / "*"), str(out / "curated"), cfg, overwrite=True)
    report = write_report(str(out / "curated"))
    return {"input_records": stats["input_records"], "output_records": stats["output_records"],
            "seconds": stats["seconds"], "report": report}


def run_demo(out: str | Path, seed: int = 0) -> int:
    import jax
    import torch
    import transformers

    import ziya_jax
    from tools.convert import hf_to_orbax, orbax_to_hf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report: dict = {}
    hf_dir, ckpt, back = out / "hf_tiny", out / "ckpt_tiny", out / "hf_roundtrip"

    model = _tiny_hf_model(seed)
    model.save_pretrained(hf_dir, max_shard_size="300KB")
    print(f"[1/5] random HF LLaMA (GQA 4q/2kv heads) saved as sharded safetensors: {hf_dir}")

    cfg = hf_to_orbax.convert(hf_dir, ckpt, scan_layers=True, overwrite=True, progress=False)
    print(f"[2/5] converted to Orbax (scanned layers, {cfg.num_params / 1e6:.2f}M params): {ckpt}")

    ids = np.random.RandomState(seed).randint(3, cfg.vocab_size, size=(2, 24))
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    exact = ziya_jax.load_pretrained(ckpt, dtype="float32")
    diff = float(np.abs(np.asarray(exact(ids)) - ref).max())
    bf16 = ziya_jax.load_pretrained(ckpt)  # the training policy: bf16 compute, fp32 islands
    diff_bf16 = float(np.abs(np.asarray(bf16(ids)) - ref).max())
    report.update(logits_max_abs_diff_fp32=diff, logits_max_abs_diff_bf16_policy=diff_bf16)
    print(f"[3/5] forward vs PyTorch: max |diff| fp32 {diff:.2e} (bf16 compute policy {diff_bf16:.2e})")

    new = 16
    with torch.no_grad():
        hf_tokens = model.generate(torch.tensor(ids[:, :8]), max_new_tokens=new, do_sample=False,
                                   min_new_tokens=new, pad_token_id=0)[:, 8:].numpy()
    ours = np.asarray(exact.generate(ids[:, :8], max_new_tokens=new).tokens)
    report["greedy_decode_equal"] = bool((ours == hf_tokens).all())
    print(f"[4/5] greedy KV-cache decoding of {new} tokens equals transformers.generate: {report['greedy_decode_equal']}")

    orbax_to_hf.convert(ckpt, back, dtype="float32", shard_size="300KB", overwrite=True, progress=False)
    again = transformers.LlamaForCausalLM.from_pretrained(back)
    identical = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    report["roundtrip_bit_identical"] = identical
    print(f"[5/5] exported back to HF safetensors ({len(list(back.glob('*.safetensors')))} shards), "
          f"bit-identical: {identical}: {back}")
    data = run_data_factory(out)
    report["data_factory"] = data
    print(f"[data] data factory: {data['input_records']} raw records -> {data['output_records']} curated in "
          f"{data['seconds']} s; report: {data['report']}")
    for stage in SKIPPED:
        print(f"      skipped (not built yet): {stage}")
    report["seconds"] = round(time.time() - t0, 1)
    report["devices"] = [str(d) for d in jax.devices()]
    (out / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {out / 'demo_report.json'}")
    ok = diff <= 1e-4 and report["greedy_decode_equal"] and identical
    if not ok:
        print("DEMO FAILED: a parity check did not hold")
    return 0 if ok else 1
