"""Tokens per Chinese character and per English word, before and after extension (paper: ~34% better)."""
from __future__ import annotations

import re
from typing import Iterable

from ziya_jax.tokenizer.extend import is_chinese_char

EN_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
ZH_DOC_MIN_HAN = 0.3    # a document is Chinese when at least 30% of its non-space characters are Han


def _han_fraction(text: str) -> tuple[int, float]:
    chars = [c for c in text if not c.isspace()]
    han = sum(1 for c in chars if is_chinese_char(c))
    return han, han / max(1, len(chars))


def efficiency_report(base: str, new: str, texts: Iterable[str]) -> dict:
    import sentencepiece as spm
    sps = {"base": spm.SentencePieceProcessor(model_file=base), "new": spm.SentencePieceProcessor(model_file=new)}
    tok = {k: {"zh": 0, "en": 0} for k in sps}
    han_chars = en_words = zh_docs = en_docs = 0
    for text in texts:
        han, frac = _han_fraction(text)
        if frac >= ZH_DOC_MIN_HAN:
            lang, zh_docs, han_chars = "zh", zh_docs + 1, han_chars + han
        else:
            words = len(EN_WORD_RE.findall(text))
            if words == 0:
                continue
            lang, en_docs, en_words = "en", en_docs + 1, en_words + words
        for k, sp in sps.items():
            tok[k][lang] += len(sp.encode(text))
    out = {"base": base, "new": new, "zh_documents": zh_docs, "chinese_characters": han_chars,
           "en_documents": en_docs, "english_words": en_words}
    for lang, unit in (("zh", han_chars), ("en", en_words)):
        if unit:
            before, after = tok["base"][lang] / unit, tok["new"][lang] / unit
            key = "per_chinese_char" if lang == "zh" else "per_english_word"
            out[f"tokens_{key}"] = {"base": round(before, 4), "new": round(after, 4)}
            out[f"{lang}_token_reduction"] = round(1 - after / before, 4)
    return out
