"""`python -m ziya_jax data train-lm`: a scoring model = SentencePiece + KenLM (real `lmplz`/`build_binary`).

The reference corpus (Wikipedia in production; packaged text in the demo) is normalised like the
scored text (`scoring.normalize_for_lm`), a SentencePiece unigram model is trained on it, the corpus
is encoded to pieces and `lmplz` estimates a modified Kneser-Ney n-gram model that `build_binary`
turns into a mmap-able binary. `make kenlm-tools` builds both programs from the KenLM sdist into
`.cache/kenlm/bin`; `--kenlm-bin` or `KENLM_BIN` point elsewhere.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ziya_jax.data.io import decode_text, expand_inputs
from ziya_jax.data.scoring import normalize_for_lm

DEFAULT_KENLM_BIN = str(Path(__file__).resolve().parents[2] / ".cache" / "kenlm" / "bin")


class LMTrainError(RuntimeError):
    pass


def find_kenlm_bin(explicit: str | None = None) -> Path:
    for cand in (explicit, os.environ.get("KENLM_BIN"), DEFAULT_KENLM_BIN):
        if cand and (Path(cand) / "lmplz").exists() and (Path(cand) / "build_binary").exists():
            return Path(cand)
    if shutil.which("lmplz") and shutil.which("build_binary"):
        return Path(shutil.which("lmplz")).parent
    raise LMTrainError("KenLM's lmplz/build_binary not found: run `make kenlm-tools` (builds them from the "
                       "kenlm sdist into .cache/kenlm/bin) or pass --kenlm-bin DIR")


def reference_cleaner(lang: str):
    """The preprocessing a reference line gets before training, matching what scored text gets."""
    from ziya_jax.data.preprocess import Preprocessor, clean_characters
    if lang != "zh":
        return clean_characters
    t2s = Preprocessor().t2s
    return lambda line: t2s.convert(clean_characters(line))


def reference_lines(pattern: str) -> list[str]:
    lines = []
    for path in expand_inputs(pattern):
        text, _ = decode_text(Path(path).read_bytes())
        if text is None:
            raise LMTrainError(f"{path}: not UTF-8/UTF-16/GB18030 text; convert it or leave it out of --corpus")
        if path.endswith((".jsonl", ".json")):
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        lines.extend(json.loads(line)["text"].split("\n"))
                    except (ValueError, KeyError, TypeError):
                        raise LMTrainError(f"{path}:{n}: not a JSON object with 'text'") from None
        else:
            lines.extend(text.split("\n"))
    return [n for n in (normalize_for_lm(line) for line in lines) if n]


def train_language_model(corpus: str, lang: str, out_dir: str, order: int = 5, vocab_size: int = 8000,
                         kenlm_bin: str | None = None, memory: str = "20%", preprocess=None) -> dict:
    """Train `<out_dir>/<lang>.sp.model` and `<lang>.binary`; returns the manifest written beside them."""
    import sentencepiece as spm

    bin_dir = find_kenlm_bin(kenlm_bin)
    lines = reference_lines(corpus)
    if preprocess is not None:
        lines = [n for n in (normalize_for_lm(preprocess(line)) for line in lines) if n]
    if len(lines) < 100:
        raise LMTrainError(f"--corpus {corpus!r} has {len(lines)} non-empty lines; a scoring model needs thousands")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tmp = Path(tmp)
        text_file = tmp / "corpus.txt"
        text_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            spm.SentencePieceTrainer.train(
                input=str(text_file), model_prefix=str(tmp / f"{lang}.sp"), vocab_size=vocab_size,
                model_type="unigram", character_coverage=0.9995 if lang == "zh" else 1.0,
                hard_vocab_limit=False, input_sentence_size=2_000_000, shuffle_input_sentence=True,
                num_threads=os.cpu_count() or 1, minloglevel=2)
        except RuntimeError as e:
            raise LMTrainError(f"SentencePiece training on {corpus!r} failed: {str(e).splitlines()[-1][-200:]} "
                               "(a larger --vocab-size usually fixes it)") from None
        sp = spm.SentencePieceProcessor(model_file=str(tmp / f"{lang}.sp.model"))
        pieces_file = tmp / "pieces.txt"
        with open(pieces_file, "w", encoding="utf-8") as fh:
            for pieces in sp.encode(lines, out_type=str):
                fh.write(" ".join(pieces) + "\n")
        arpa = tmp / f"{lang}.arpa"
        with open(pieces_file, "rb") as src, open(arpa, "wb") as dst:
            res = subprocess.run([str(bin_dir / "lmplz"), "-o", str(order), "-S", memory, "-T", str(tmp),
                                  "--discount_fallback"], stdin=src, stdout=dst, stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise LMTrainError(f"lmplz failed: {res.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
        res = subprocess.run([str(bin_dir / "build_binary"), str(arpa), str(tmp / f"{lang}.binary")],
                             capture_output=True)
        if res.returncode != 0:
            raise LMTrainError(f"build_binary failed: {res.stderr.decode(errors='replace').strip()[-300:]}")
        for name in (f"{lang}.sp.model", f"{lang}.sp.vocab", f"{lang}.binary"):
            os.replace(tmp / name, out / name)
    manifest = {"lang": lang, "order": order, "vocab_size": sp.get_piece_size(), "lines": len(lines),
                "corpus": corpus, "sp_model": f"{lang}.sp.model", "kenlm_model": f"{lang}.binary"}
    (out / f"{lang}.json").write_text(json.dumps(manifest, indent=2))
    return manifest
