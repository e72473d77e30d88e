"""Data factory steps on real packaged text (fortunes-zh, fortunes, KJV, Botchan, stdlib)."""
import gzip
import random

import pytest

from ziya_jax.data import dedup as dd
from ziya_jax.data.demo_corpus import _fortune_records, jaccard
from ziya_jax.data.evaluate import SheetError, export_sheet, gate, read_sheet
from ziya_jax.data.filters import FilterConfig, RuleFilter
from ziya_jax.data.io import decode_text, encode_example, read_file
from ziya_jax.data.offline import ensure_offline_data
from ziya_jax.data.preprocess import Preprocessor, clean_characters
from ziya_jax.data.records import make_doc


@pytest.fixture(scope="module")
def src():
    return ensure_offline_data()


@pytest.fixture(scope="module")
def zh_records(src):
    return _fortune_records(src["fortunes"] / "chinese")


def test_preprocess_cleans_converts_and_identifies(src, zh_records):
    pre = Preprocessor()
    raw = (src["fortunes"] / "chinese").read_text(encoding="utf-8")
    assert "\x1b[" in raw                       # the package's ANSI colours are really there
    trad = next(r for r in zh_records if "詩" in r or "風" in r or "說" in r)
    doc, rej = pre(make_doc("t", trad + " 😀\u200b\x07"))
    assert rej is None and doc["lang"] == "zh"
    assert "\x1b" not in doc["text"] and "😀" not in doc["text"] and "\u200b" not in doc["text"]
    assert "詩" not in doc["text"] and "風" not in doc["text"] and "說" not in doc["text"]
    kjv = src["kjv"].read_text(encoding="utf-8")[:3000]
    doc, _ = pre(make_doc("e", kjv))
    assert doc["lang"] == "en"
    _, rej = pre(make_doc("j", "これは日本語の文章です。ひらがなとカタカナが含まれています。"))
    assert rej["reason"] == "language_not_kept"
    _, rej = pre(make_doc("d", "Das ist ein deutscher Text über das Wetter in Berlin und die Geschichte der Stadt."))
    assert rej["reason"] == "language_not_kept" and rej["detail"] == "de"
    code = (src["stdlib"] / "bisect.py").read_text()
    doc, _ = pre(make_doc("c", code, lang="python"))
    assert doc["lang"] == "code" and doc["text"].startswith("```python\n") and doc["text"].endswith("\n```")
    assert "ＡＢＣ１２３" not in clean_characters("ＡＢＣ１２３，好")


def test_reader_counts_bad_input(tmp_path):
    p = tmp_path / "a.jsonl.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b'{"text": "ok", "url": "u"}\n{"text": \n{"text": "bad \xff"}\n{"no": 1}\n')
    out = list(read_file(str(p), str(tmp_path)))
    assert [ok for ok, _ in out] == [True, False, False, False]
    assert [r.get("reason") for ok, r in out if not ok] == ["malformed_json", "invalid_utf8", "missing_text"]
    assert out[0][1]["id"] == "a.jsonl.gz:1"
    (tmp_path / "x.bin").write_bytes(b"\x00\x01\x02" * 100)
    assert next(read_file(str(tmp_path / "x.bin"), str(tmp_path)))[1]["reason"] == "binary_file"
    text, enc = decode_text("中文编码".encode("gb18030"))
    assert (text, enc) == ("中文编码", "gb18030")


