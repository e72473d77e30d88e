"""Training stages: packing goldens, prompt templates, mixture rates, resume across hosts, SeqIO end to end."""
import json
import os

import numpy as np
import pytest

from ziya_jax.stages.cache import CacheError, PackedCache, write_cache
from ziya_jax.stages.mixture import DeterministicMixture, MixtureError, Source
from ziya_jax.stages.packing import features, pack_bins, pack_stream
from ziya_jax.stages.templates import TemplateError, render_metamath, render_supervised

E = 2   # </s>


def test_stream_packing_golden():
    docs = [[11, 12, 13, E], [14, 15, E], [16, 17, 18, 19, E]]
    rows = list(pack_stream(docs, 4))
    assert [r[0].tolist() for r in rows] == [[11, 12, 13, E, 14], [14, 15, E, 16, 17]]
    assert [r[1].tolist() for r in rows] == [[1, 1, 1, 1, 2], [1, 1, 1, 2, 2]]
    f = features(*map(np.stack, zip(*rows)), mask_documents=True)
    assert f["input_tokens"].tolist() == [[11, 12, 13, E], [14, 15, E, 16]]
    assert f["target_tokens"].tolist() == [[12, 13, E, 14], [15, E, 16, 17]]
    assert f["loss_weights"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 1]]      # no loss across documents
    assert f["segment_ids"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 2]]
    assert f["positions"].tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]         # left-truncated doc starts at 0
    g = features(*map(np.stack, zip(*rows)), mask_documents=False)
    assert g["loss_weights"].tolist() == [[1] * 4] * 2 and g["segment_ids"].tolist() == [[1] * 4] * 2
    assert g["positions"].tolist() == [[0, 1, 2, 3]] * 2


def test_bin_packing_golden():
    items = [("a", [1, 2, E]), ("b", [5, E]), ("a", [3, E]), ("a", [4, 4, 4, E]), ("b", list(range(20, 28)))]
    stats = {}
    rows = list(pack_bins(items, 6, stats, by_task=True))
    assert stats["truncated"] == 1
    toks = [r[0].tolist() for r in rows]
    # rows leave in the order they fill up (a, then b), then the open rows in task order
    assert toks == [[1, 2, E, 3, E, 0, 0], [5, E, 0, 0, 0, 0, 0], [4, 4, 4, E, 0, 0, 0], [20, 21, 22, 23, 24, 25, 0]]
    assert rows[0][1].tolist() == [1, 1, 1, 2, 2, 0, 0]
    vis = features(rows[0][0], rows[0][1], mask_documents=False)
    assert vis["target_tokens"].tolist() == [2, E, 3, E, 0, 0]
    assert vis["loss_weights"].tolist() == [1, 1, 1, 1, 0, 0]                # padding carries no loss
    assert vis["segment_ids"].tolist() == [1, 1, 1, 1, 1, 0]
    assert vis["positions"].tolist() == [0, 1, 2, 3, 4, 0]
    msk = features(rows[0][0], rows[0][1], mask_documents=True)
    assert msk["loss_weights"].tolist() == [1, 1, 0, 1, 0, 0]
    assert msk["segment_ids"].tolist() == [1, 1, 1, 2, 2, 0] and msk["positions"].tolist() == [0, 1, 2, 0, 1, 0]
    assert all(np.count_nonzero(r[1]) <= 6 for r in rows)                   # never over L


def test_prompt_templates_golden():
    assert render_supervised({"lang": "zh", "question": "天空是什么颜色？", "answer": "蓝色"}) == "问题:天空是什么颜色？\n回答:蓝色"
    assert render_supervised({"lang": "en", "question": "2+2?", "answer": "4"}) == "Question:2+2?\nAnswer:4"
    assert render_supervised({"lang": "zh", "question": "哪个是水果？", "choices": ["石头", "苹果"], "answer": "B"}) == \
        "问题:哪个是水果？\nA.石头\nB.苹果\n回答:答案：B.苹果"
    assert render_supervised({"lang": "en", "question": "Pick", "choices": ["x", "y", "z"], "answer": 2}) == \
        "Question:Pick\nA.x\nB.y\nC.z\nAnswer: C.z"
    assert render_metamath({"query": "What is 3*4?", "response": "3*4=12. The answer is: 12"}) == \
        "Question:What is 3*4?\nAnswer:3*4=12. The answer is: 12"
    with pytest.raises(TemplateError, match="f.jsonl:3: missing 'answer'"):
        render_supervised({"question": "q"}, "f.jsonl:3")
    with pytest.raises(TemplateError, match="answer 'E' is neither"):
        render_supervised({"question": "q", "choices": ["a", "b"], "answer": "E"})


