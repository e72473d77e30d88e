"""Ziya2-13B on a TPU v4-128 slice (64 chips, 128 devices as the topology reports them): FSDP over
all devices, layers scanned, full remat, 640 x 4,096 tokens per step in 5 micro-batches."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import tpu_fsdp_slice  # noqa: E402


def get_config(preset: str = "ziya2-13b"):
    return tpu_fsdp_slice(preset, grad_accum=5)