def test_rules_at_three_levels(src):
    rf = RuleFilter()
    rules = rf.describe()
    assert len(rules) >= 30
    assert {r["level"] for r in rules} == {"document", "paragraph", "sentence"}
    chapter = src["kjv"].read_text(encoding="utf-8").split("\n\n")
    body = "\n".join(chapter[1:6])
    doc, frags = rf(make_doc("k", body, lang="en"))
    assert doc is not None and not frags
    spam = make_doc("s", "buy cheap watches " * 200, lang="en")
    out, drops = rf(spam)
    assert out is None and drops[0]["reason"] in {"top_ngram_fraction", "dup_ngram_fraction", "stopwords"}
    zh = "天下皆知美之为美，斯恶已。皆知善之为善，斯不善已。故有无相生，难易相成，长短相形，高下相倾。"
    doc, frags = rf(make_doc("z", zh + "\n\n限时优惠！点击购买，全场包邮。\n\n" + zh[::-1] +
                             "如有疑问请联系：13812345678。身份证号 11010519491231002X。", lang="zh"))
    reasons = {f["reason"] for f in frags}
    assert {"para_advertising", "sent_phone", "sent_id_number"} <= reasons
    assert "13812345678" not in doc["text"] and "点击购买" not in doc["text"] and "11010519491231002X" not in doc["text"]
    assert doc["text"].startswith(zh)
    # an ID with a wrong checksum is not personal data
    doc, frags = rf(make_doc("z2", zh + zh[::-1] + "编号 110105194912310021。", lang="zh"))
    assert doc is not None and not frags
    with pytest.raises(ValueError, match="unknown rules"):
        RuleFilter(FilterConfig(disabled=("no_such_rule",)))


