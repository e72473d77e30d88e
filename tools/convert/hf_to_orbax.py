"""Convert a Hugging Face LLaMA checkpoint to a ziya-jax Orbax checkpoint, one tensor at a time.

    python -m tools.convert.hf_to_orbax --hf-dir DIR --out CKPT [--scan-layers] [--dtype float32]

Reads config.json plus model.safetensors, a sharded model.safetensors.index.json, or
pytorch_model*.bin (loaded with weights_only=True). Peak memory is about one (stacked, when
--scan-layers) tensor. Output goes to a temporary directory renamed to CKPT only when complete.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tools.convert.common import (CONVERSION_FILE, DTYPE_NAMES, EXTRA_DIR, byte_progress, copy_extra_files,
                                  run_cli, write_json)
from tools.convert.hf_layout import IGNORED_HF, Leaf, config_from_hf, leaves, read_hf_config
from tools.convert.safetensors_io import CheckpointFormatError, TensorSource
from ziya_jax.model.config import ModelConfig
from ziya_jax.params_io import CONFIG_FILE, PARAMS_DIR, LazyArray, atomic_directory, save_params


def check_source(src: TensorSource, cfg: ModelConfig, source: str) -> None:
    """Every tensor the config implies is present with the right shape, and nothing else is."""
    problems = []
    expected: dict[str, tuple[int, ...]] = {}
    for leaf in leaves(cfg):
        for name in leaf.hf_names:
            expected[name] = leaf.rule.hf_shape(cfg)
    for name, shape in expected.items():
        if name not in src:
            problems.append(f"missing tensor {name}")
        elif src.shape(name) != shape:
            problems.append(f"{name} has shape {src.shape(name)} but config.json implies {shape}")
    extra = [n for n in src.names() if n not in expected and not n.endswith(IGNORED_HF)]
    problems += [f"unexpected tensor {n}" for n in extra]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise CheckpointFormatError(f"{source}: weights do not match config.json: {shown}")


def _lazy_leaf(src: TensorSource, leaf: Leaf, cfg: ModelConfig, dtype: np.dtype) -> LazyArray:
    """A leaf read from the source on demand; stacked leaves stream one layer at a time."""
    convert = lambda name: np.ascontiguousarray(leaf.rule.to_ours(src.read(name), cfg), dtype)  # noqa: E731
    name = "/".join(leaf.path)
    if leaf.stacked:
        return LazyArray(leaf.shape, dtype, name=name, slices=lambda: (convert(n) for n in leaf.hf_names))
    return LazyArray(leaf.shape, dtype, load=lambda: convert(leaf.hf_names[0]), name=name)


def convert(hf_dir: str | Path, out: str | Path, *, scan_layers: bool = False, dtype: str = "float32",
            overwrite: bool = False, progress: bool = True) -> ModelConfig:
    hf_dir = Path(hf_dir)
    hf_config = read_hf_config(hf_dir)
    cfg = config_from_hf(hf_config, str(hf_dir / "config.json"), scan_layers=scan_layers,
                         param_dtype=DTYPE_NAMES[dtype])
    src = TensorSource(hf_dir)
    check_source(src, cfg, str(hf_dir))
    np_dtype = np.dtype(cfg.param_dtype) if cfg.param_dtype != "bfloat16" else np.dtype("bfloat16")
    tree: dict = {}
    total = 0
    for leaf in leaves(cfg):
        node = tree
        for key in leaf.path[:-1]:
            node = node.setdefault(key, {})
        node[leaf.path[-1]] = _lazy_leaf(src, leaf, cfg, np_dtype)
        total += node[leaf.path[-1]].nbytes
    source_dtype = hf_config.get("torch_dtype") or hf_config.get("dtype") or str(src.read(leaves(cfg)[-2].hf_names[0]).dtype)
    update, close = byte_progress(total, f"hf->orbax {hf_dir.name}", progress)
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            save_params(tmp / PARAMS_DIR, tree, on_written=lambda leaf: update(leaf.nbytes))
            cfg.save_json(tmp / CONFIG_FILE)
            write_json(tmp / "hf_config.json", hf_config)
            extras = copy_extra_files(hf_dir, tmp / EXTRA_DIR)
            write_json(tmp / CONVERSION_FILE, {"source": str(hf_dir.absolute()), "source_dtype": str(source_dtype),
                                               "num_params": cfg.num_params, "hf_files": extras})
    finally:
        close()
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.convert.hf_to_orbax", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf-dir", required=True, help="Hugging Face LLaMA checkpoint directory")
    p.add_argument("--out", required=True, help="output ziya-jax checkpoint directory")
    p.add_argument("--scan-layers", action="store_true", help="stack layers for nn.scan (leading layer axis)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPE_NAMES), help="stored parameter dtype")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cfg = convert(a.hf_dir, a.out, scan_layers=a.scan_layers, dtype=a.dtype, overwrite=a.overwrite,
                  progress=not a.no_progress)
    print(f"wrote {a.out}: {cfg.num_params / 1e6:.1f}M parameters, {cfg.num_layers} layers, "
          f"{'scanned' if cfg.scan_layers else 'unscanned'}, {cfg.param_dtype}")
    return 0


if __name__ == "__main__":
    run_cli(main)
