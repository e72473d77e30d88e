"""Step 1, preprocessing: clean characters, identify the language (keep zh/en), Traditional -> Simplified.

Order: strip ANSI escapes and control/format characters, drop emoji and private-use symbols, fold
full-width ASCII, normalise newlines and Unicode (NFC); then language ID by CLD2 plus a CJK-ratio rule
(short Chinese text is where CLD2 is least reliable); then OpenCC `t2s` on Chinese. Code files
(language known from the extension) skip LID and conversion and are wrapped in a Markdown fence
labelled with their language, as in the paper's Appendix A.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from ziya_jax.data.charclass import count_classes
from ziya_jax.data.records import Doc, drop

STEP = "preprocess"

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]")
CONTROL_CLASS = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufff9-\ufffb]"
EMOJI_CLASS = (
    "[\U0001F000-\U0001FAFF\U0001FC00-\U0001FFFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE00-\uFE0F"
    "\U000E0000-\U000E007F\u20E3\uE000-\uF8FF\U000F0000-\U0010FFFF]")
DELETE_RE = re.compile(CONTROL_CLASS[:-1] + EMOJI_CLASS[1:])   # both classes, removed in one pass
FULLWIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")
FULLWIDTH_ASCII = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)
                   if chr(c - 0xFEE0).isalnum()}  # letters and digits only; keep CJK punctuation
FULLWIDTH_ASCII[0x3000] = 0x20
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
LATIN_RE = re.compile(r"[A-Za-z]")
KANA_HANGUL_RE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff]")
MULTI_BLANK_RE = re.compile(r"[ \t]+\n")
MANY_NEWLINES_RE = re.compile(r"\n{3,}")
CODE_LANGS = {"python", "c", "cpp", "java", "javascript", "typescript", "go", "rust", "sql", "bash", "ruby", "php",
              "scala", "kotlin", "csharp", "swift", "lua", "r", "perl", "objectivec", "code"}


@dataclass(frozen=True)
class PreprocessConfig:
    keep_languages: tuple[str, ...] = ("zh", "en")
    han_ratio_zh: float = 0.3          # Han / (Han + Latin letters) at or above this -> zh
    kana_hangul_max: float = 0.05      # more kana/hangul than this -> ja/ko, not zh
    min_chars: int = 1
    max_chars: int = 1_000_000
    max_replacement_ratio: float = 0.01  # U+FFFD share above this -> garbled
    traditional_to_simplified: bool = True
    fence_code: bool = True
    code_languages: tuple[str, ...] = field(default_factory=lambda: tuple(sorted(CODE_LANGS)))


def clean_characters(text: str, code: bool = False) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x1b" in text:
        text = ANSI_RE.sub("", text)
    text = DELETE_RE.sub("", text)                 # control/format characters, emoji, private use
    text = unicodedata.normalize("NFC", text)
    if not code:                                   # each pass only where it can change something
        if FULLWIDTH_RE.search(text):
            text = text.translate(FULLWIDTH_ASCII)
        if " \n" in text or "\t\n" in text:
            text = MULTI_BLANK_RE.sub("\n", text)
        if "\n\n\n" in text:
            text = MANY_NEWLINES_RE.sub("\n\n", text)
    return text.strip("\n ") if not code else text.strip("\n")


def identify_language(text: str, cfg: PreprocessConfig) -> str:
    """'zh', 'en' or another CLD2 code ('un' if unknown)."""
    sample = text[:20000]
    han, latin, other = count_classes(sample, (HAN_RE, LATIN_RE, KANA_HANGUL_RE))
    if han + latin + other == 0:
        return "un"
    if other / (han + latin + other) > cfg.kana_hangul_max:
        return "ja/ko"
    if han / (han + latin) >= cfg.han_ratio_zh:
        return "zh"
    import pycld2
    try:
        reliable, _, details = pycld2.detect(sample, bestEffort=True)
    except pycld2.error:
        return "un"
    code = details[0][1]
    if code.startswith("zh"):
        return "zh"
    if code == "en" or (code == "un" and latin / max(len(sample), 1) > 0.5):
        return "en"
    return code


class Preprocessor:
    """Callable per document: returns (doc, None) or (None, drop record)."""

    def __init__(self, cfg: PreprocessConfig | None = None):
        self.cfg = cfg or PreprocessConfig()
        self._t2s = None

    @property
    def t2s(self):
        if self._t2s is None:
            import opencc
            self._t2s = opencc.OpenCC("t2s")
        return self._t2s

    def __call__(self, doc: Doc) -> tuple[Doc | None, Doc | None]:
        cfg = self.cfg
        lang = (doc.get("lang") or "").lower()
        is_code = lang in cfg.code_languages
        text = doc["text"]
        if len(text) > cfg.max_chars:
            return None, drop(doc, STEP, "too_long", detail=f"{len(text)} chars > {cfg.max_chars}")
        if text.count("\ufffd") > cfg.max_replacement_ratio * max(len(text), 1):
            return None, drop(doc, STEP, "garbled_encoding", detail=f"{text.count(chr(0xfffd))} U+FFFD")
        text = clean_characters(text, code=is_code)
        if len(text.strip()) < cfg.min_chars:
            return None, drop(doc, STEP, "empty_after_cleaning")
        out = dict(doc)
        if is_code:
            if cfg.fence_code and not text.startswith("```"):
                text = f"```{lang}\n{text}\n```"
            out.update(text=text, lang="code", meta=_add_meta(doc.get("meta", ""), code_language=lang))
            return out, None
        detected = identify_language(text, cfg)
        if detected not in cfg.keep_languages:
            return None, drop(doc, STEP, "language_not_kept", detail=detected)
        if detected == "zh" and cfg.traditional_to_simplified:
            text = self.t2s.convert(text)
        out.update(text=text, lang=detected)
        return out, None


def _add_meta(meta: str, **kv) -> str:
    import json
    try:
        obj = json.loads(meta) if meta else {}
    except ValueError:
        obj = {"original_meta": meta}
    if not isinstance(obj, dict):
        obj = {"original_meta": obj}
    obj.update(kv)
    return json.dumps(obj, ensure_ascii=False)