def test_minhash_lsh_finds_near_duplicates_of_real_text(zh_records, src):
    cfg = dd.DedupConfig()
    mh = dd.MinHasher(cfg)
    rng = random.Random(0)
    base = "\n".join(zh_records[100:106])
    chars = list(base)
    for i in rng.sample(range(len(chars)), len(chars) // 100):
        chars[i] = "的"
    near = "".join(chars)
    assert jaccard(base, near, "zh") >= 0.8
    other = "\n".join(zh_records[300:306])
    sig = lambda t, lang="zh": mh.signature(dd.shingle_hashes(t, lang, cfg))
    assert dd.estimated_jaccard(sig(base), sig(near)) >= cfg.jaccard_threshold
    assert dd.estimated_jaccard(sig(base), sig(other)) < 0.2
    assert any(a == b for a, b in zip(mh.bands(sig(base)), mh.bands(sig(near))))
    edges = dd.verify_bucket([("b", sig(near)), ("a", sig(base)), ("c", sig(other))], "minhash", cfg)
    assert edges == [("a", "b")]
    assert dd.clusters_to_survivors([("a", "b"), ("c", "b"), ("d", "e")]) == [("b", "a"), ("c", "a"), ("e", "d")]
    assert round(dd.candidate_probability(0.8, 14, 8), 3) == 0.924
    en = src["botchan"].read_text(encoding="utf-8")[:4000]
    s1, s2 = dd.simhash(dd.shingle_hashes(en, "en", cfg)), dd.simhash(dd.shingle_hashes(en + " The end.", "en", cfg))
    assert dd.hamming(s1, s2) <= 3
    assert set(dd.simhash_bands(s1, 3)) & set(dd.simhash_bands(s2, 3))


def test_url_and_text_keys_and_bloom():
    assert dd.normalize_url("https://WWW.Example.com/a/?utm_source=x&b=2#frag") == dd.normalize_url("http://example.com/a?b=2")
    assert dd.text_key("Hello,  World!") == dd.text_key("hello world")
    bloom = dd.BloomFilter(10_000, 1e-6)
    assert not any(bloom.add(f"k{i}") for i in range(10_000))
    assert all(bloom.add(f"k{i}") for i in range(0, 10_000, 7))


def test_perplexity_model_trained_with_lmplz(tmp_path, src):
    from ziya_jax.data.lm_train import train_language_model
    from ziya_jax.data.scoring import PerplexityScorer, find_models, percentile_cutoffs
    train_language_model(str(src["botchan"]), "en", str(tmp_path), order=4, vocab_size=2000)
    scorer = PerplexityScorer(find_models(str(tmp_path), ("en",)))
    lines = src["kjv"].read_text(encoding="utf-8").split("\n")[200:260]
    real = "\n".join(lines)
    rng = random.Random(1)
    words = real.split()
    rng.shuffle(words)
    assert scorer.perplexity(real, "en") < 0.8 * scorer.perplexity(" ".join(words), "en")
    assert percentile_cutoffs([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0], (0.3, 0.6)) == (3.0, 6.0)


def test_annotation_sheet_roundtrip_and_gate(tmp_path):
    docs = [{"id": f"d{i}", "text": "t", "lang": "en", "source": "s", "quality": "high"} for i in range(1000)]
    sheet = tmp_path / "sheet.csv"
    export_sheet(docs, str(sheet))
    import csv
    rows = list(csv.DictReader(open(sheet, encoding="utf-8")))
    for i, r in enumerate(rows):
        r.update(coherence="1" if i < 3 else "0", readability="0", toxic="0")
    with open(sheet, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    human = read_sheet(str(sheet))
    assert human["problem_rate_per_1000"]["coherence"] == 3.0 and human["ok_fraction"]["coherence"] == 0.997
    metrics = {"level1_per_1000": {"privacy_word_rate": 0.0}}
    assert gate(metrics, human, 1.0)["failures"] == ["human_coherence=3.0"]
    rows[5]["toxic"] = ""
    with open(sheet, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(SheetError, match=r"sheet.csv:7 \(id d5\): toxic"):
        read_sheet(str(sheet))


def test_example_encoding_matches_protobuf():
    tf = pytest.importorskip("tensorflow")
    raw = encode_example({"text": "中文 text", "ppl": 12.5, "n": 3})
    ex = tf.train.Example.FromString(raw)
    assert ex.features.feature["text"].bytes_list.value[0].decode() == "中文 text"
    assert ex.features.feature["ppl"].float_list.value[0] == 12.5
    assert ex.features.feature["n"].int64_list.value[0] == 3


def test_class_tables_and_runs_match_the_regexes():
    """The code-point tables and run finder give exactly what findall / REPEAT_RUN_RE give."""
    import random

    from ziya_jax.data.charclass import codepoints, count_class, count_classes
    from ziya_jax.data.filters import DIGIT_RE, REPEAT_RUN_RE, SYMBOL_RE, repeated_run
    from ziya_jax.data.preprocess import HAN_RE, KANA_HANGUL_RE, LATIN_RE
    rng = random.Random(0)
    alphabet = "aZ9０١ 　\t\n汉字𠀀-=_.*─━·!！？★⚡\u200b\x00é" + "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(40))
    alphabet = "".join(c for c in alphabet if not 0xD800 <= ord(c) <= 0xDFFF)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) * (rng.randint(1, 14) if rng.random() < 0.2 else 1) for _ in range(80))
        cps = codepoints(text)
        for pattern in (HAN_RE, DIGIT_RE, SYMBOL_RE):
            assert count_class(cps, pattern) == len(pattern.findall(text))
        assert count_classes(text, (HAN_RE, LATIN_RE, KANA_HANGUL_RE)) == [
            len(p.findall(text)) for p in (HAN_RE, LATIN_RE, KANA_HANGUL_RE)]
        m = REPEAT_RUN_RE.search(text)
        assert repeated_run(cps) == (m.group(0)[:12] if m else None)


def test_top_ngram_ties_do_not_depend_on_hash_values():
    """Tied most-frequent n-grams: the longest counts, whatever the (per-process) word hashes are, and the
    upper-bound shortcut for 3/4-grams gives what computing them gives."""
    import numpy as np

    from ziya_jax.data.filters import DocStats, FilterConfig, _top_ngram, _top_ngram_fraction, _top_ngrams
    text = ("a b " * 6 + "extraordinarily lengthy " * 6 + "filler words here and there now").split()
    stats = DocStats(" ".join(text), "en")
    h, lengths = stats.units
    r, top = _top_ngram(stats.units, 2)
    expected = 6 * (len("extraordinarily") + len("lengthy")) / int(lengths.sum())   # tied with "a b" (6x)
    assert top == 6 and abs(r - expected) < 1e-12
    rng = np.random.default_rng(0)
    for _ in range(5):      # other hash values for the same words: same answer
        mapping = {w: rng.integers(0, 2**63) for w in set(stats.words)}
        units = (np.array([mapping[w] for w in stats.words], dtype=np.uint64), lengths)
        assert _top_ngram_fraction(units, 2) == r
    cfg = FilterConfig(max_top_ngram_fraction=(0.99, 0.05, 0.05))
    ref = next((f"{n}-gram {x:.2f}" for n, lim in zip((2, 3, 4), cfg.max_top_ngram_fraction)
                if (x := _top_ngram_fraction(stats.units, n)) > lim), None)
    assert _top_ngrams(DocStats(" ".join(text), "en"), cfg) == ref is not None

