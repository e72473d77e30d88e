"""The demo's raw corpus: real packaged text with realistic junk planted, plus a manifest of the plants.

Sources (fetched by `offline.ensure_offline_data`, nothing committed): Chinese from fortunes-zh
(proverbs, poetry, 道德经, 诗经), English from fortunes, the King James Bible and Botchan, code from
the Python standard library. Planted: exact duplicates (re-spaced and re-cased), near duplicates at
5-shingle Jaccard >= 0.8, URL duplicates with tracking parameters, Traditional-script copies, HTML
boilerplate, advertising paragraphs, contact details and ID numbers, emoji, mojibake, repeated
characters, Japanese text, very short and very long documents, and a file of bad records (malformed
JSON, invalid UTF-8, missing `text`) and a binary file. `manifest.json` lists what was planted
where, so tests can check each step's effect.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ziya_jax.data.offline import ensure_offline_data

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def _fortune_records(path: Path) -> list[str]:
    text = ANSI_RE.sub("", path.read_text(encoding="utf-8", errors="replace"))
    return [r.strip() for r in text.split("\n%\n") if r.strip()]


def _group_records(records: list[str], rng: random.Random, lo: int, hi: int) -> list[str]:
    """Consecutive runs of lo..hi records joined as paragraphs of one document."""
    docs, i = [], 0
    while i < len(records):
        k = rng.randint(lo, hi)
        docs.append("\n\n".join(records[i:i + k]))
        i += k
    return docs


def shingles(text: str, lang: str, n: int = 5) -> set:
    from ziya_jax.data.dedup import normalize_text
    if lang == "zh":
        t = normalize_text(text)
        return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def jaccard(a: str, b: str, lang: str) -> float:
    sa, sb = shingles(a, lang), shingles(b, lang)
    return len(sa & sb) / max(1, len(sa | sb))


def _perturb(text: str, lang: str, rng: random.Random, rate: float) -> str:
    if lang == "zh":
        chars = list(text)
        idx = [i for i, c in enumerate(chars) if "\u4e00" <= c <= "\u9fff"]
        for i in rng.sample(idx, max(1, int(len(idx) * rate))):
            chars[i] = rng.choice("的一是在不了有和人这中大为上个国我以要他")
        return "".join(chars)
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(len(words) * rate))):
        words[i] = rng.choice(["the", "a", "and", "very", "quite", "then"])
    return " ".join(words)


def build_demo_corpus(out_dir: str, seed: int = 0, code_files: int = 120) -> dict:
    """Write `out_dir/raw/**` and `out_dir/manifest.json`; returns the manifest."""
    import opencc
    rng = random.Random(seed)
    src = ensure_offline_data()
    out = Path(out_dir)
    raw = out / "raw"
    for sub in ("web_zh", "web_en", "books", "code", "bad"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    fort = src["fortunes"]

    zh_recs = _fortune_records(fort / "chinese")
    rng.shuffle(zh_recs)   # mix authors/topics, as a web page would not repeat one attribution line
    zh_docs = _group_records(zh_recs, rng, 3, 6)
    poems = _fortune_records(fort / "tang300") + _fortune_records(fort / "song100")
    en_recs = []
    for name in ("computers", "science", "wisdom", "literature", "people", "politics", "education", "fortunes",
                 "definitions", "humorists", "law", "medicine", "work", "platitudes"):
        if (fort / name).exists():
            en_recs += _fortune_records(fort / name)
    rng.shuffle(en_recs)
    en_docs = _group_records(en_recs, rng, 4, 9)
    kjv_chapters = [c.strip() for c in re.split(r"\n(?=[1-3]?\s?[A-Z][a-z]+(?: [A-Z][a-z]+)* \d+\n)",
                                                 src["kjv"].read_text(encoding="utf-8")) if c.strip()]
    botchan = src["botchan"].read_text(encoding="utf-8").split("\n")
    botchan_docs = ["\n".join(botchan[j:j + 40]).strip() for j in range(0, len(botchan), 40)]

    manifest: dict = {"seed": seed, "exact_duplicates": [], "near_duplicates": [], "url_duplicates": [],
                      "traditional": [], "privacy_strings": [], "ads": [], "html": [], "emoji": [],
                      "bad_records": {}, "files": {}}
    t2s, s2t = opencc.OpenCC("t2s"), opencc.OpenCC("s2t")

    def write_jsonl(rel: str, records: list[dict]) -> None:
        path = raw / rel
        with open(path, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        manifest["files"][rel] = len(records)

    def rid(rel: str, line: int) -> str:
        return f"{rel}:{line}"

    def plant_near(orig: str, lang: str, rates, original_id: str, extra: list, base: int, rel: str) -> None:
        """Append a perturbed copy at 5-shingle Jaccard >= 0.8 (trying gentler rates) and record it."""
        for rate in rates:
            cand = _perturb(orig, lang, rng, rate)
            j = jaccard(orig, cand, lang)
            if j >= 0.8:
                break
        if j >= 0.8 and cand != orig:
            extra.append({"text": cand, "url": "", "source": f"web_{lang}"})
            manifest["near_duplicates"].append({"original": original_id, "copy": rid(rel, base + len(extra)),
                                                "jaccard": round(j, 4)})

    # --- Chinese web-like documents with plants ---
    zh_out = []
    for n, text in enumerate(zh_docs):
        zh_out.append({"text": text, "url": f"https://zh.example.org/article/{n}", "source": "web_zh"})
    zh_out += [{"text": p, "url": f"https://poetry.example.cn/{n}", "source": "web_zh"} for n, p in enumerate(poems)]
    rel = "web_zh/part-0.jsonl"
    plants = rng.sample(range(len(zh_out)), 120)
    base = len(zh_out)
    extra = []
    for j, idx in enumerate(plants[:30]):                          # Traditional-script copies of new text
        simp = t2s.convert(zh_out[idx]["text"])
        trad = s2t.convert(simp)
        if trad != simp:
            zh_out[idx]["text"] = trad
            manifest["traditional"].append({"id": rid(rel, idx + 1), "simplified": simp})
    for idx in plants[30:50]:                                      # exact duplicates (spacing/case changes)
        extra.append({"text": zh_out[idx]["text"].replace("，", "， ") + " ", "url": "",
                      "source": "web_zh"})
        manifest["exact_duplicates"].append({"original": rid(rel, idx + 1), "copy": rid(rel, base + len(extra))})
    for idx in plants[50:80]:                                      # near duplicates
        plant_near(zh_out[idx]["text"], "zh", (0.02, 0.015, 0.01, 0.005), rid(rel, idx + 1), extra, base, rel)
    for idx in plants[80:95]:                                      # URL duplicates
        extra.append({"text": zh_out[idx]["text"] + "\n\n（转载）", "url": zh_out[idx]["url"] + "?utm_source=feed#top",
                      "source": "web_zh"})
        manifest["url_duplicates"].append({"original": rid(rel, idx + 1), "copy": rid(rel, base + len(extra))})
    pii_zh = [("联系电话：13812345678", "13812345678"), ("邮箱 zhangsan.demo@example.com", "zhangsan.demo@example.com"),
              ("身份证号 11010519491231002X", "11010519491231002X"), ("微信号：demo_wx_2024", "demo_wx_2024"),
              ("银行卡 6222 0212 3456 7898", "6222 0212 3456 7898")]
    for k, idx in enumerate(plants[95:105]):                       # privacy sentences
        pii, secret = pii_zh[k % len(pii_zh)]
        zh_out[idx]["text"] += f"\n\n如有疑问请联系我们。{pii}。"
        manifest["privacy_strings"].append({"id": rid(rel, idx + 1), "pii": pii, "secret": secret})
    for idx in plants[105:112]:                                    # advertising paragraphs
        zh_out[idx]["text"] += "\n\n限时优惠！点击购买，全场包邮，加微信领取优惠券。"
        manifest["ads"].append(rid(rel, idx + 1))
    for idx in plants[112:120]:                                    # emoji
        zh_out[idx]["text"] = zh_out[idx]["text"].replace("。", "。😀", 2)
        manifest["emoji"].append(rid(rel, idx + 1))
    junk_zh = [
        {"text": "哈" * 40 + "！" * 20, "url": "", "source": "web_zh"},
        {"text": "好", "url": "", "source": "web_zh"},
        {"text": "首页 | 登录注册 | 网站地图\n\n" + "版权所有 © 2024 示例网\n\n" + "上一篇 下一篇 返回顶部", "url": "",
         "source": "web_zh"},
        {"text": "锟斤拷锟斤拷烫烫烫" * 20 + "这是乱码文本。", "url": "", "source": "web_zh"},
        {"text": "これは日本語の文章です。ひらがなとカタカナが含まれています。東京は日本の首都です。", "url": "", "source": "web_zh"},
    ]
    write_jsonl(rel, zh_out + extra + junk_zh)

    # --- English web-like documents ---
    rel = "web_en/part-0.jsonl.gz"
    en_out = [{"text": t, "url": f"http://www.example.com/post/{n}/", "source": "web_en"} for n, t in enumerate(en_docs)]
    plants = rng.sample(range(len(en_out)), 100)
    base = len(en_out)
    extra = []
    for idx in plants[:20]:
        extra.append({"text": en_out[idx]["text"].upper(), "url": "", "source": "web_en"})
        manifest["exact_duplicates"].append({"original": rid(rel, idx + 1), "copy": rid(rel, base + len(extra))})
    for idx in plants[20:50]:
        plant_near(en_out[idx]["text"], "en", (0.02, 0.015, 0.01), rid(rel, idx + 1), extra, base, rel)
    for idx in plants[50:60]:
        extra.append({"text": en_out[idx]["text"] + "\n\n(reposted)",
                      "url": en_out[idx]["url"].replace("http://www.", "https://") + "?utm_campaign=x",
                      "source": "web_en"})
        manifest["url_duplicates"].append({"original": rid(rel, idx + 1), "copy": rid(rel, base + len(extra))})
    pii_en = [("Contact me at john.demo@example.com", "john.demo@example.com"), ("Call (555) 123-4567 today", "(555) 123-4567"),
              ("My SSN is 123-45-6789", "123-45-6789"), ("Server at 192.168.10.24 is open", "192.168.10.24")]
    for k, idx in enumerate(plants[60:70]):
        pii, secret = pii_en[k % len(pii_en)]
        en_out[idx]["text"] += f"\n\nFor questions, write to us. {pii}."
        manifest["privacy_strings"].append({"id": rid(rel, idx + 1), "pii": pii, "secret": secret})
    for idx in plants[70:78]:
        en_out[idx]["text"] += "\n\nLIMITED TIME OFFER! Click here and buy now with free shipping!"
        manifest["ads"].append(rid(rel, idx + 1))
    for idx in plants[78:86]:
        paras = en_out[idx]["text"].split("\n\n")
        en_out[idx]["text"] = ("<html><body><div class=\"nav\"><a href=\"/\">Home</a> | <a href=\"/about\">About</a>"
                               "</div>\n\n" + "\n\n".join(f"<p>{p}</p>" for p in paras) +
                               "\n\n<div class=\"footer\">All rights reserved. Privacy Policy | Terms of Use</div>"
                               "</body></html>")
        manifest["html"].append(rid(rel, idx + 1))
    junk_en = [
        {"text": "Click here! " * 30, "url": "", "source": "web_en"},
        {"text": "Ok.", "url": "", "source": "web_en"},
        {"text": "CafÃ© rÃ©sumÃ© â€œqualityâ€ text that was decoded twice â€™ and is garbled " * 5, "url": "",
         "source": "web_en"},
        {"text": "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 10, "url": "", "source": "web_en"},
        {"text": "Das ist ein deutscher Text über das Wetter in Berlin und die Geschichte der Stadt. " * 4, "url": "",
         "source": "web_en"},
        {"text": " ".join(rng.choice(en_recs[0].split() or ["word"]) for _ in range(200_000)), "url": "",
         "source": "web_en"},
    ]
    recs = en_out + extra + junk_en
    import gzip
    with gzip.open(raw / rel, "wt", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    manifest["files"][rel] = len(recs)

    # --- books: KJV chapters and Botchan ---
    write_jsonl("books/kjv.jsonl", [{"text": c, "source": "books", "meta": {"book": "kjv"}} for c in kjv_chapters])
    write_jsonl("books/botchan.jsonl", [{"text": t, "source": "books", "meta": {"book": "botchan"}}
                                        for t in botchan_docs if t])

    # --- code: standard-library files as plain files ---
    stdlib = Path(src["stdlib"])
    candidates = sorted(p for p in stdlib.glob("*.py") if 2_000 < p.stat().st_size < 60_000)
    for p in rng.sample(candidates, min(code_files, len(candidates))):
        (raw / "code" / p.name).write_bytes(p.read_bytes())
        manifest["files"][f"code/{p.name}"] = 1

    # --- bad input ---
    bad = raw / "bad" / "broken.jsonl"
    with open(bad, "wb") as fh:
        fh.write(json.dumps({"text": "A fine record among broken ones, long enough to pass every rule easily. " * 3,
                             "source": "bad"}).encode() + b"\n")
        fh.write(b'{"text": "unterminated\n')
        fh.write(b'{"text": "bad bytes \xff\xfe here"}\n')
        fh.write(b'{"url": "http://example.com/no-text"}\n')
        fh.write(b'["not", "an", "object"]\n')
        fh.write(b'{"text": ""}\n')
    manifest["bad_records"] = {"bad/broken.jsonl:2": "malformed_json", "bad/broken.jsonl:3": "invalid_utf8",
                               "bad/broken.jsonl:4": "missing_text", "bad/broken.jsonl:5": "missing_text",
                               "bad/broken.jsonl:6": "empty_after_cleaning", "bad/blob.bin": "binary_file"}
    (raw / "bad" / "blob.bin").write_bytes(bytes(range(256)) * 64)
    manifest["files"].update({"bad/broken.jsonl": 6, "bad/blob.bin": 1})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest


def train_demo_models(lm_dir: str) -> None:
    """The demo's zh and en scoring models, trained with `lmplz` on `reference_corpora()`."""
    from ziya_jax.data.lm_train import reference_cleaner, train_language_model
    for lang, corpus in reference_corpora().items():
        train_language_model(corpus, lang, lm_dir, preprocess=reference_cleaner(lang))


def reference_corpora() -> dict[str, str]:
    """Reference text for the demo's scoring models (kept apart from the scored documents where possible)."""
    src = ensure_offline_data()
    return {"zh": f"{src['fortunes']}/tang300,{src['fortunes']}/song100,{src['fortunes']}/chinese",
            "en": f"{src['botchan']},{src['fortunes']}/cookie,{src['fortunes']}/literature"}

