"""Tokenizer extension on a real 32k LLaMA-layout model (mistral-common v1) and real Chinese text."""
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ziya_jax.data.io import iter_corpus_texts
from ziya_jax.data.offline import ensure_offline_data
from ziya_jax.tokenizer.extend import TokenizerError, count_chinese_chars, extend_model, load_proto, read_char_list

ROOT = Path(__file__).resolve().parents[1]
NUM_CHARS = 500


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    paths = ensure_offline_data()
    base = str(paths["llama_tokenizer"])
    f = paths["fortunes"]
    corpus = f"{f}/chinese,{f}/tang300,{f}/song100"
    out = tmp_path_factory.mktemp("tok") / "ziya.model"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-m", "ziya_jax", "tokenizer", "extend", "--base", base, "--corpus", corpus,
                          "--num-chars", str(NUM_CHARS), "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return dict(base=base, new=str(out), corpus=corpus, summary=json.loads(res.stdout), paths=paths, env=env)


def test_extension_keeps_base_ids_and_adds_frequent_chars(toks):
    import sentencepiece as spm
    base, new = load_proto(toks["base"]), load_proto(toks["new"])
    assert [p.piece for p in new.pieces[:32000]] == [p.piece for p in base.pieces]
    added = [p.piece for p in new.pieces[32000:32000 + NUM_CHARS]]
    base_pieces = {p.piece for p in base.pieces}
    counts = count_chinese_chars(iter_corpus_texts(toks["corpus"]))
    expected = sorted((c for c in counts if c not in base_pieces), key=lambda c: (-counts[c], ord(c)))[:NUM_CHARS]
    assert added == expected
    assert toks["summary"]["special_tokens"] == {"<human>": 32000 + NUM_CHARS, "<bot>": 32001 + NUM_CHARS}
    assert toks["summary"]["padded_vocab_size"] == 32512
    sp_base, sp_new = spm.SentencePieceProcessor(model_file=toks["base"]), spm.SentencePieceProcessor(model_file=toks["new"])
    english = Path(toks["paths"]["botchan"]).read_text()[:20000]
    assert sp_new.encode(english) == sp_base.encode(english)            # English untouched
    poem = Path(toks["paths"]["fortunes"], "tang300").read_text(encoding="utf-8")[:20000]
    ids = sp_new.encode(poem)
    assert len(ids) < len(sp_base.encode(poem)) and sp_new.decode(ids) == poem
    assert any(i >= 32000 for i in ids)
    assert sp_new.encode("<human>:你好<bot>:")[1] == 32000 + NUM_CHARS


def test_extended_model_loads_in_seqio_and_transformers(toks, tmp_path):
    import seqio
    import sentencepiece as spm
    from transformers import LlamaTokenizer
    sp = spm.SentencePieceProcessor(model_file=toks["new"])
    poem = Path(toks["paths"]["fortunes"], "tang300").read_text(encoding="utf-8")[:5000]
    vocab = seqio.SentencePieceVocabulary(toks["new"])
    assert vocab.vocab_size == 32000 + NUM_CHARS + 2
    assert list(vocab.encode(poem)) == sp.encode(poem)
    shutil.copy(toks["new"], tmp_path / "tokenizer.model")
    hf = LlamaTokenizer.from_pretrained(str(tmp_path))
    assert len(hf) == 32000 + NUM_CHARS + 2
    assert hf(poem, add_special_tokens=False)["input_ids"] == sp.encode(poem)
    assert hf.convert_tokens_to_ids(["<human>", "<bot>"]) == [32000 + NUM_CHARS, 32001 + NUM_CHARS]


