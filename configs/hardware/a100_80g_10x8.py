"""The paper's cluster: 80 x A100-80G as 10 nodes x 8 GPUs (section 4.4). FSDP over the 8 GPUs of
a node (NVLink), data parallel across the 10 nodes (InfiniBand), layers scanned, full remat,
640 x 4,096 tokens per step in 8 micro-batches (1 sequence per GPU per micro-batch).
Launch with tools/launch/slurm_a100.sbatch."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _base import train_config  # noqa: E402


def get_config(preset: str = "ziya2-13b"):
    cfg = train_config(preset)
    cfg.mesh.ici = {"data": 1, "fsdp": 8, "tensor": 1}
    cfg.mesh.dcn = {"data": 10, "fsdp": 1, "tensor": 1}
    cfg.model.scan_layers = True
    cfg.model.remat_policy = "full"
    cfg.batch.global_batch = 640
    cfg.batch.grad_accum = 8
    return cfg
