"""Packed rows on disk, readable by random access (so any step's batch is read without replay).

A cache directory holds `tokens.i32` and `segments.i32`, both int32 [rows, L+1] raw arrays, plus
`meta.json` (rows, length, non-padding tokens, source, packing mode, seed, vocabulary). It is written
into a `.partial` sibling and renamed when complete.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

META = "meta.json"


class CacheError(ValueError):
    pass


def write_cache(out: str | Path, rows: Iterable[tuple[np.ndarray, np.ndarray]], length: int, meta: dict,
                overwrite: bool = False) -> dict:
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to rebuild the cache")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = nonpad = 0
    with open(tmp / "tokens.i32", "wb") as ft, open(tmp / "segments.i32", "wb") as fs:
        for tok, seg in rows:
            if tok.shape != (length + 1,) or seg.shape != (length + 1,):
                raise CacheError(f"row {n} has shape {tok.shape}, expected ({length + 1},)")
            ft.write(np.ascontiguousarray(tok, np.int32).tobytes())
            fs.write(np.ascontiguousarray(seg, np.int32).tobytes())
            n += 1
            nonpad += int(np.count_nonzero(seg[:-1]))
    if n == 0:
        shutil.rmtree(tmp)
        raise CacheError(f"{out}: the source produced no complete rows of {length} tokens; "
                         "give more data or a shorter --sequence-length")
    meta = dict(meta, rows=n, length=length, nonpad_tokens=nonpad, tokens_per_row=nonpad / n)
    (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return meta


class PackedCache:
    """Memory-mapped rows of one packed source."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta_path = self.dir / META
        if not meta_path.is_file():
            raise CacheError(f"{self.dir} is not a packed cache (no {META}); build it with "
                             "`python -m ziya_jax tasks cache`")
        self.meta = json.loads(meta_path.read_text())
        self.rows, self.length = int(self.meta["rows"]), int(self.meta["length"])
        shape = (self.rows, self.length + 1)
        for name in ("tokens.i32", "segments.i32"):
            size = (self.dir / name).stat().st_size if (self.dir / name).exists() else -1
            if size != self.rows * (self.length + 1) * 4:
                raise CacheError(f"{self.dir / name}: {size} bytes, expected {self.rows * (self.length + 1) * 4} "
                                 "for the rows in meta.json; the cache is truncated, rebuild it")
        self.tokens = np.memmap(self.dir / "tokens.i32", np.int32, "r", shape=shape)
        self.segments = np.memmap(self.dir / "segments.i32", np.int32, "r", shape=shape)

    @property
    def mask_documents(self) -> bool:
        return bool(self.meta.get("mask_documents", True))

    def read(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(index)
        order = np.argsort(index, kind="stable")          # sorted reads, results back in the asked order
        tok, seg = self.tokens[index[order]], self.segments[index[order]]
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        return np.asarray(tok[inv]), np.asarray(seg[inv])
