"""Shared helper of the hardware presets: the stage-1 training config with a model preset."""
from pathlib import Path

import ml_collections

ROOT = Path(__file__).resolve().parents[2]


def train_config(preset: str = "ziya2-13b") -> ml_collections.ConfigDict:
    from ziya_jax.config import load_config
    cfg = load_config(f"{ROOT / 'configs' / 'train' / 'ziya2_stage1.py'}:{preset}")
    return ml_collections.ConfigDict(cfg.to_dict())
