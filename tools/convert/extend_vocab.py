"""Grow a checkpoint's embedding and LM head for an extended tokenizer (paper section 5.1).

    python -m tools.convert.extend_vocab --ckpt CKPT --base BASE.model --new OUT.model --out CKPT2

Each new piece gets, in both `embed` and `lm_head`, the mean of the rows of the base tokens it
used to split into. Those are the byte-fallback tokens for a new Chinese character (2-4 of them)
and ordinary pieces for `<human>`/`<bot>`. The base model encodes each piece without its dummy
"▁" prefix. The vocabulary is padded to a multiple of 128 (39,424 for Ziya2). Padding rows get
the mean of the base rows in both matrices; they are never targets, and a mean LM-head row gives
them an average logit. Rows of base ids are copied unchanged. Other parameters are streamed
leaf by leaf (a scanned stack layer by layer). The new tokenizer.model replaces the one in
hf_files/, and a stale tokenizer.json is dropped.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from tools.convert.common import EXTRA_DIR, run_cli, write_json
from ziya_jax.params_io import (CONFIG_FILE, PARAMS_DIR, CheckpointError, LazyArray, _unflatten, atomic_directory,
                                iter_leaf_slices, load_model_config, param_shapes, read_leaves, save_params)
from ziya_jax.tokenizer.extend import PAD_MULTIPLE, TokenizerError, load_proto

EMBED = ("embed", "embedding")
LM_HEAD = ("lm_head",)


def source_ids(base: str, new: str) -> tuple[int, list[list[int]], list[str]]:
    """(base size, base ids of every new piece, the new pieces); checks that `new` extends `base`."""
    import sentencepiece as spm
    b, n = load_proto(base), load_proto(new)
    if len(n.pieces) <= len(b.pieces) or any(x.piece != y.piece for x, y in zip(b.pieces, n.pieces)):
        raise TokenizerError(f"{new} does not extend {base}: its first {len(b.pieces)} pieces must equal the base "
                             "pieces (build it with `python -m ziya_jax tokenizer extend --base ...`)")
    b.normalizer_spec.add_dummy_prefix = False        # encode "中" as its bytes, not "▁" + bytes
    sp = spm.SentencePieceProcessor(model_proto=b.SerializeToString())
    pieces = [p.piece for p in n.pieces[len(b.pieces):]]
    ids = [sp.encode(p) for p in pieces]
    for p, i in zip(pieces, ids):
        if not i:
            raise TokenizerError(f"new piece {p!r} encodes to nothing with {base}")
    return len(b.pieces), ids, pieces


def extend_rows(matrix: np.ndarray, base_size: int, new_ids: list[list[int]], padded: int, axis: int) -> np.ndarray:
    """Rows (axis 0) or columns (axis 1) base_size.. filled with means of base rows, then padding."""
    m = np.moveaxis(matrix, axis, 0)
    base = m[:base_size].astype(np.float64)
    out = np.empty((padded,) + m.shape[1:], dtype=matrix.dtype)
    out[:base_size] = m[:base_size]
    for k, ids in enumerate(new_ids):
        out[base_size + k] = base[ids].mean(axis=0).astype(matrix.dtype)
    out[base_size + len(new_ids):] = base.mean(axis=0).astype(matrix.dtype)
    return np.moveaxis(out, 0, axis)


def extend_checkpoint(ckpt: str, base: str, new: str, out: str, pad_multiple: int = PAD_MULTIPLE,
                      overwrite: bool = False) -> dict:
    ckpt_path = Path(ckpt)
    cfg = load_model_config(ckpt_path) if (ckpt_path / CONFIG_FILE).is_file() else None
    if cfg is None:
        raise CheckpointError(f"{ckpt}: no {CONFIG_FILE}; pass a ziya-jax checkpoint directory")
    base_size, new_ids, pieces = source_ids(base, new)
    if cfg.vocab_size < base_size:
        raise CheckpointError(f"{ckpt} has vocab_size {cfg.vocab_size} < {base_size} pieces of {base}; "
                              "the tokenizer does not belong to this checkpoint")
    if cfg.vocab_size > base_size:
        print(f"note: {ckpt} has {cfg.vocab_size - base_size} rows beyond the base pieces; they are re-initialised")
    size = base_size + len(new_ids)
    padded = -(-size // pad_multiple) * pad_multiple
    shapes = param_shapes(ckpt)
    for path, axis in ((EMBED, 0), (LM_HEAD, 1)):
        if path not in shapes or shapes[path][0][axis] != cfg.vocab_size:
            raise CheckpointError(f"{ckpt}: {'/'.join(path)} missing or not {cfg.vocab_size} along the vocab axis")
    tree = {}
    for path, (shape, dtype) in shapes.items():
        if path in (EMBED, LM_HEAD):
            axis = 0 if path == EMBED else 1
            new_shape = tuple(padded if i == axis else s for i, s in enumerate(shape))
            leaf = LazyArray(new_shape, dtype, name="/".join(path), load=lambda p=path, a=axis: extend_rows(
                read_leaves(ckpt, [p], shapes=shapes)[p], base_size, new_ids, padded, a))
        elif cfg.scan_layers and path[0] == "layers":
            leaf = LazyArray(shape, dtype, name="/".join(path), slices=lambda p=path: iter_leaf_slices(ckpt, p))
        else:
            leaf = LazyArray(shape, dtype, name="/".join(path), load=lambda p=path: read_leaves(ckpt, [p], shapes=shapes)[p])
        tree[path] = leaf
    new_cfg = cfg.replace(vocab_size=padded)
    summary = {"source": str(ckpt_path.absolute()), "base_tokenizer": str(Path(base).absolute()),
               "new_tokenizer": str(Path(new).absolute()), "base_pieces": base_size, "new_pieces": len(new_ids),
               "pieces": size, "vocab_size": padded,
               "init": "new rows: mean of the base rows each piece encodes to; padding rows: mean of all base rows"}
    with atomic_directory(out, overwrite=overwrite) as tmp:
        save_params(tmp / PARAMS_DIR, _unflatten(tree))
        new_cfg.save_json(tmp / CONFIG_FILE)
        if (ckpt_path / "hf_config.json").is_file():
            shutil.copy2(ckpt_path / "hf_config.json", tmp / "hf_config.json")
        extra = tmp / EXTRA_DIR
        if (ckpt_path / EXTRA_DIR).is_dir():
            shutil.copytree(ckpt_path / EXTRA_DIR, extra)
        extra.mkdir(exist_ok=True)
        shutil.copy2(new, extra / "tokenizer.model")
        (extra / "tokenizer.json").unlink(missing_ok=True)   # a fast tokenizer of the old vocabulary
        write_json(tmp / "vocab_extension.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.convert.extend_vocab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="ziya-jax checkpoint of the base model (e.g. converted LLaMA2)")
    p.add_argument("--base", required=True, help="the base tokenizer.model the checkpoint was trained with")
    p.add_argument("--new", required=True, help="the extended tokenizer.model (`python -m ziya_jax tokenizer extend`)")
    p.add_argument("--out", required=True)
    p.add_argument("--pad-multiple", type=int, default=PAD_MULTIPLE)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    s = extend_checkpoint(a.ckpt, a.base, a.new, a.out, a.pad_multiple, a.overwrite)
    print(f"wrote {a.out}: {s['new_pieces']} new pieces, vocab {s['base_pieces']} -> {s['pieces']} "
          f"(padded to {s['vocab_size']})")
    return 0


if __name__ == "__main__":
    run_cli(main)
