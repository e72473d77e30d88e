"""Shared helper of the hardware presets: the stage-1 training config with a model preset."""
from pathlib import Path

import ml_collections

ROOT = Path(__file__).resolve().parents[2]


def train_config(preset: str = "ziya2-13b") -> ml_collections.ConfigDict:
    from ziya_jax.config import load_config
    cfg = load_config(f"{ROOT / 'configs' / 'train' / 'ziya2_stage1.py'}:{preset}")
    return ml_collections.ConfigDict(cfg.to_dict())


def tpu_fsdp_slice(preset: str, grad_accum: int) -> ml_collections.ConfigDict:
    """Ziya2's 640 x 4,096-token step on a TPU slice: FSDP over every device, scanned layers, full remat."""
    cfg = train_config(preset)
    cfg.mesh.ici = {"data": 1, "fsdp": -1, "tensor": 1}
    cfg.model.scan_layers = True
    cfg.model.remat_policy = "full"
    cfg.batch.global_batch = 640
    cfg.batch.grad_accum = grad_accum
    return cfg
