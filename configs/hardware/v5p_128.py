"""Ziya2-13B on a TPU v5p-128 slice (64 chips): FSDP over all chips, layers scanned, full remat,
640 x 4,096 tokens per step in 2 micro-batches. `python -m ziya_jax preflight --config
configs/hardware/v5p_128.py --topology v5p:4x4x4` compiles it on a CPU host (README figures)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import tpu_fsdp_slice  # noqa: E402


def get_config(preset: str = "ziya2-13b"):
    return tpu_fsdp_slice(preset, grad_accum=2)
