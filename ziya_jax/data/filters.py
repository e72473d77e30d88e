"""Step 3, rule-based filtering at three levels, in the paper's order: document -> paragraph -> sentence.

Document rules (content length and format) drop the whole document. Paragraph and sentence rules
(toxicity, advertising, boilerplate, HTML, privacy) remove the offending fragment; the fragment is
kept in `rejected/` with its rule, and a document left too short afterwards is dropped. Every rule has
a name that appears in the reasons; thresholds live in `FilterConfig` (overridable from the command
line) and word lists are files (`configs/data/wordlists/*.txt`, one term per line, `#` comments).

English rules follow Gopher/C4 practice; Chinese documents use character-level variants where
word-level rules do not apply (no spaces between words).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ziya_jax.data.charclass import codepoints, count_class
from ziya_jax.data.preprocess import HAN_RE
from ziya_jax.data.records import Doc, drop

STEP = "filter"
WORDLIST_DIR = Path(__file__).resolve().parents[2] / "configs" / "data" / "wordlists"

DIGIT_RE = re.compile(r"\d")
SPACE_RE = re.compile(r"\s")
URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"'，。）)]+", re.IGNORECASE)
HTML_TAG_RE = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>|&(?:nbsp|amp|lt|gt|quot|#\d{2,5});")
JS_RE = re.compile(r"\b(?:function\s*\(|var\s+\w+\s*=|document\.write|window\.location|<script|\$\(document\))")
LOREM_RE = re.compile(r"lorem ipsum", re.IGNORECASE)
MOJIBAKE_RE = re.compile(r"(?:Ã[\x80-\xbf]|Â[\x80-\xbf ]|â€[\x80-\x9f™œ¦”“˜]|ï¿½|锟斤拷|烫烫烫|屯屯屯)")
REPEAT_RUN_RE = re.compile(r"([^\s\-=_.*─━·])\1{9,}")
BULLET_RE = re.compile(r"^[ \t]*(?:[•·●▪■◆◇○\-*]|\d+[.)、])[ \t]", re.MULTILINE)
ELLIPSIS_END_RE = re.compile(r"(?:\.\.\.|…)[ \t]*$", re.MULTILINE)
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CN_MOBILE_RE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
PHONE_RE = re.compile(r"(?<!\d)(?:\+?\d{1,3}[-. ]?)?(?:\(\d{2,4}\)|\d{3,4})[-. ]\d{3,4}[-. ]\d{4}(?!\d)")
CN_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![0-9A-Za-z])")
SSN_RE = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){15,18}\d(?!\d)")
IPV4_RE = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
IM_ID_RE = re.compile(r"(?:QQ|qq|微信|微信号|wechat|WeChat|vx|VX)\s*[:：号]?\s*[A-Za-z0-9_-]{5,}")
PARA_SPLIT_RE = re.compile(r"\n\s*\n")
SENT_SPLIT_RE = re.compile(r"(?<=[。！？；!?])|(?<=[.;])(?=\s)")
PRIVACY_ANY_RE = re.compile("|".join(r.pattern for r in (EMAIL_RE, CN_MOBILE_RE, PHONE_RE, CN_ID_RE, SSN_RE, CARD_RE,
                                                            IPV4_RE, IM_ID_RE)))
NO_ALPHA_TOKEN_RE = re.compile(r"(?<!\S)[^\sA-Za-z\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF]+(?!\S)")
SYMBOL_RE = re.compile(r"[^\w\s.,;:!?'\"()\[\]{}\-–—/\\，。、；：！？“”‘’（）《》【】…·「」『』〈〉<>@#%&*+=~`^|$]")
PRIVACY_HINT_RE = re.compile(r"@|\d[\d .()+-]{6,}\d|qq|wechat|vx|微信")
EN_STOPWORDS = frozenset("the be to of and that have with".split())


def load_wordlist(name: str, directory: Path | None = None) -> tuple[str, ...]:
    path = (directory or WORDLIST_DIR) / name
    if not path.exists():
        raise FileNotFoundError(f"word list {path} not found; create it (one term per line) or set "
                                "--config.filter.wordlist_dir")
    terms = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            terms.append(line)
    return tuple(terms)


class TermMatcher:
    """Case-insensitive search for a list of terms: `str.find` per term (much faster than a regex
    alternation); Latin terms must sit on word boundaries, Chinese terms match anywhere."""

    def __init__(self, terms: tuple[str, ...]):
        self.terms = tuple(sorted({t.lower() for t in terms}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def _hits(self, low: str, term: str):
        start = low.find(term)
        while start >= 0:
            end = start + len(term)
            if not term.isascii() or ((start == 0 or not low[start - 1].isalnum()) and
                                      (end == len(low) or not low[end].isalnum())):
                yield start
            start = low.find(term, start + 1)

    def search(self, text: str, low: str | None = None) -> str | None:
        low = text.lower() if low is None else low
        for t in self.terms:
            if t in low and next(self._hits(low, t), None) is not None:
                return t
        return None

    def count(self, text: str, low: str | None = None) -> int:
        low = text.lower() if low is None else low
        return sum(sum(1 for _ in self._hits(low, t)) for t in self.terms if t in low)


@dataclass(frozen=True)
class FilterConfig:
    wordlist_dir: str = ""
    # document level: length and format
    min_chars_zh: int = 30
    min_words_en: int = 20
    min_chars_code: int = 20
    max_chars: int = 500_000
    mean_word_len_range: tuple[float, float] = (3.0, 10.0)
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stopwords: int = 2
    min_han_ratio_zh: float = 0.3
    max_digit_ratio: float = 0.3
    max_special_ratio: float = 0.3
    max_dup_line_fraction: float = 0.3
    max_dup_line_char_fraction: float = 0.2
    max_dup_para_fraction: float = 0.3
    max_top_ngram_fraction: tuple[float, float, float] = (0.2, 0.18, 0.16)   # 2/3/4-grams (chars for zh)
    max_dup_ngram_fraction: float = 0.15       # text inside repeated n-grams (5 words; 10 characters for zh)
    dup_ngram_n_en: int = 5
    dup_ngram_n_zh: int = 10
    max_html_tag_ratio: float = 0.05
    max_mojibake_per_1k: float = 1.0
    max_url_char_ratio: float = 0.2
    max_short_line_fraction_en: float = 0.8
    short_line_chars: int = 10
    max_toxic_per_1k_chars: float = 1.0
    # paragraph / sentence level
    max_para_symbol_ratio: float = 0.5
    max_para_html_ratio: float = 0.3
    min_remaining_fraction: float = 0.3
    disabled: tuple[str, ...] = ()


@dataclass
class Rule:
    name: str
    level: str                      # document | paragraph | sentence
    langs: tuple[str, ...]          # languages it applies to
    check: Callable[..., str | None]  # returns a detail string when the rule fires
    description: str = ""


@dataclass
class DocStats:
    """Counts computed once per document and shared by the document rules."""
    text: str
    lang: str
    words: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.low = self.text.lower()
        self.lines = self.text.split("\n")
        self.stripped = list(map(str.strip, self.lines))
        self.words = self.low.split() if self.lang != "zh" else []       # whitespace tokens, as Gopher
        self.nonspace = max(1, len("".join(self.text.split())))
        self._units = None
        self._cps = None
        self.gram_cache: dict[int, np.ndarray] = {}
        self._counts: dict[str, int] = {}

    @property
    def cps(self) -> np.ndarray:
        if self._cps is None:
            self._cps = codepoints(self.text)
        return self._cps

    def count(self, pattern: re.Pattern) -> int:
        """Characters of the text in a one-character class (cached per class)."""
        if pattern.pattern not in self._counts:
            self._counts[pattern.pattern] = count_class(self.cps, pattern)
        return self._counts[pattern.pattern]

    @property
    def units(self) -> tuple[np.ndarray, np.ndarray]:
        """(unit hashes, unit lengths): characters for zh, words otherwise (for n-gram statistics)."""
        if self._units is None:
            if self.lang == "zh":
                compact = "".join(self.text.split())
                h = np.frombuffer(compact.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
                self._units = (h, np.ones(len(h), dtype=np.int64))
            else:
                words = self.words   # hash() is salted per process, which is fine within one document
                h = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
                self._units = (h, np.fromiter(map(len, words), dtype=np.int64, count=len(words)))
        return self._units


_RUN_CHAR_RE = re.compile(REPEAT_RUN_RE.pattern[1:REPEAT_RUN_RE.pattern.index("]") + 1])   # the run's char class


def repeated_run(cps: np.ndarray) -> str | None:
    """REPEAT_RUN_RE.search(text).group(0)[:12] (the leftmost run of 10+ equal allowed characters)."""
    n = len(cps)
    if n < 10:
        return None
    change = np.flatnonzero(cps[1:] != cps[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [n]]))
    for i in np.flatnonzero(lengths >= 10):
        ch = chr(cps[starts[i]])
        if _RUN_CHAR_RE.match(ch):
            return ch * min(12, int(lengths[i]))
    return None


# Literals without which a pattern cannot match: a cheap `in` test skips the regex scan.
JS_HINTS = ("function", "var ", "document.", "window.", "<script", "$(")
MOJIBAKE_HINTS = ("Ã", "Â", "â€", "ï¿½", "锟斤拷", "烫烫烫", "屯屯屯")


def _markup_chars(text: str) -> int:
    """Characters in HTML tags and entities."""
    if "<" not in text and "&" not in text:
        return 0
    return sum(map(len, HTML_TAG_RE.findall(text)))


def _ratio(n: float, d: float) -> float:
    return n / d if d else 0.0


_PRIME = np.uint64(1099511628211)


def _window_hashes(h: np.ndarray, n: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        out = np.zeros(len(h) - n + 1, dtype=np.uint64)
        for k in range(n):
            out = out * _PRIME + h[k:len(h) - n + 1 + k]
    return out



def _grams(s: "DocStats", n: int) -> np.ndarray:
    """_window_hashes(s.units[0], n), extended from the longest cached shorter window (w_n = w_(n-1) * P + h)."""
    cache = s.gram_cache
    if n not in cache:
        h = s.units[0]
        shorter = [k for k in cache if k < n]
        k = max(shorter) if shorter else 1
        grams = cache[k] if shorter else h.copy()
        with np.errstate(over="ignore"):
            for m in range(k + 1, n + 1):
                grams = grams[:-1] * _PRIME + h[m - 1:]
                cache[m] = grams
    return cache[n]


def _top_ngram_fraction(units: tuple[np.ndarray, np.ndarray], n: int, grams: np.ndarray | None = None) -> float:
    """Share of the text's characters covered by its most frequent n-gram (Gopher)."""
    return _top_ngram(units, n, grams)[0]


