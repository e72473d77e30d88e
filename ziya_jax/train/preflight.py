"""Ahead-of-time compile of the real train step for a TPU topology, on this (CPU) host.

    python -m ziya_jax preflight --config configs/train/ziya2_stage1.py:ziya2-13b --topology v5p:4x4x4

Uses the PyPI `libtpu` through `jax.experimental.topologies`: no TPU is needed. The state and
batch are abstract (shapes + shardings only); `compile().memory_analysis()` gives the bytes per
device for arguments (params + optimiser state + batch), outputs, temporaries and code, which are
compared with the device's HBM.
"""
from __future__ import annotations

import math
import os

import jax
import numpy as np
from jax.sharding import NamedSharding

from ziya_jax.config import model_config
from ziya_jax.parallel import make_mesh

HBM_PER_CHIP_GB = {"v4": 32.0, "v5e": 16.0, "v5litepod": 16.0, "v5p": 95.0, "v6e": 32.0}


class PreflightError(RuntimeError):
    pass


def topology_devices(name: str):
    # Pre-flight only compiles: no TPU is opened, so libtpu's one-process-per-host lockfile must not
    # stop two pre-flights (or a pre-flight beside a test run) on the same machine.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies
        topo = topologies.get_topology_desc(topology_name=name, platform="tpu")
    except Exception as e:  # noqa: BLE001 - missing libtpu or unknown topology
        raise PreflightError(f"cannot build TPU topology {name!r} ({type(e).__name__}: {str(e)[:160]}); install "
                             "libtpu matching jax (pip install 'jax[tpu]==<jax version>') and use names like "
                             "v5p:4x4x4 or v4:4x4x4") from None
    return topo.devices


def hbm_per_device_gb(name: str, num_devices: int) -> float | None:
    gen, _, dims = name.partition(":")
    chips = math.prod(int(d) for d in dims.split("x")) if dims else num_devices
    per_chip = HBM_PER_CHIP_GB.get(gen)
    return None if per_chip is None else per_chip * chips / num_devices


def preflight(cfg, topology: str, config_source: str = "config") -> dict:
    from ziya_jax.train.optimizer import make_optimizer, schedule_steps
    from ziya_jax.train.state import _fresh, state_shardings
    from ziya_jax.train.step import BATCH_KEYS, batch_sharding, make_train_step

    devices = topology_devices(topology)
    model = model_config(cfg, config_source)
    mesh = make_mesh(dict(cfg.mesh.ici), dict(cfg.mesh.dcn), devices=devices)
    G, L, accum = int(cfg.batch.global_batch), int(cfg.data.sequence_length), int(cfg.batch.grad_accum)
    if (G // accum) % (mesh.shape["data"] * mesh.shape["fsdp"]):
        raise PreflightError(f"micro-batch {G // accum} rows cannot be split over data x fsdp = "
                             f"{mesh.shape['data'] * mesh.shape['fsdp']} devices")
    tx, schedule = make_optimizer(cfg.optimizer, schedule_steps(float(cfg.schedule.total_tokens), G * L))
    shardings = state_shardings(model, tx, mesh)
    abstract = jax.eval_shape(lambda: _fresh(model, tx, jax.random.PRNGKey(0)))
    state = jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    bsh = batch_sharding(mesh)
    dtypes = {"loss_weights": np.float32}
    batch = {k: jax.ShapeDtypeStruct((G, L), dtypes.get(k, np.int32), sharding=bsh) for k in BATCH_KEYS}
    replicated = NamedSharding(mesh, jax.sharding.PartitionSpec())
    step = jax.jit(make_train_step(model, tx, schedule, accum), in_shardings=(shardings, {k: bsh for k in BATCH_KEYS}),
                   out_shardings=(shardings, replicated), donate_argnums=(0,))
    with jax.set_mesh(mesh):
        compiled = step.lower(state, batch).compile()
    mem = compiled.memory_analysis()
    gb = lambda n: round(n / 1e9, 2)
    args, out, temp, code = (int(getattr(mem, k, 0)) for k in (
        "argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "generated_code_size_in_bytes"))
    alias = int(getattr(mem, "alias_size_in_bytes", 0))
    total = args + out - alias + temp + code
    hbm = hbm_per_device_gb(topology, len(devices))
    return {"topology": topology, "devices": len(devices), "device_kind": devices[0].device_kind,
            "mesh": dict(mesh.shape), "model_params_b": round(model.num_params / 1e9, 3), "seq_len": L,
            "global_batch": G, "tokens_per_step": G * L, "grad_accum": accum, "remat_policy": model.remat_policy,
            "per_device_gb": {"arguments": gb(args), "outputs": gb(out), "aliased": gb(alias), "temporaries": gb(temp),
                              "code": gb(code), "total": gb(total)},
            "per_device_bytes": {"arguments": args, "temporaries": temp, "total": total},
            "hbm_per_device_gb": hbm, "fits": None if hbm is None else total / 1e9 <= hbm}
