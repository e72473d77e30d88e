"""`make demo`: the whole Ziya2 flow end to end on a tiny LLaMA (a few minutes on a laptop CPU).

Spine: a random `transformers` LlamaForCausalLM (GQA) is saved as sharded safetensors, converted
to Orbax (scanned layers), checked against PyTorch (logits, greedy KV-cache decoding) and exported
back bit-identically. Then: the data factory on the packaged demo corpus, the tokenizer extension,
stage-1 caches, training (20 steps, resumed to 40), export, held-out perplexity, and the Table-3
benchmarks (`eval`) on schema fixtures and real HumanEval problems.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np



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


def run_tokenizer_and_stage1(out: Path) -> dict:
    """Extend the LLaMA-layout tokenizer on the curated corpus, prepare the TFDS source, pack stage 1."""
    from ziya_jax.config import load_config
    from ziya_jax.data.io import iter_corpus_texts
    from ziya_jax.data.offline import ensure_offline_data
    from ziya_jax.stages.build import build_task_cache, stage_mixture, token_shares
    from ziya_jax.stages.tfds_builders import prepare
    from ziya_jax.tokenizer.efficiency import efficiency_report
    from ziya_jax.tokenizer.extend import SPECIAL_TOKENS, chars_from_corpus, extend_model

    base = str(ensure_offline_data()["llama_tokenizer"])
    curated = str(out / "curated" / "data" / "*.tfrecord")
    chars, _ = chars_from_corpus(base, iter_corpus_texts(curated), 7400)
    new = str(out / "tokenizer" / "ziya2_demo.model")
    ext = extend_model(base, new, chars, SPECIAL_TOKENS)
    eff = efficiency_report(base, new, iter_corpus_texts(curated))
    cfg = load_config("configs/data/stages.py", [f"--config.tfds_data_dir={out / 'tfds'}", f"--config.vocab={new}",
                                                  f"--config.cache_dir={out / 'stage_cache'}",
                                                  "--config.sequence_length=256"])
    import shutil
    shutil.rmtree(out / "tfds", ignore_errors=True)
    for group in ("zh", "en", "code"):
        prepare("curated", str(out / "curated"), cfg.tfds_data_dir, group)
    rows = {t: build_task_cache(t, cfg, overwrite=True)["rows"]
            for t in ("ziya2_stage1_zh", "ziya2_stage1_en", "ziya2_stage1_code")}
    mix = stage_mixture(1, cfg, global_batch=8)
    return {"tokenizer": new, "added_chars": len(ext.added_chars), "pieces": ext.size,
            "zh_token_reduction": eff.get("zh_token_reduction"), "stage1_rows": rows,
            "stage1_token_shares": token_shares(mix, range(20)), "cache": str(out / "stage_cache")}


def run_training(out: Path, pieces: int) -> dict:
    """Train the tiny model on stage 1 (20 steps), resume to 40, export to HF, held-out perplexity."""
    from tools.convert import orbax_to_hf
    from ziya_jax.config import load_config, model_config
    from ziya_jax.pretrained import load_pretrained
    from ziya_jax.stages.build import stage_mixture
    from ziya_jax.train.export import export_params, perplexity
    from ziya_jax.train.loop import train

    vocab = -(-pieces // 128) * 128
    base = [f"--config.data.cache_dir={out / 'stage_cache'}", "--config.data.sequence_length=256",
            f"--config.model.vocab_size={vocab}", "--config.batch.global_batch=8",
            f"--config.schedule.total_tokens={40 * 8 * 256}", "--config.checkpoint.every=10",
            "--config.optimizer.peak_lr=3e-3", "--config.train.log_every=10"]
    import shutil
    work = out / "train"
    shutil.rmtree(work, ignore_errors=True)
    first = train(load_config("configs/train/ziya2_stage1.py:tiny", base + ["--config.train.steps=20"]), str(work))
    second = train(load_config("configs/train/ziya2_stage1.py:tiny", base + ["--config.train.steps=40"]), str(work))
    exported = export_params(str(work), str(out / "ckpt_trained"), overwrite=True)
    orbax_to_hf.convert(out / "ckpt_trained", out / "hf_trained", dtype="float32", overwrite=True, progress=False)
    cfg = load_config("configs/train/ziya2_stage1.py:tiny", base)
    mix = stage_mixture(1, cfg.data, 8)
    held_out = [mix.host_batch(s) for s in range(200, 204)]       # rows the 40 steps did not reach
    model = load_pretrained(out / "ckpt_trained", dtype="float32")
    trained = perplexity(model.params, model.config, held_out)
    import jax

    from ziya_jax.model.llama import init_params
    fresh = perplexity(init_params(model.config, jax.random.PRNGKey(0)), model.config, held_out)
    return {"first_run": first, "resumed_run": second, "exported_step": exported["step"],
            "hf_dir": str(out / "hf_trained"), "perplexity_trained": trained["perplexity"],
            "perplexity_untrained": fresh["perplexity"], "held_out_tokens": trained["tokens"], "workdir": str(work)}


def run_evaluation(out: Path, tokenizer: str) -> dict:
    """The Table-3 benchmarks on the trained checkpoint, over schema fixtures (real HumanEval problems)."""
    from ziya_jax.evaluation.fixtures import write_fixtures
    from ziya_jax.evaluation.runner import evaluate
    data = out / "eval_data"
    write_fixtures(data / "downloads" / "manual")
    start = time.time()
    report = evaluate(str(out / "ckpt_trained"), ["mmlu", "cmmlu", "ceval", "gsm8k", "math", "humaneval"], str(data),
                      str(out / "eval_report"), limit=4, batch_size=8, tokenizer=tokenizer, overwrite=True,
                      max_new_tokens=64)
    return {"scores": {b: round(r["score"], 2) for b, r in report["tasks"].items()},
            "n": {b: r["n"] for b, r in report["tasks"].items()}, "seconds": round(time.time() - start, 1),
            "report": str(out / "eval_report" / "report.md")}


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
    stages = run_tokenizer_and_stage1(out)
    report["tokenizer_and_stage1"] = stages
    print(f"[tokenizer] {stages['added_chars']} Chinese characters + <human>/<bot> -> {stages['pieces']} pieces, "
          f"{stages['zh_token_reduction']:.1%} fewer Chinese tokens: {stages['tokenizer']}")
    print(f"[stage 1] packed 256-token rows {stages['stage1_rows']}; token shares over 20 steps "
          f"{ {k: round(v, 3) for k, v in stages['stage1_token_shares'].items()} }: {stages['cache']}")
    tr = run_training(out, stages["pieces"])
    report["training"] = tr
    print(f"[train] 20 steps, then resumed to {tr['resumed_run']['step']} (checkpoints in {tr['workdir']}); exported "
          f"step {tr['exported_step']} to HF: {tr['hf_dir']}")
    print(f"[perplexity] held-out perplexity {tr['perplexity_trained']:.1f} (untrained {tr['perplexity_untrained']:.1f}) "
          f"on {tr['held_out_tokens']:.0f} tokens")
    ev = run_evaluation(out, stages["tokenizer"])
    report["evaluation"] = ev
    print(f"[benchmarks] Table-3 protocol on schema fixtures (+ 4 real HumanEval problems, sandboxed) in "
          f"{ev['seconds']} s: {ev['scores']}; report: {ev['report']}")
    report["seconds"] = round(time.time() - t0, 1)
    report["devices"] = [str(d) for d in jax.devices()]
    (out / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {out / 'demo_report.json'}")
    ok = (diff <= 1e-4 and report["greedy_decode_equal"] and identical
          and tr["perplexity_trained"] < tr["perplexity_untrained"])
    if not ok:
        print("DEMO FAILED: a parity check did not hold")
    return 0 if ok else 1