def _top_ngram(units: tuple[np.ndarray, np.ndarray], n: int, grams: np.ndarray | None = None) -> tuple[float, int]:
    """(_top_ngram_fraction, count of the most frequent n-gram). Among n-grams tied for most frequent
    the longest (in characters, at its first occurrence) counts, so the result never depends on hash
    values (English word hashes are per-process)."""
    h, lengths = units
    if len(h) < n + 1:
        return 0.0, 0
    grams = _window_hashes(h, n) if grams is None else grams
    order = np.argsort(grams, kind="stable")      # equal grams keep their positions in ascending order
    ordered = grams[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    counts = np.diff(np.append(starts, len(ordered)))
    top = int(counts.max())
    if top < 2:
        return 0.0, top
    firsts = order[starts[counts == top]]          # first occurrence of every most frequent n-gram
    csum = np.concatenate([[0], np.cumsum(lengths)])
    gram_len = int((csum[firsts + n] - csum[firsts]).max())
    return _ratio(top * gram_len, int(csum[-1])), top


def _dup_ngram_fraction(units: tuple[np.ndarray, np.ndarray], n: int, grams: np.ndarray | None = None) -> float:
    """Share of characters inside n-grams that occurred earlier in the document (Gopher)."""
    h, lengths = units
    if len(h) < 2 * n:
        return 0.0
    grams = _window_hashes(h, n) if grams is None else grams
    _, first = np.unique(grams, return_index=True)
    dup_start = np.ones(len(grams), dtype=np.int64)
    dup_start[first] = 0
    csum = np.concatenate([[0], np.cumsum(dup_start)])
    pos = np.arange(len(h))
    lo = np.clip(pos - n + 1, 0, len(grams))
    hi = np.clip(pos + 1, 0, len(grams))
    covered = (csum[hi] - csum[lo]) > 0
    return _ratio(int(lengths[covered].sum()), int(lengths.sum()))


class RuleFilter:
    """All rules, applied document -> paragraph -> sentence. Call returns (doc|None, drops)."""

    def __init__(self, cfg: FilterConfig | None = None):
        self.cfg = cfg = cfg or FilterConfig()
        wl_dir = Path(cfg.wordlist_dir) if cfg.wordlist_dir else None
        self.toxic = TermMatcher(load_wordlist("toxic_zh.txt", wl_dir) + load_wordlist("toxic_en.txt", wl_dir))
        self.ads = TermMatcher(load_wordlist("ads_zh.txt", wl_dir) + load_wordlist("ads_en.txt", wl_dir))
        self.boiler = TermMatcher(load_wordlist("boilerplate.txt", wl_dir))
        self.rules = [r for r in self._rules() if r.name not in cfg.disabled]
        unknown = set(cfg.disabled) - {r.name for r in self._rules()}
        if unknown:
            raise ValueError(f"filter.disabled names unknown rules {sorted(unknown)}; see `python -m ziya_jax data rules`")

    # ----- rule table -----
    def _rules(self) -> list[Rule]:
        c = self.cfg
        zh, en, code, text_langs = ("zh",), ("en",), ("code",), ("zh", "en")
        every = ("zh", "en", "code")

        def doc_rule(name, langs, fn, desc):
            return Rule(name, "document", langs, fn, desc)

        def mean_word_len(s):
            m = _ratio(sum(map(len, s.words)), len(s.words))
            lo, hi = c.mean_word_len_range
            return f"{m:.1f}" if s.words and not lo <= m <= hi else None

        rules = [
            doc_rule("doc_too_short_zh", zh, lambda s: f"{s.count(HAN_RE)} Han chars"
                     if s.count(HAN_RE) < c.min_chars_zh else None, "fewer Han characters than min_chars_zh"),
            doc_rule("doc_too_short_en", en, lambda s: f"{len(s.words)} words" if len(s.words) < c.min_words_en
                     else None, "fewer words than min_words_en"),
            doc_rule("doc_too_short_code", code, lambda s: f"{len(s.text)} chars" if len(s.text) < c.min_chars_code
                     else None, "tiny code file"),
            doc_rule("doc_too_long", every, lambda s: f"{len(s.text)} chars" if len(s.text) > c.max_chars else None,
                     "longer than max_chars"),
            doc_rule("mean_word_length", en, mean_word_len, "mean word length outside mean_word_len_range (Gopher)"),
            doc_rule("symbol_word_ratio", en, lambda s: (lambda r: f"{r:.2f}" if r > c.max_symbol_word_ratio else None)(
                _ratio(s.text.count("#") + s.text.count("...") + s.text.count("…"), len(s.words))),
                "hash/ellipsis symbols per word (Gopher)"),
            doc_rule("bullet_lines", text_langs, lambda s: (lambda r: f"{r:.2f}" if r > c.max_bullet_lines and len(s.lines) > 3
                     else None)(_ratio(len(BULLET_RE.findall(s.text)), len(s.lines))),
                     "share of lines starting with a bullet"),
            doc_rule("ellipsis_lines", text_langs, lambda s: (lambda r: f"{r:.2f}" if r > c.max_ellipsis_lines and len(s.lines) > 3
                     else None)(_ratio(len(ELLIPSIS_END_RE.findall(s.text)) if "..." in s.text or "…" in s.text else 0,
                                  len(s.lines))),
                     "share of lines ending in an ellipsis (truncated text)"),
            doc_rule("alpha_words", en, lambda s: (lambda r: f"{r:.2f}" if s.words and r < c.min_alpha_words else None)(
                1 - _ratio(len(NO_ALPHA_TOKEN_RE.findall(s.text)), len(s.words))), "share of words with a letter (Gopher)"),
            doc_rule("stopwords", en, lambda s: (lambda n: f"{n} stop words" if n < c.min_stopwords else None)(
                sum(map(EN_STOPWORDS.__contains__, s.words))), "too few English stop words (Gopher)"),
            doc_rule("han_ratio", zh, lambda s: (lambda r: f"{r:.2f}" if r < c.min_han_ratio_zh else None)(
                _ratio(s.count(HAN_RE), s.nonspace)), "Han characters per non-space character"),
            doc_rule("digit_ratio", text_langs, lambda s: (lambda r: f"{r:.2f}" if r > c.max_digit_ratio else None)(
                _ratio(s.count(DIGIT_RE), s.nonspace)), "digits per non-space character"),
            doc_rule("special_char_ratio", text_langs, lambda s: (lambda r: f"{r:.2f}" if r > c.max_special_ratio else None)(
                _ratio(s.count(SYMBOL_RE), s.nonspace)),
                "symbols that are neither letters, digits, Han nor punctuation"),
            doc_rule("repeated_char_run", text_langs, lambda s: (lambda m: repr(m) if m else None)(repeated_run(s.cps)),
                "one character repeated 10+ times (哈哈哈哈…, !!!!!!)"),
            doc_rule("dup_line_fraction", text_langs, lambda s: _dup_lines(s, c), "duplicate lines (Gopher)"),
            doc_rule("dup_line_char_fraction", text_langs, lambda s: _dup_line_chars(s, c),
                     "characters in duplicate lines (Gopher)"),
            doc_rule("dup_paragraph_fraction", text_langs, lambda s: _dup_paras(s, c), "duplicate paragraphs (Gopher)"),
            doc_rule("top_ngram_fraction", text_langs, lambda s: _top_ngrams(s, c),
                     "most frequent 2/3/4-gram covers too much (chars for zh, words for en)"),
            doc_rule("dup_ngram_fraction", text_langs, lambda s: _dup_ngrams(s, c),
                     "text in repeated n-grams (Gopher; characters for zh)"),
            doc_rule("html_leftovers", text_langs, lambda s: (lambda r: f"{r:.3f}" if r > c.max_html_tag_ratio else None)(
                _ratio(_markup_chars(s.text), len(s.text))), "HTML tags and entities"),
            doc_rule("javascript", text_langs, lambda s: "script code" if any(h in s.text for h in JS_HINTS)
                     and JS_RE.search(s.text) else None,
                     "JavaScript in non-code text (C4)"),
            doc_rule("lorem_ipsum", every, lambda s: "lorem ipsum" if "lorem" in s.low and LOREM_RE.search(s.text) else None,
                     "placeholder text (C4)"),
            doc_rule("mojibake", text_langs, lambda s: (lambda n: f"{n} sequences" if n * 1000 > c.max_mojibake_per_1k * max(len(s.text), 1)
                     else None)(len(MOJIBAKE_RE.findall(s.text)) if any(h in s.text for h in MOJIBAKE_HINTS) else 0),
                     "garbled encodings (Ã©, â€™, 锟斤拷)"),
            doc_rule("url_ratio", text_langs, lambda s: (lambda r: f"{r:.2f}" if r > c.max_url_char_ratio else None)(
                _ratio(sum(map(len, URL_RE.findall(s.text))) if "http" in s.low or "www." in s.low else 0, len(s.text))),
                "URL/SEO stuffing"),
            doc_rule("short_lines", en, lambda s: (lambda r: f"{r:.2f}" if r > c.max_short_line_fraction_en and len(s.lines) > 5
                     else None)(_ratio(sum(1 for n in map(len, s.stripped) if 0 < n < c.short_line_chars),
                                       sum(1 for l in s.stripped if l))), "mostly very short lines (menus, lists)"),
            doc_rule("toxic_density", every, lambda s: (lambda n: f"{n} toxic terms" if
                     n * 1000 > c.max_toxic_per_1k_chars * max(len(s.text), 1) and n >= 3 else None)(
                self.toxic.count(s.text, s.low) if self.toxic.search(s.text, s.low) else 0), "many toxic terms (word lists)"),
            # paragraph level: remove the paragraph
            Rule("para_advertising", "paragraph", text_langs,
                 lambda p: self.ads.search(p),
                 "advertising phrases (ads_*.txt)"),
            Rule("para_boilerplate", "paragraph", text_langs,
                 lambda p: self.boiler.search(p),
                 "navigation, cookie, copyright and login boilerplate (boilerplate.txt)"),
            Rule("para_html", "paragraph", text_langs, lambda p: (lambda r: f"{r:.2f}" if r > c.max_para_html_ratio else None)(
                _ratio(_markup_chars(p), len(p))), "paragraph that is mostly markup"),
            Rule("para_toxic", "paragraph", text_langs,
                 lambda p: self.toxic.search(p),
                 "toxic terms (toxic_*.txt)"),
            Rule("para_symbols", "paragraph", text_langs, lambda p: (lambda r: f"{r:.2f}" if len(p) >= 8 and r > c.max_para_symbol_ratio
                 else None)(_ratio(count_class(codepoints(p), SYMBOL_RE), len("".join(p.split())))),
                 "paragraph of symbols"),
            Rule("para_duplicate", "paragraph", text_langs, lambda p: None, "repeated paragraph (first kept)"),
            # sentence level: remove the sentence (privacy)
            Rule("sent_email", "sentence", every, lambda t: "email" if EMAIL_RE.search(t) else None, "email address"),
            Rule("sent_phone", "sentence", text_langs, lambda t: "phone" if CN_MOBILE_RE.search(t) or PHONE_RE.search(t)
                 else None, "phone number (CN mobile, international)"),
            Rule("sent_id_number", "sentence", text_langs, lambda t: "id" if _has_cn_id(t) or SSN_RE.search(t) else None,
                 "ID numbers (PRC resident ID with checksum, US SSN)"),
            Rule("sent_bank_card", "sentence", text_langs, lambda t: "card" if _has_card(t) else None,
                 "bank card numbers (Luhn)"),
            Rule("sent_ip_address", "sentence", text_langs, lambda t: "ip" if IPV4_RE.search(t) else None, "IPv4 addresses"),
            Rule("sent_im_account", "sentence", text_langs, lambda t: "im" if IM_ID_RE.search(t) else None,
                 "QQ / WeChat account ids"),
        ]
        return rules

    def describe(self) -> list[dict]:
        return [{"name": r.name, "level": r.level, "langs": list(r.langs), "description": r.description}
                for r in self._rules()]

    # ----- application -----
    def _may_fire(self, name: str, s: DocStats) -> bool:
        if name == "para_advertising":
            return self.ads.search(s.text, s.low) is not None
        if name == "para_boilerplate":
            return self.boiler.search(s.text, s.low) is not None
        if name == "para_toxic":
            return self.toxic.search(s.text, s.low) is not None
        if name == "para_html":
            return "<" in s.text or "&" in s.text
        if name == "para_symbols":
            return SYMBOL_RE.search(s.text) is not None
        return True

    def __call__(self, doc: Doc) -> tuple[Doc | None, list[Doc]]:
        lang = doc.get("lang", "")
        stats = DocStats(doc["text"], lang)
        for rule in self.rules:
            if rule.level == "document" and lang in rule.langs:
                detail = rule.check(stats)
                if detail:
                    return None, [drop(doc, STEP, rule.name, detail=detail)]
        if lang == "code":   # code keeps its lines; email addresses are masked, not deleted with their line
            emails = EMAIL_RE.findall(doc["text"]) if "sent_email" in {r.name for r in self.rules} else []
            if not emails:
                return doc, []
            return dict(doc, text=EMAIL_RE.sub("<email>", doc["text"])), [
                drop(doc, STEP, "sent_email", detail="masked in code", level="sentence", text=e) for e in emails]
        fragments: list[Doc] = []
        para_rules = [r for r in self.rules if r.level == "paragraph" and lang in r.langs
                      and self._may_fire(r.name, stats)]     # whole-document pre-checks skip idle rules
        sent_rules = [r for r in self.rules if r.level == "sentence" and lang in r.langs]
        if sent_rules and not PRIVACY_HINT_RE.search(stats.low):
            sent_rules = []
        dedup_paras = any(r.name == "para_duplicate" for r in para_rules)
        kept_paras, seen = [], set()
        for para in PARA_SPLIT_RE.split(doc["text"]):
            if not para.strip():
                continue
            key = para.strip()
            reason = None
            if dedup_paras and key in seen:
                reason, detail = "para_duplicate", ""
            else:
                for rule in para_rules:
                    detail = rule.check(para)
                    if detail:
                        reason = rule.name
                        break
            seen.add(key)
            if reason:
                fragments.append(drop(doc, STEP, reason, detail=detail or "", level="paragraph", text=para))
                continue
            if not sent_rules or not PRIVACY_ANY_RE.search(para):
                kept_paras.append(para)
                continue
            new_lines = []
            for line in para.split("\n"):
                kept_sents = []
                for sent in SENT_SPLIT_RE.split(line):
                    hit = next(((r.name, d) for r in sent_rules if sent.strip() and (d := r.check(sent))), None)
                    if hit:
                        fragments.append(drop(doc, STEP, hit[0], detail=hit[1], level="sentence", text=sent))
                    else:
                        kept_sents.append(sent)
                if "".join(kept_sents).strip():
                    new_lines.append("".join(kept_sents).strip() if len(kept_sents) != len(SENT_SPLIT_RE.split(line)) else line)
            new_para = "\n".join(new_lines)
            if new_para.strip():
                kept_paras.append(new_para)
        if not fragments:
            return doc, []
        text = "\n\n".join(kept_paras)
        if len(text) < self.cfg.min_remaining_fraction * len(doc["text"]):
            return None, fragments + [drop(doc, STEP, "too_little_left_after_removals",
                                           detail=f"{len(text)} of {len(doc['text'])} chars left", text=text)]
        out = dict(doc, text=text)
        return out, fragments


def _dup_lines(s: DocStats, c: FilterConfig) -> str | None:
    lines = [l for l in s.stripped if l]
    if len(lines) < 4:
        return None
    dup = len(lines) - len(set(lines))
    r = dup / len(lines)
    return f"{r:.2f}" if r > c.max_dup_line_fraction else None


def _dup_line_chars(s: DocStats, c: FilterConfig) -> str | None:
    lines = [l for l in s.stripped if l]
    if len(lines) < 4:
        return None
    seen, dup_chars = set(), 0
    for l in lines:
        if l in seen:
            dup_chars += len(l)
        seen.add(l)
    r = _ratio(dup_chars, sum(len(l) for l in lines))
    return f"{r:.2f}" if r > c.max_dup_line_char_fraction else None


def _dup_paras(s: DocStats, c: FilterConfig) -> str | None:
    paras = [p.strip() for p in PARA_SPLIT_RE.split(s.text) if p.strip()]
    if len(paras) < 4:
        return None
    r = (len(paras) - len(set(paras))) / len(paras)
    return f"{r:.2f}" if r > c.max_dup_para_fraction else None


def _top_ngrams(s: DocStats, c: FilterConfig) -> str | None:
    """The first of the 2/3/4-gram rules that fires. An n-gram occurs at most as often as its (n-1)-gram
    prefix, so when (top (n-1)-gram count) x (longest n units) cannot exceed the limit, the n-gram
    statistic is skipped: it could not fire either (exact, not a heuristic)."""
    h, lengths = s.units
    total = int(lengths.sum())
    bound_count = None                 # an upper bound on every n-gram's count
    csum = None
    for n, limit in zip((2, 3, 4), c.max_top_ngram_fraction):
        if len(h) < n + 1:
            return None
        if bound_count is not None:
            if bound_count < 2:
                return None
            if csum is None:
                csum = np.concatenate([[0], np.cumsum(lengths)])
            longest = int((csum[n:] - csum[:-n]).max())
            if bound_count * longest <= limit * total:
                continue
        r, bound_count = _top_ngram(s.units, n, _grams(s, n))
        if r > limit:
            return f"{n}-gram {r:.2f}"
    return None


def _dup_ngrams(s: DocStats, c: FilterConfig) -> str | None:
    n = c.dup_ngram_n_zh if s.lang == "zh" else c.dup_ngram_n_en
    r = _dup_ngram_fraction(s.units, n, _grams(s, n)) if len(s.units[0]) >= 2 * n else 0.0
    return f"{r:.2f}" if r > c.max_dup_ngram_fraction else None


def find_privacy(text: str, lang: str) -> str | None:
    """The first kind of personal data the sentence rules would remove (emails only, for code)."""
    if EMAIL_RE.search(text):
        return "email"
    if lang == "code" or not PRIVACY_HINT_RE.search(text.lower()):
        return None
    if CN_MOBILE_RE.search(text) or PHONE_RE.search(text):
        return "phone"
    if _has_cn_id(text) or SSN_RE.search(text):
        return "id"
    if _has_card(text):
        return "card"
    if IPV4_RE.search(text):
        return "ip"
    if IM_ID_RE.search(text):
        return "im"
    return None


def _has_cn_id(text: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for m in CN_ID_RE.finditer(text):
        s = m.group(0).upper()
        check = "10X98765432"[sum(int(d) * w for d, w in zip(s[:17], weights)) % 11]
        if s[17] == check:
            return True
    return False


def _has_card(text: str) -> bool:
    for m in CARD_RE.finditer(text):
        digits = [int(ch) for ch in m.group(0) if ch.isdigit()]
        total = 0
        for i, d in enumerate(reversed(digits)):
            if i % 2:
                d *= 2
                d = d - 9 if d > 9 else d
            total += d
        if total % 10 == 0:
            return True
    return False
