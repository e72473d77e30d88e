"""Extend a LLaMA-layout SentencePiece model with Chinese characters (paper section 3.2).

Ziya2 adds about 7,400 common Chinese characters that LLaMA2 only covers through byte fallback,
deduplicated against the existing pieces, then `<human>` and `<bot>` (ids 39408/39409 for
Ziya2). Base ids never move: new pieces are appended to the model proto. Characters become
NORMAL pieces with scores below every existing piece, so the BPE merges of the base vocabulary
are unchanged and a new character is used only where the base model fell back to bytes. The
special tokens are USER_DEFINED pieces, matched whole before BPE.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ("<human>", "<bot>")
PAD_MULTIPLE = 128


class TokenizerError(ValueError):
    pass


def is_chinese_char(ch: str) -> bool:
    """CJK Unified Ideographs and their extensions / compatibility block (simplified and traditional)."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x2FA1F)


def count_chinese_chars(texts: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for t in texts:
        counts.update(c for c in t if is_chinese_char(c))
    return counts


def load_proto(path: str):
    from sentencepiece import sentencepiece_model_pb2 as pb
    if not Path(path).is_file():
        raise TokenizerError(f"SentencePiece model {path} not found; pass the base LLaMA2 tokenizer.model")
    m = pb.ModelProto()
    try:
        m.ParseFromString(Path(path).read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise TokenizerError(f"{path} is not a SentencePiece model ({type(e).__name__}); pass a tokenizer.model") from None
    if not m.pieces:
        raise TokenizerError(f"{path} is not a SentencePiece model (no pieces); pass a tokenizer.model")
    return m


def read_char_list(path: str) -> list[str]:
    """Characters from a file: one per line (extra columns such as counts ignored) or runs of characters."""
    if not Path(path).is_file():
        raise TokenizerError(f"character list {path} not found")
    chars: list[str] = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        token = line.strip().split("\t")[0].split(" ")[0] if line.strip() else ""
        for ch in token:
            if not is_chinese_char(ch):
                raise TokenizerError(f"{path}:{line_no}: {ch!r} is not a Chinese character; list one character per line")
            chars.append(ch)
    return list(dict.fromkeys(chars))


@dataclasses.dataclass
class Extension:
    base_size: int
    added_chars: list[str]
    special_ids: dict[str, int]
    size: int

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.size // PAD_MULTIPLE) * PAD_MULTIPLE

    def summary(self) -> dict:
        return {"base_pieces": self.base_size, "added_chars": len(self.added_chars), "special_tokens": self.special_ids,
                "pieces": self.size, "padded_vocab_size": self.padded_vocab_size,
                "first_added": "".join(self.added_chars[:20])}


def extend_model(base: str, out: str, chars: list[str], specials: tuple[str, ...] = SPECIAL_TOKENS,
                 num_chars: int | None = None) -> Extension:
    """Append `chars` (those not already single pieces, in the given order, at most `num_chars`)
    and `specials` to the base model; write `out` atomically."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = load_proto(base)
    existing = {p.piece for p in m.pieces}
    new = [c for c in dict.fromkeys(chars) if c not in existing]
    if num_chars is not None:
        new = new[:num_chars]
    base_size = len(m.pieces)
    lowest = min(p.score for p in m.pieces)
    for i, ch in enumerate(new):
        m.pieces.append(pb.ModelProto.SentencePiece(piece=ch, score=lowest - 1.0 - i, type=pb.ModelProto.SentencePiece.NORMAL))
    special_ids = {}
    for tok in specials:
        if tok in existing:
            special_ids[tok] = next(i for i, p in enumerate(m.pieces) if p.piece == tok)
            continue
        special_ids[tok] = len(m.pieces)
        m.pieces.append(pb.ModelProto.SentencePiece(piece=tok, score=0.0, type=pb.ModelProto.SentencePiece.USER_DEFINED))
    m.trainer_spec.vocab_size = len(m.pieces)
    data = m.SerializeToString()
    import sentencepiece as spm
    check = spm.SentencePieceProcessor(model_proto=data)          # refuse to write a model that does not load
    if check.get_piece_size() != len(m.pieces):
        raise TokenizerError(f"extended model has {check.get_piece_size()} pieces, expected {len(m.pieces)}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_name(Path(out).name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return Extension(base_size, new, special_ids, len(m.pieces))


def chars_from_corpus(base: str, texts: Iterable[str], num_chars: int) -> tuple[list[str], Counter]:
    """The `num_chars` most frequent Chinese characters of the corpus that `base` lacks as pieces
    (ties broken by code point, so the result is deterministic)."""
    counts = count_chinese_chars(texts)
    existing = {p.piece for p in load_proto(base).pieces}
    ranked = sorted((c for c in counts if c not in existing), key=lambda c: (-counts[c], ord(c)))
    return ranked[:num_chars], counts