def _cache(tmp_path, name, rows, length, fill, vocab="v.model", seed=0):
    rng = np.random.default_rng(seed)

    def gen():
        for i in range(rows):
            tok = np.zeros(length + 1, np.int32)
            seg = np.zeros(length + 1, np.int32)
            n = fill if isinstance(fill, int) else int(rng.integers(*fill))
            tok[:n] = 1000 * (hash(name) % 7 + 1) + i      # row identity is visible in the tokens
            seg[:n] = 1
            yield tok, seg
    write_cache(tmp_path / name, gen(), length, {"task": name, "vocabulary": vocab, "vocab_size": 100,
                                                 "mask_documents": False})
    return PackedCache(tmp_path / name)


def test_mixture_token_shares_within_two_percent(tmp_path):
    L = 32
    sources = [Source("zh", _cache(tmp_path, "zh", 300, L, L), 0.5),
               Source("sup", _cache(tmp_path, "sup", 200, L, (8, 32)), 0.3),      # padded bins, ~60% full
               Source("math", _cache(tmp_path, "math", 50, L, (4, 20)), 0.2)]
    mix = DeterministicMixture(sources, global_batch=16, seed=3)
    counts = np.zeros(3)
    for step in range(250):                                                     # 4,000 rows
        b = mix.host_batch(step)
        for s in range(3):
            counts[s] += b["loss_weights"][b["source"] == s].sum() + (b["segment_ids"][b["source"] == s][:, -1] > 0).sum()
    shares = counts / counts.sum()
    assert np.abs(shares - np.array([0.5, 0.3, 0.2])).max() < 0.02, shares
    # every row of a source is used once per epoch before any repeats
    seen = [row for step in range(250) for s, row in mix.global_plan(step) if s == 2]
    epoch0 = seen[:50]
    assert sorted(epoch0) == list(range(50)) and seen[50:100] != epoch0


@pytest.mark.parametrize("hosts", [1, 2])
def test_resume_equals_uninterrupted(tmp_path, hosts):
    L = 16
    srcs = lambda: [Source("a", PackedCache(tmp_path / "a"), 0.6), Source("b", PackedCache(tmp_path / "b"), 0.4)]
    _cache(tmp_path, "a", 40, L, L)
    _cache(tmp_path, "b", 30, L, (4, 16))
    G = 8
    runs = [DeterministicMixture(srcs(), G, seed=7, host_index=h, host_count=hosts) for h in range(hosts)]
    uninterrupted = {h: [b for _, b in zip(range(12), (x for _, x in runs[h].iterate(0)))] for h in range(hosts)}
    # "restart" at step 8 with fresh objects: batches 8..11 equal without replaying 0..7
    reads = []
    for h in range(hosts):
        fresh = DeterministicMixture(srcs(), G, seed=7, host_index=h, host_count=hosts)
        for s in fresh.sources:
            orig = s.cache.read
            s.cache.read = lambda idx, orig=orig: (reads.append(len(idx)), orig(idx))[1]
        for want, (step, batch) in zip(uninterrupted[h][8:], fresh.iterate(8)):
            for k in want:
                np.testing.assert_array_equal(batch[k], want[k], err_msg=f"host {h} step {step} {k}")
    assert sum(reads) == 4 * G                                                  # each host read only its rows
    # the hosts' slices tile the single-host global batch
    single = DeterministicMixture(srcs(), G, seed=7)
    for step in (0, 5, 11):
        whole = single.host_batch(step)["input_tokens"]
        parts = np.concatenate([uninterrupted[h][step]["input_tokens"] for h in range(hosts)])
        np.testing.assert_array_equal(parts, whole)
    assert not np.array_equal(single.host_batch(0)["input_tokens"], DeterministicMixture(srcs(), G, seed=8).host_batch(0)["input_tokens"])


