"""Evaluation scoring equals transformers, generation equals transformers.generate, and `eval` end to end."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers

import ziya_jax
from tools.convert import hf_to_orbax
from ziya_jax.data.offline import cache_dir
from ziya_jax.evaluation.engine import EvalEngine
from ziya_jax.evaluation.prompts import gsm8k_prompt, mc_continuations, mc_prompt
from ziya_jax.parallel import make_mesh

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = cache_dir() / "tokenizers" / "tokenizer.model.v1"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random LLaMA with the 32,000-piece LLaMA-layout vocabulary, as HF and as ours."""
    root = tmp_path_factory.mktemp("evalmodel")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=32000, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                                   rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():          # larger weights: peaked, non-uniform next-token distributions
            p.mul_(8.0) if p.ndim == 2 else p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(root / "hf")
    shutil.copy(TOKENIZER, root / "hf" / "tokenizer.model")
    hf_to_orbax.convert(root / "hf", root / "ckpt", progress=False)
    return root, hf


def _mc_prompts():
    shots = [{"question": f"What is {a} + {b}?", "choices": [str(a + b + d) for d in (0, 1, 2, 3)], "answer": 0}
             for a, b in ((2, 3), (4, 9), (10, 7))]
    en = [mc_prompt("mmlu", "elementary_mathematics", shots, f"What is {a} * {b}?", [str(a * b + d) for d in range(4)])
          for a, b in ((3, 4), (6, 7), (8, 9))]
    zh = [mc_prompt("cmmlu", "elementary_mathematics", [], f"{a} 加 {b} 等于多少？", [str(a + b + d) for d in range(4)])
          for a, b in ((5, 6), (12, 30))]
    return [("mmlu", p) for p in en] + [("cmmlu", p) for p in zh]


def test_choice_loglikelihoods_equal_transformers(model_dir):
    root, hf = model_dir
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    ours = ziya_jax.load_pretrained(root / "ckpt", dtype="float32")
    # sharded over the 8 fake CPU devices: data 2 x fsdp 2 x tensor 2
    engine = EvalEngine(ours.config, ours.params, batch_size=4, mesh=make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
    contexts, candidates, requests, ref = [], [], [], []
    for bench, prompt in _mc_prompts():
        ctx = [1] + sp.encode(prompt)
        conts = [([1] + sp.encode(prompt + c))[len(ctx):] for c in mc_continuations(bench)]
        assert all(len(c) == 1 for c in conts)
        contexts.append(ctx)
        candidates.append([c[0] for c in conts])
        with torch.no_grad():
            for c in conts:
                ids = torch.tensor([ctx + c])
                logp = torch.log_softmax(hf(ids).logits.float(), dim=-1)[0]
                ref.append(float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(c))))
                requests.append((ctx, c))
    fast = engine.choice_logprobs(contexts, candidates).reshape(-1)
    general = np.array([r[0] for r in engine.loglikelihood(requests)])
    ref = np.array(ref)
    assert np.abs(fast - ref).max() <= 1e-4, np.abs(fast - ref).max()
    assert np.abs(general - ref).max() <= 1e-4, np.abs(general - ref).max()
    assert np.ptp(ref) > 1e-2                                 # the choices really differ
    # multi-token continuations through the general path, with the greedy flag
    with torch.no_grad():
        ctx = [1] + sp.encode("The capital of France is")
        cont = sp.encode(" Paris, a large city.")
        logits = hf(torch.tensor([ctx + cont])).logits.float()[0]
        logp = torch.log_softmax(logits, -1)
        want = float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))
        greedy = bool(all(int(logits[len(ctx) - 1 + i].argmax()) == t for i, t in enumerate(cont)))
    (got, got_greedy), = engine.loglikelihood([(ctx, cont)])
    assert abs(got - want) <= 1e-4 and got_greedy == greedy


