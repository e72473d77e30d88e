"""Step 2, automatic scoring: KenLM perplexity per language over SentencePiece pieces (cc_net style).

A language's model is a directory entry pair `<lang>.sp.model` + `<lang>.arpa|.binary` (see
`lm_train.py`). Text is normalised as for training (lower case, digits -> 0, collapsed spaces); each
line is scored with <s>/</s> and the document perplexity is 10 ** (-sum log10 p / tokens), tokens
counting one </s> per line. Buckets are assigned afterwards from percentiles of this corpus
(`bucket_for`), not from fixed values.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

STEP = "score"
DIGIT_RE = re.compile(r"\d")
SPACE_RE = re.compile(r"\s+")


class ScoringError(ValueError):
    pass


def normalize_for_lm(line: str) -> str:
    return SPACE_RE.sub(" ", DIGIT_RE.sub("0", line.lower())).strip()


def normalized_lines(text: str) -> list[str]:
    """`normalize_for_lm` of every non-empty line: one regex pass for digits over the whole text, then
    `str.split()` per line to collapse blanks (same Unicode whitespace as `\\s`, twice as fast as a regex)."""
    text = DIGIT_RE.sub("0", text.lower())
    return [" ".join(words) for words in map(str.split, text.split("\n")) if words]


@dataclass(frozen=True)
class LanguageModelFiles:
    lang: str
    sp_model: str
    kenlm_model: str


def find_models(model_dir: str, languages: tuple[str, ...]) -> dict[str, LanguageModelFiles]:
    """Locate `<lang>.sp.model` and `<lang>.binary` (or `.arpa`) for each language in `model_dir`."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ScoringError(f"scoring model directory {model_dir} does not exist; train one with "
                           "`python -m ziya_jax data train-lm` or set --config.score.model_dir")
    found = {}
    for lang in languages:
        sp = root / f"{lang}.sp.model"
        lm = next((p for p in (root / f"{lang}.binary", root / f"{lang}.arpa") if p.exists()), None)
        if not sp.exists() or lm is None:
            raise ScoringError(f"{root}: missing {lang}.sp.model or {lang}.binary/.arpa; train it with "
                               f"`python -m ziya_jax data train-lm --lang {lang} ...`")
        found[lang] = LanguageModelFiles(lang, str(sp), str(lm))
    return found


class PerplexityScorer:
    """Loads the models lazily (once per worker) and scores documents of a known language."""

    def __init__(self, models: dict[str, LanguageModelFiles]):
        self.models = models
        self._loaded: dict[str, tuple] = {}

    def _get(self, lang: str):
        if lang not in self._loaded:
            import kenlm
            import sentencepiece as spm
            files = self.models[lang]
            try:
                sp = spm.SentencePieceProcessor(model_file=files.sp_model)
                lm = kenlm.Model(files.kenlm_model)
            except (OSError, RuntimeError) as e:
                raise ScoringError(f"cannot load scoring model {files.kenlm_model} / {files.sp_model}: {e}") from e
            self._loaded[lang] = (sp, lm)
        return self._loaded[lang]

    def perplexity(self, text: str, lang: str) -> float:
        sp, lm = self._get(lang)
        lines = normalized_lines(text)
        if not lines:
            return math.inf
        # One line per call, in this thread: the batch API hands every call to a helper thread, and with
        # all cores busy (one Beam worker per core) the hand-offs left ~12-20% of the CPU idle here.
        pieces = [sp.encode(line, out_type=str) for line in lines]
        log10_total = sum(map(lm.score, map(" ".join, pieces)))      # kenlm: bos=True, eos=True by default
        tokens = sum(map(len, pieces)) + len(lines)                   # one </s> per line
        return round(10.0 ** (-log10_total / tokens), 3)


def bucket_for(ppl: float, cutoffs: tuple[float, float] | None) -> str:
    """'high' (<= first cutoff), 'medium' (<= second) or 'low' (dropped)."""
    if cutoffs is None:
        return "high"
    high, medium = cutoffs
    if ppl <= high:
        return "high"
    if ppl <= medium:
        return "medium"
    return "low"


def percentile_cutoffs(values: list[float], fractions: tuple[float, float]) -> tuple[float, float] | None:
    """Perplexity values at the given fractions (e.g. 0.3, 0.6) of this corpus, lowest first (nearest rank)."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return None
    def at(q: float) -> float:
        k = max(0, min(len(finite) - 1, math.ceil(q * len(finite)) - 1))
        return finite[k]
    return at(fractions[0]), at(fractions[1])