def test_report_measures_chinese_gain(toks, tmp_path):
    env = toks["env"]
    out = tmp_path / "report.json"
    res = subprocess.run([sys.executable, "-m", "ziya_jax", "tokenizer", "report", "--base", toks["base"], "--new",
                          toks["new"], "--corpus", f"{toks['corpus']},{toks['paths']['botchan']}", "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["zh_documents"] == 3 and r["en_documents"] == 1
    assert r["tokens_per_chinese_char"]["new"] < r["tokens_per_chinese_char"]["base"]
    assert r["zh_token_reduction"] > 0.05 and r["en_token_reduction"] == 0.0


def test_char_list_and_bad_input(toks, tmp_path):
    chars = tmp_path / "chars.txt"
    chars.write_text("葳\t12\n中\n蕤\n葳\n")          # 中 is already a base piece; 葳 repeated
    ext = extend_model(toks["base"], str(tmp_path / "m.model"), read_char_list(str(chars)), ())
    assert ext.added_chars == ["葳", "蕤"] and ext.size == 32002
    (tmp_path / "bad.txt").write_text("葳\nabc\n")
    with pytest.raises(TokenizerError, match=r"bad.txt:2: 'a' is not a Chinese character"):
        read_char_list(str(tmp_path / "bad.txt"))
    (tmp_path / "junk.model").write_bytes(b"\xff\x00junk" * 10)
    with pytest.raises(TokenizerError, match="is not a SentencePiece model"):
        load_proto(str(tmp_path / "junk.model"))
    with pytest.raises(TokenizerError, match="not found"):
        load_proto(str(tmp_path / "none.model"))


def test_extend_vocab_rows_exact(toks, tmp_path):
    import jax
    from tools.convert.extend_vocab import extend_checkpoint
    from ziya_jax.config import load_config, model_config
    from ziya_jax.model.llama import init_params
    from ziya_jax.params_io import load_params
    from ziya_jax.pretrained import load_pretrained, save_pretrained
    cfg = model_config(load_config("configs/model.py:tiny", ["--config.model.vocab_size=32000"]))
    save_pretrained(tmp_path / "base", cfg, init_params(cfg, jax.random.PRNGKey(0)))
    res = subprocess.run([sys.executable, "-m", "tools.convert.extend_vocab", "--ckpt", str(tmp_path / "base"),
                          "--base", toks["base"], "--new", toks["new"], "--out", str(tmp_path / "ext")],
                         cwd=ROOT, env=toks["env"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    old, new = load_params(tmp_path / "base"), load_params(tmp_path / "ext")
    E0, W0, E1, W1 = old["embed"]["embedding"], old["lm_head"], new["embed"]["embedding"], new["lm_head"]
    assert E1.shape == (32512, 64) and W1.shape == (64, 32512)
    np.testing.assert_array_equal(E1[:32000], E0)
    np.testing.assert_array_equal(W1[:, :32000], W0)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=toks["new"])
    for new_id in (32000, 32001, 32000 + NUM_CHARS - 1):
        ch = sp.id_to_piece(new_id)
        byte_ids = [3 + b for b in ch.encode("utf-8")]                  # <0xNN> is id 3 + NN in the LLaMA layout
        np.testing.assert_allclose(E1[new_id], E0[byte_ids].astype(np.float64).mean(0), rtol=0, atol=1e-7)
        np.testing.assert_allclose(W1[:, new_id], W0[:, byte_ids].astype(np.float64).mean(1), rtol=0, atol=1e-7)
    base_sp = spm.SentencePieceProcessor(model_file=toks["base"])
    human = [base_sp.piece_to_id(p) for p in ("<", "human", ">")]      # split without the dummy "▁" prefix
    np.testing.assert_allclose(E1[32000 + NUM_CHARS], E0[human].astype(np.float64).mean(0), atol=1e-7)
    np.testing.assert_allclose(E1[-1], E0.astype(np.float64).mean(0), atol=1e-7)          # padding rows
    np.testing.assert_array_equal(new["layers_0"]["mlp"]["wo"]["kernel"], old["layers_0"]["mlp"]["wo"]["kernel"])
    model = load_pretrained(tmp_path / "ext")
    assert model.config.vocab_size == 32512
    assert model(np.array([[1, 32000, 32000 + NUM_CHARS]], np.int32)).shape == (1, 3, 32512)
    assert (tmp_path / "ext" / "hf_files" / "tokenizer.model").read_bytes() == Path(toks["new"]).read_bytes()
    bad = subprocess.run([sys.executable, "-m", "tools.convert.extend_vocab", "--ckpt", str(tmp_path / "base"),
                          "--base", toks["new"], "--new", toks["base"], "--out", str(tmp_path / "x")],
                         cwd=ROOT, env=toks["env"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "does not extend" in bad.stderr
