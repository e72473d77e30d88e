"""Packing as the paper's Figure 3 describes, in numpy, on token streams.

Every packed row is L+1 tokens `S` with per-token segment ids `seg` (0 = padding):
inputs are S[:L], targets S[1:].
- Stage 1 (`pack_stream`): documents (each ending in </s>) are concatenated and cut into
  L-token windows. A document crossing a boundary is right-truncated in one window and
  left-truncated in the next. Segment ids number the documents within a window from 1.
- Stages 2 and 3 (`pack_bins`): examples of one task are packed greedily, in order, into rows of
  at most L tokens without splitting any example; the rest is padding. An example longer than L
  is cut to L and counted.
`features` turns rows into model inputs. With `mask_documents` each document attends only to
itself (segment ids per document, positions restart), and the token that would predict across a
boundary gets loss weight 0. Without it, all non-padding tokens form one segment. Padding always
has loss weight 0.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

PAD_ID = 0


def pack_stream(docs: Iterable[np.ndarray], length: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (tokens[L+1], segments[L+1]) windows; window k covers stream[kL : kL+L+1]."""
    buf_tok: list[np.ndarray] = []
    buf_doc: list[np.ndarray] = []
    have = 0
    doc_no = 0
    for doc in docs:
        doc = np.asarray(doc, np.int32)
        if doc.size == 0:
            continue
        doc_no += 1
        buf_tok.append(doc)
        buf_doc.append(np.full(doc.size, doc_no, np.int64))
        have += doc.size
        while have >= length + 1:
            tok, dno = np.concatenate(buf_tok), np.concatenate(buf_doc)
            window_tok, window_doc = tok[:length + 1], dno[:length + 1]
            _, seg = np.unique(window_doc, return_inverse=True)
            yield window_tok.copy(), (seg.reshape(-1) + 1).astype(np.int32)
            buf_tok, buf_doc = [tok[length:]], [dno[length:]]      # the last token starts the next window
            have = tok.size - length


class _Bin:
    def __init__(self):
        self.examples: list[np.ndarray] = []
        self.used = 0

    def row(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        tok = np.full(length + 1, PAD_ID, np.int32)
        seg = np.zeros(length + 1, np.int32)
        pos = 0
        for k, ex in enumerate(self.examples, 1):
            tok[pos:pos + ex.size] = ex
            seg[pos:pos + ex.size] = k
            pos += ex.size
        return tok, seg


def pack_bins(examples: Iterable, length: int, stats: dict | None = None, by_task: bool = False
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (tokens[L+1], segments[L+1]) rows holding whole examples, at most L tokens, padded.

    With `by_task`, items are (task, tokens) and each task fills its own rows (same-task packing);
    rows are emitted in the order they fill up, then the partial rows in task order."""
    stats = stats if stats is not None else {}
    stats.setdefault("truncated", 0)
    bins: dict = {}
    for item in examples:
        task, ex = item if by_task else (None, item)
        ex = np.asarray(ex, np.int32)
        if ex.size == 0:
            continue
        if ex.size > length:
            ex = ex[:length]
            stats["truncated"] += 1
        b = bins.setdefault(task, _Bin())
        if b.used + ex.size > length:
            yield b.row(length)
            b = bins[task] = _Bin()
        b.examples.append(ex)
        b.used += ex.size
    for task in sorted(bins, key=str):
        if bins[task].examples:
            yield bins[task].row(length)


def positions_from_segments(seg: np.ndarray, restart: bool) -> np.ndarray:
    """Positions per token: restart at every segment start (restart) or count all non-padding tokens."""
    seg = np.asarray(seg)
    idx = np.arange(seg.shape[-1])
    if not restart:
        return np.where(seg > 0, idx, 0).astype(np.int32)
    start = np.concatenate([np.ones_like(seg[..., :1], bool), seg[..., 1:] != seg[..., :-1]], axis=-1)
    first = np.maximum.accumulate(np.where(start, idx, 0), axis=-1)
    return np.where(seg > 0, idx - first, 0).astype(np.int32)


def features(tokens: np.ndarray, seg: np.ndarray, mask_documents: bool) -> dict[str, np.ndarray]:
    """Rows of L+1 tokens -> input_tokens, target_tokens, loss_weights, segment_ids, positions ([.., L])."""
    tokens, seg = np.asarray(tokens), np.asarray(seg)
    seg_in, seg_t = seg[..., :-1], seg[..., 1:]
    if mask_documents:
        weights = (seg_in > 0) & (seg_t == seg_in)
        segment_ids = seg_in
    else:
        weights = (seg_in > 0) & (seg_t > 0)
        segment_ids = (seg_in > 0).astype(np.int32)
    return {"input_tokens": tokens[..., :-1].astype(np.int32), "target_tokens": tokens[..., 1:].astype(np.int32),
            "loss_weights": weights.astype(np.float32), "segment_ids": segment_ids.astype(np.int32),
            "positions": positions_from_segments(segment_ids, restart=mask_documents)}