def test_generation_equals_transformers_generate(model_dir):
    root, hf = model_dir
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    ours = ziya_jax.load_pretrained(root / "ckpt", dtype="float32")
    engine = EvalEngine(ours.config, ours.params, batch_size=2, mesh=make_mesh({"fsdp": 1}, devices=jax.devices()[:1]))
    prompts = [[1] + sp.encode(gsm8k_prompt("Tom has 3 apples. How many?", shots=())),
               [1] + sp.encode("def add(a, b):\n")]
    texts = engine.generate(prompts, max_new_tokens=20, decode=sp.decode, chunk=8)
    for p, text in zip(prompts, texts):
        with torch.no_grad():
            out = hf.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False, eos_token_id=2, pad_token_id=0)
        ref = out[0, len(p):].tolist()
        ref = ref[:ref.index(2)] if 2 in ref else ref
        assert text == sp.decode(ref)
    # a stop string cuts the text and stops the row
    stop = texts[1][3:6] if len(texts[1]) > 6 else None
    if stop:
        cut = engine.generate(prompts[1:], max_new_tokens=20, decode=sp.decode, stop=[stop], chunk=8)[0]
        assert cut == texts[1][:texts[1].find(stop)]


def _run(args, **kw):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}   # one CPU device
    return subprocess.run([sys.executable, "-m", "ziya_jax", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600, **kw)


def test_eval_cli_end_to_end(model_dir, tmp_path):
    root, _ = model_dir
    data = tmp_path / "data"
    assert _run(["eval-data", "fixtures", "--data-dir", str(data)]).returncode == 0
    out = tmp_path / "report"
    r = _run(["eval", "--ckpt", str(root / "ckpt"), "--tokenizer", str(TOKENIZER), "--data-dir", str(data),
              "--out", str(out), "--limit", "2", "--batch-size", "4", "--max-new-tokens", "24"])
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["tasks"]) == {"mmlu", "cmmlu", "ceval", "gsm8k", "math", "humaneval"}
    assert report["tasks"]["mmlu"]["n"] == 4 and len(report["tasks"]["mmlu"]["subjects"]) == 2
    assert report["tasks"]["ceval"]["n"] == 4 and report["tasks"]["humaneval"]["n"] == 2
    for b, res in report["tasks"].items():
        samples = (out / "samples" / f"{b}.jsonl").read_text().splitlines()
        assert len(samples) == res["n"]
        assert 0.0 <= res["score"] <= 100.0
    mmlu = [json.loads(s) for s in (out / "samples" / "mmlu.jsonl").read_text().splitlines()]
    assert report["tasks"]["mmlu"]["micro_accuracy"] == pytest.approx(100 * np.mean([s["correct"] for s in mmlu]))
    md = (out / "report.md").read_text()
    assert "| this checkpoint |" in md and "Ziya2-13B (paper)" in md and "elementary_mathematics" in md
    assert "mmlu: 4/4" in r.stderr                     # progress
    # refused: existing output, unknown task, missing data (with the files to place)
    again = _run(["eval", "--ckpt", str(root / "ckpt"), "--tokenizer", str(TOKENIZER), "--data-dir", str(data),
                  "--out", str(out), "--tasks", "gsm8k"])
    assert again.returncode == 2 and "exists" in again.stderr
    bad = _run(["eval", "--ckpt", str(root / "ckpt"), "--tokenizer", str(TOKENIZER), "--data-dir", str(data),
                "--out", str(tmp_path / "x"), "--tasks", "mmlu,arc"])
    assert bad.returncode == 2 and "unknown task" in bad.stderr and "Traceback" not in bad.stderr
    empty = _run(["eval", "--ckpt", str(root / "ckpt"), "--tokenizer", str(TOKENIZER), "--data-dir",
                  str(tmp_path / "nodata"), "--out", str(tmp_path / "y"), "--tasks", "cmmlu"])
    assert empty.returncode == 2 and "downloads/manual/cmmlu" in empty.stderr and "dev/*.csv" in empty.stderr
    assert len([l for l in empty.stderr.splitlines() if l.startswith("error:")]) == 1


def test_generated_text_keeps_leading_indentation():
    """A completion that starts with spaces (HumanEval bodies) decodes with its indentation."""
    from ziya_jax.evaluation.runner import Runner
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    runner = Runner(engine=None, sp=sp)
    prompt = sp.encode("def f(x):\n")
    body = sp.encode("def f(x):\n    return x")[len(prompt):]
    assert sp.decode(body) == "   return x"                 # plain decoding loses a space
    assert runner.decode(body) == "    return x"
    assert runner.decode(sp.encode("The answer is 5.")) == " The answer is 5."
