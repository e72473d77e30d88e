"""Counting characters of one-character regex classes by table lookup over code points.

A class's table (one bool per code point) is built once per process by one substitution of the
regex over every code point, so counts give exactly `len(pattern.findall(text))` but cost one
array lookup per document instead of a list of matches.
"""
from __future__ import annotations

import functools
import re

import numpy as np

_CLASS_TABLES: dict[str, np.ndarray] = {}
_LABEL_TABLES: dict[tuple[str, ...], np.ndarray] = {}


@functools.lru_cache(maxsize=1)
def _every_codepoint() -> str:
    """Every code point but NUL, once per process (the tables are built by substitution over it)."""
    return "".join(map(chr, range(1, 0x110000)))


def class_table(pattern: re.Pattern) -> np.ndarray:
    """Boolean table over all code points: which ones the one-character class `pattern` matches."""
    table = _CLASS_TABLES.get(pattern.pattern)
    if table is None:
        marked = pattern.sub("\x00", _every_codepoint()).encode("utf-32-le", "surrogatepass")
        table = np.concatenate([[bool(pattern.match("\x00"))], np.frombuffer(marked, np.uint32) == 0])
        _CLASS_TABLES[pattern.pattern] = table
    return table


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def count_class(cps: np.ndarray, pattern: re.Pattern) -> int:
    """len(pattern.findall(text)) for a one-character class, from the text's code points."""
    return int(np.count_nonzero(class_table(pattern)[cps])) if len(cps) else 0


def count_classes(text: str, patterns: tuple[re.Pattern, ...]) -> list[int]:
    """[len(p.findall(text)) for p in patterns] for disjoint one-character classes, in one lookup."""
    key = tuple(p.pattern for p in patterns)
    labels = _LABEL_TABLES.get(key)
    if labels is None:
        labels = np.zeros(0x110000, dtype=np.uint8)
        for i, p in enumerate(patterns, 1):
            table = class_table(p)
            if np.any(labels[table]):
                raise ValueError(f"count_classes needs disjoint classes; {p.pattern!r} overlaps an earlier one")
            labels[table] = i
        _LABEL_TABLES[key] = labels
    if not text:
        return [0] * len(patterns)
    return np.bincount(labels[codepoints(text)], minlength=len(patterns) + 1)[1:].tolist()
