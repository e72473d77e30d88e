"""Conversion throughput and memory: a synthetic ~1.1B-parameter HF LLaMA both ways.

    python benchmarks/convert.py [--workdir DIR] [--keep]

Builds a bf16 checkpoint of TinyLlama-1.1B's shape (d=2048, 22 layers, GQA 32/4, vocab 32000)
in 500 MB safetensors shards, converts HF -> Orbax (fp32 master weights, scanned layers) and
Orbax -> HF (bf16), each in a fresh process, and prints one JSON line: seconds, MB/s of
checkpoint bytes read, and peak RSS above the interpreter's baseline (after imports).
Targets: peak RSS < 1.5 GB above baseline, >= 200 MB/s.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HF_CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000, hidden_size=2048,
                 intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                 max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0, torch_dtype="bfloat16",
                 tie_word_embeddings=False, hidden_act="silu")


def make_checkpoint(out: Path) -> int:
    import ml_dtypes
    import numpy as np

    from tools.convert.hf_layout import config_from_hf, leaves
    from tools.convert.safetensors_io import plan_shards, write_sharded

    cfg = config_from_hf(HF_CONFIG, "synthetic")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    planned = [(n, leaf.rule.hf_shape(cfg), bf16) for leaf in leaves(cfg) for n in leaf.hf_names]
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(1 << 22, dtype=np.float32) * 0.02).astype(bf16)

    def tensors():
        for name, shape, _ in planned:
            n = int(np.prod(shape))
            yield name, np.resize(pool, n).reshape(shape)

    out.mkdir(parents=True)
    write_sharded(out, plan_shards(planned, 500 * 10**6), tensors())
    (out / "config.json").write_text(json.dumps(HF_CONFIG))
    return sum(p.stat().st_size for p in out.glob("*.safetensors"))


def worker(direction: str, src: str, dst: str) -> None:
    from benchmarks._util import peak_rss_mb, rss_mb
    from tools.convert import hf_to_orbax, orbax_to_hf

    base = rss_mb()
    t0 = time.perf_counter()
    if direction == "hf_to_orbax":
        hf_to_orbax.convert(src, dst, scan_layers=True, progress=False)
    else:
        orbax_to_hf.convert(src, dst, dtype="bf16", progress=False)
    secs = time.perf_counter() - t0
    print(json.dumps({"seconds": secs, "baseline_rss_mb": base, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--worker", nargs=3, metavar=("DIRECTION", "SRC", "DST"))
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    if a.worker:
        return worker(*a.worker)
    from benchmarks._util import run_worker

    work = Path(a.workdir or tempfile.mkdtemp(prefix="ziya-convert-bench-"))
    try:
        hf_bytes = make_checkpoint(work / "hf")
        result = {"benchmark": "convert", "params": 1_100_048_384, "hf_bytes": hf_bytes,
                  "hf_shards": len(list((work / "hf").glob("*.safetensors")))}
        for direction, src, dst in (("hf_to_orbax", "hf", "ckpt"), ("orbax_to_hf", "ckpt", "hf_out")):
            r = run_worker(Path(__file__), direction, str(work / src), str(work / dst))
            result[direction] = {"seconds": round(r["seconds"], 2),
                                 "mb_per_s": round(hf_bytes / 1e6 / r["seconds"], 1),
                                 "peak_rss_above_baseline_mb": round(r["peak_rss_mb"] - r["baseline_rss_mb"], 1)}
        result["orbax_bytes"] = sum(f.stat().st_size for f in (work / "ckpt").rglob("*") if f.is_file())
        from tools.convert.safetensors_io import TensorSource
        a_src, b_src = TensorSource(work / "hf"), TensorSource(work / "hf_out")
        result["roundtrip_bit_identical"] = all(
            a_src.read(n).tobytes() == b_src.read(n).tobytes() for n in a_src.names()[:40])
        result["targets_met"] = all(result[d]["peak_rss_above_baseline_mb"] < 1536 and result[d]["mb_per_s"] >= 200
                                    for d in ("hf_to_orbax", "orbax_to_hf"))
        print(json.dumps(result))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