def test_mixture_and_cache_bad_input(tmp_path):
    a = _cache(tmp_path, "a", 10, 16, 16)
    b = _cache(tmp_path, "b", 10, 8, 8)
    with pytest.raises(MixtureError, match="different sequence lengths"):
        DeterministicMixture([Source("a", a, 0.5), Source("b", b, 0.5)], 8)
    c = _cache(tmp_path, "c", 10, 16, 16, vocab="other.model")
    with pytest.raises(MixtureError, match="different vocabularies"):
        DeterministicMixture([Source("a", a, 0.5), Source("c", c, 0.5)], 8)
    with pytest.raises(MixtureError, match="not divisible by 3 hosts"):
        DeterministicMixture([Source("a", a, 1.0)], 8, host_count=3)
    with open(tmp_path / "a" / "tokens.i32", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(CacheError, match="tokens.i32: 100 bytes.*truncated, rebuild it"):
        PackedCache(tmp_path / "a")
    with pytest.raises(CacheError, match="not a packed cache"):
        PackedCache(tmp_path / "missing")


# --- SeqIO end to end on real tokenizer and small source files -----------------------------------------------

@pytest.fixture(scope="module")
def stages_env(tmp_path_factory):
    from ziya_jax.config import load_config
    from ziya_jax.data.io import doc_to_example, write_tfrecord
    from ziya_jax.data.offline import ensure_offline_data
    from ziya_jax.data.records import make_doc
    root = tmp_path_factory.mktemp("stages")
    paths = ensure_offline_data()
    poems = [p.strip() for p in (paths["fortunes"] / "tang300").read_text(encoding="utf-8").split("%") if p.strip()][:60]
    prose = [p.strip() for p in paths["botchan"].read_text().split("\n\n") if len(p.strip()) > 200][:60]
    code = [f"```python\ndef f{i}(x):\n    return x * {i}\n```" for i in range(60)]
    (root / "curated" / "data").mkdir(parents=True)
    docs = [make_doc(f"zh{i}", t, lang="zh") for i, t in enumerate(poems)] + \
           [make_doc(f"en{i}", t, lang="en") for i, t in enumerate(prose)] + \
           [make_doc(f"py{i}", t, lang="python") for i, t in enumerate(code)]
    write_tfrecord(root / "curated" / "data" / "curated-00000-of-00001.tfrecord", [doc_to_example(d) for d in docs])
    (root / "sup").mkdir()
    with open(root / "sup" / "train.jsonl", "w") as fh:
        for i in range(80):
            rec = {"task": "qa" if i % 2 else "choice", "lang": "zh" if i % 3 else "en", "question": f"问题{i}：{poems[i % 60][:30]}",
                   "answer": "B" if i % 2 == 0 else f"答{i}"}
            if i % 2 == 0:
                rec["choices"] = ["甲", "乙", "丙", "丁"]
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    (root / "math").mkdir()
    (root / "math" / "MetaMathQA.json").write_text(json.dumps(
        [{"query": f"What is {i} + {i}?", "response": f"{i} + {i} = {2 * i}. The answer is: {2 * i}", "type": "GSM_Rephrased"}
         for i in range(80)]))
    cfg = load_config("configs/data/stages.py", [f"--config.tfds_data_dir={root / 'tfds'}",
                                                  f"--config.vocab={paths['llama_tokenizer']}",
                                                  f"--config.cache_dir={root / 'cache'}", "--config.sequence_length=64",
                                                  "--config.shuffle_buffer=50"])
    from ziya_jax.stages.tfds_builders import prepare
    for g in ("zh", "en", "code"):
        prepare("curated", str(root / "curated"), cfg.tfds_data_dir, g)
    prepare("supervised", str(root / "sup"), cfg.tfds_data_dir)
    prepare("metamath", str(root / "math"), cfg.tfds_data_dir)
    return dict(root=root, cfg=cfg, poems=poems)


def test_seqio_tasks_tokenize_templates_and_eos(stages_env):
    import seqio

    from ziya_jax.stages.build import register_tasks
    vocab = register_tasks(stages_env["cfg"])
    ex = next(seqio.get_mixture_or_task("ziya2_stage3_metamath").get_dataset(
        sequence_length=None, split="train", shuffle=False).as_numpy_iterator())
    assert ex["targets"][-1] == 2 and vocab.decode(ex["targets"][:-1].tolist()).startswith("Question:What is ")
    ex = next(seqio.get_mixture_or_task("ziya2_stage2_supervised").get_dataset(
        sequence_length=None, split="train", shuffle=False).as_numpy_iterator())
    assert ex["task"] in (b"qa", b"choice") and ("问题" in vocab.decode(ex["targets"].tolist()) or
                                               "Question:" in vocab.decode(ex["targets"].tolist()))
    zh = [vocab.decode(e["targets"][:-1].tolist()) for e in seqio.get_mixture_or_task("ziya2_stage1_zh").get_dataset(
        sequence_length=None, split="train", shuffle=False).as_numpy_iterator()]
    assert sorted(zh) == sorted(stages_env["poems"])
    assert "ziya2_stage3" in seqio.MixtureRegistry.names()


def test_stage_caches_deterministic_and_mixture_runs(stages_env):
    from tasks.ziya2 import stage_token_rates
    from ziya_jax.stages.build import StageError, build_task_cache, stage_mixture
    cfg = stages_env["cfg"]
    metas = {t: build_task_cache(t, cfg) for t in stage_token_rates(3, cfg)}
    first = (stages_env["root"] / "cache" / "ziya2_stage1_zh" / "tokens.i32").read_bytes()
    with pytest.raises(FileExistsError):
        build_task_cache("ziya2_stage1_zh", cfg)
    build_task_cache("ziya2_stage1_zh", cfg, overwrite=True)
    assert (stages_env["root"] / "cache" / "ziya2_stage1_zh" / "tokens.i32").read_bytes() == first
    assert metas["ziya2_stage1_zh"]["mask_documents"] and not metas["ziya2_stage2_supervised"]["mask_documents"]
    sup = PackedCache(stages_env["root"] / "cache" / "ziya2_stage2_supervised")
    assert (sup.segments[:, -1] == 0).all() and (sup.segments[:, :-1].max(1) >= 1).all()   # padded, whole examples
    mix = stage_mixture(3, cfg, global_batch=6)
    b = mix.host_batch(0)
    assert b["input_tokens"].shape == (6, 64)
    with pytest.raises(StageError, match="tokenized with 32000 pieces.*vocab_size 1024"):
        stage_mixture(1, cfg, 6, model_vocab_size=1024)


def test_source_bad_input(stages_env, tmp_path):
    from ziya_jax.stages.build import StageError, setting
    from ziya_jax.stages.tfds_builders import SourceError, prepare
    cfg = stages_env["cfg"]
    with pytest.raises(SourceError, match="no curated TFRecord files"):
        (tmp_path / "empty").mkdir()
        prepare("curated", str(tmp_path / "empty"), str(tmp_path / "tfds"), "zh")
    (tmp_path / "sup").mkdir()
    (tmp_path / "sup" / "a.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": "no answer"}\n')
    with pytest.raises(SourceError, match=r"a.jsonl:2: missing 'answer'"):
        prepare("supervised", str(tmp_path / "sup"), str(tmp_path / "tfds"))
    from ziya_jax.data.io import doc_to_example, write_tfrecord
    from ziya_jax.data.records import make_doc
    (tmp_path / "cur" / "data").mkdir(parents=True)
    write_tfrecord(tmp_path / "cur" / "data" / "x.tfrecord", [doc_to_example(make_doc("d1", "", lang="zh"))])
    with pytest.raises(SourceError, match="record 'd1' has no text"):
        prepare("curated", str(tmp_path / "cur"), str(tmp_path / "tfds"), "zh")
    empty = cfg.copy_and_resolve_references()
    empty.cache_dir = ""
    os.environ.pop("ZIYA_CACHE_DIR", None)
    with pytest.raises(StageError, match="set --config.cache_dir=PATH or the environment variable ZIYA_CACHE_DIR"):
        setting(empty, "cache_dir")
