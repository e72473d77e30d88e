"""Per-step metrics: throughput, MFU against the device's peak, device memory, console/JSONL/TensorBoard."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax

# Dense bf16 peak FLOP/s per device (vendor figures).
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
              "TPU v6 lite": 918e12, "TPU v6e": 918e12, "NVIDIA A100": 312e12, "NVIDIA H100": 989e12,
              "NVIDIA H200": 989e12, "NVIDIA H800": 989e12}


def device_peak_flops(device=None) -> float | None:
    kind = (device or jax.devices()[0]).device_kind
    for name, flops in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
        if kind.startswith(name) or name in kind:
            return flops
    return None


def memory_gb() -> dict:
    """Device memory in use / peak (GB) where the backend reports it; host RSS otherwise."""
    try:
        import jax_smi  # noqa: F401  (optional: `jax-smi` shows live usage from another shell)
    except ImportError:
        pass
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_in_use" in stats:
        return {"device_mem_gb": stats["bytes_in_use"] / 1e9, "device_peak_gb": stats.get("peak_bytes_in_use", 0) / 1e9}
    import psutil
    return {"host_rss_gb": psutil.Process(os.getpid()).memory_info().rss / 1e9}


class MetricsLog:
    """metrics.jsonl in the workdir (one line per step, appended across restarts), TensorBoard, console."""

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.enabled = enabled and jax.process_index() == 0
        self.path = Path(workdir) / "metrics.jsonl"
        self.writer = None
        if self.enabled:
            try:
                from clu import metric_writers
                self.writer = metric_writers.create_default_writer(str(Path(workdir) / "tensorboard"), asynchronous=False)
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self.writer = None

    def write(self, step: int, values: dict, console: bool) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")
        if self.writer is not None:
            self.writer.write_scalars(step, {k: v for k, v in values.items() if isinstance(v, (int, float))})
        if console:
            parts = [f"step {step}", f"loss {values['loss']:.4f}", f"gnorm {values['grad_norm']:.3f}",
                     f"lr {values['learning_rate']:.2e}"]
            if values.get("tokens_per_s"):
                parts.append(f"{values['tokens_per_s']:,.0f} tok/s")
            if values.get("mfu") is not None:
                parts.append(f"MFU {values['mfu']:.1%}")
            mem = values.get("device_mem_gb", values.get("host_rss_gb"))
            if mem is not None:
                parts.append(f"mem {mem:.2f} GB")
            print(" | ".join(parts), file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
