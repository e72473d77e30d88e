"""Convert a ziya-jax Orbax checkpoint to a Hugging Face LLaMA directory, one tensor at a time.

    python -m tools.convert.orbax_to_hf --ckpt CKPT --out DIR [--dtype bf16|fp32] [--shard-size 5GB]

Writes model-XXXXX-of-YYYYY.safetensors shards, model.safetensors.index.json and config.json
that transformers.LlamaForCausalLM.from_pretrained loads (plus tokenizer files kept at import).
The default dtype is the one the checkpoint was imported from (bfloat16 for fresh checkpoints).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from tools.convert.common import (CONVERSION_FILE, DTYPE_NAMES, EXTRA_DIR, byte_progress, copy_extra_files,
                                  run_cli, write_json)
from tools.convert.hf_layout import config_to_hf, leaves
from tools.convert.safetensors_io import parse_size, plan_shards, write_sharded
from ziya_jax.model.config import ModelConfig
from ziya_jax.params_io import (atomic_directory, check_params_match, iter_leaf_slices, load_model_config,
                                param_shapes, read_leaves)


def _default_dtype(ckpt: Path) -> str:
    try:
        return DTYPE_NAMES.get(json.loads((ckpt / CONVERSION_FILE).read_text())["source_dtype"], "bfloat16")
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return "bfloat16"


def convert(ckpt: str | Path, out: str | Path, *, dtype: str | None = None, shard_size: str = "5GB",
            overwrite: bool = False, progress: bool = True) -> ModelConfig:
    ckpt = Path(ckpt)
    cfg = load_model_config(ckpt)
    stored = param_shapes(ckpt)
    layout = leaves(cfg)
    check_params_match(cfg, stored, {leaf.path: leaf.shape for leaf in layout}, str(ckpt))
    dtype_name = DTYPE_NAMES[dtype] if dtype else _default_dtype(ckpt)
    out_dtype = np.dtype(dtype_name)
    planned = [(name, leaf.rule.hf_shape(cfg), out_dtype) for leaf in layout for name in leaf.hf_names]
    shards = plan_shards(planned, parse_size(shard_size))

    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        for leaf in layout:
            if leaf.stacked:  # one layer at a time, straight from tensorstore
                for name, layer in zip(leaf.hf_names, iter_leaf_slices(ckpt, leaf.path)):
                    yield name, np.ascontiguousarray(leaf.rule.to_hf(layer, cfg), out_dtype)
            else:
                value = read_leaves(ckpt, [leaf.path], shapes=stored)[leaf.path]
                yield leaf.hf_names[0], np.ascontiguousarray(leaf.rule.to_hf(value, cfg), out_dtype)
                del value

    total = sum(int(np.prod(s)) * out_dtype.itemsize for _, s, _ in planned)
    update, close = byte_progress(total, f"orbax->hf {ckpt.name}", progress)
    base = None
    if (ckpt / "hf_config.json").is_file():
        base = json.loads((ckpt / "hf_config.json").read_text())
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            write_sharded(tmp, shards, tensors(), on_tensor=update)
            write_json(tmp / "config.json", config_to_hf(cfg, dtype_name, base))
            copy_extra_files(ckpt / EXTRA_DIR, tmp)
    finally:
        close()
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.convert.orbax_to_hf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="ziya-jax checkpoint directory")
    p.add_argument("--out", required=True, help="output Hugging Face directory")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPE_NAMES), help="tensor dtype in the output")
    p.add_argument("--shard-size", default="5GB", help="maximum bytes per safetensors shard (e.g. 5GB, 500MB)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cfg = convert(a.ckpt, a.out, dtype=a.dtype, shard_size=a.shard_size, overwrite=a.overwrite,
                  progress=not a.no_progress)
    print(f"wrote {a.out}: {cfg.num_params / 1e6:.1f}M parameters")
    return 0


if __name__ == "__main__":
    run_cli(main)
