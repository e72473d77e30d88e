"""`python -m ziya_jax train`: the three-stage continual pre-training loop.

Load precedence: this workdir's newest complete checkpoint > `train.init_params` (a params-only
ziya-jax checkpoint, e.g. converted LLaMA2/Ziya2) > fresh init. The data position is the step:
batches are a pure function of (seed, step), so a restart continues exactly (bit for bit on
CPU). SIGTERM (TPU preemption, SLURM) saves the state and exits cleanly.
"""
from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import jax
import numpy as np

from ziya_jax.config import model_config
from ziya_jax.params_io import CheckpointError
from ziya_jax.parallel import make_mesh
from ziya_jax.train import checkpoint as ckpt
from ziya_jax.train.metrics import MetricsLog, device_peak_flops, memory_gb
from ziya_jax.train.optimizer import make_optimizer, schedule_steps, stage_at_step
from ziya_jax.train.state import create_state
from ziya_jax.train.step import BATCH_KEYS, batch_sharding, jit_train_step


class TrainingError(RuntimeError):
    pass


def maybe_initialize_distributed() -> None:
    """Multi-host init: TPU VM pods (no arguments), GPU clusters from SLURM or JAX_COORDINATOR_ADDRESS."""
    if jax.distributed.is_initialized():
        return
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                                   num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()       # cluster auto-detection (SLURM, TPU VM metadata)


class _Preemption:
    def __init__(self):
        self.requested = False
        self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._old)


def _stage_start_steps(ends: tuple[float, ...], tokens_per_step: int) -> list[int]:
    return [0] + [math.ceil(e / tokens_per_step) for e in ends[:-1]]


def train(cfg, workdir: str, config_source: str = "config") -> dict:
    from ziya_jax.stages.build import stage_mixture

    maybe_initialize_distributed()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = model_config(cfg, config_source)
    mesh = make_mesh(dict(cfg.mesh.ici), dict(cfg.mesh.dcn))
    G, L, accum = int(cfg.batch.global_batch), int(cfg.data.sequence_length), int(cfg.batch.grad_accum)
    if G % accum:
        raise TrainingError(f"batch.global_batch {G} is not divisible by batch.grad_accum {accum}")
    data_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if (G // accum) % data_shards:
        raise TrainingError(f"micro-batch {G // accum} rows cannot be split over data x fsdp = {data_shards} devices")
    tokens_per_step = G * L
    total_steps = schedule_steps(float(cfg.schedule.total_tokens), tokens_per_step)
    run_steps = int(cfg.train.steps) if int(cfg.train.steps) > 0 else total_steps
    tx, schedule = make_optimizer(cfg.optimizer, total_steps)
    ends = tuple(float(x) for x in cfg.schedule.stage_end_tokens)
    starts = _stage_start_steps(ends, tokens_per_step)

    from ziya_jax.train.export import write_run_config
    if jax.process_index() == 0:
        write_run_config(workdir, cfg)
    manager = ckpt.make_manager(workdir, cfg.checkpoint)
    state = create_state(model, tx, mesh, jax.random.PRNGKey(int(cfg.train.seed)))
    state, restored_step = ckpt.restore_latest(manager, state)
    if restored_step is not None:
        print(f"resumed from {manager.directory}/{restored_step}")
    elif cfg.train.init_params:
        from ziya_jax.params_io import check_params_match, load_params, param_shapes
        from ziya_jax.pretrained import expected_shapes
        check_params_match(model, param_shapes(cfg.train.init_params), expected_shapes(model), cfg.train.init_params)
        state = create_state(model, tx, mesh, jax.random.PRNGKey(0), params=load_params(cfg.train.init_params))
        print(f"initialised params from {cfg.train.init_params}")
    step = int(ckpt.host_scalar(state.step))
    step_fn = jit_train_step(model, tx, schedule, mesh, accum)
    bsh = batch_sharding(mesh)
    mixtures: dict[int, object] = {}
    log = MetricsLog(workdir)
    peak = device_peak_flops()
    flops_per_step = model.flops_per_token(L) * tokens_per_step
    preempt = _Preemption()
    reason = "finished"
    try:
        while step < run_steps:
            stage = max(int(cfg.data.start_stage), stage_at_step(step, ends, tokens_per_step))
            if stage not in mixtures:
                mixtures[stage] = stage_mixture(stage, cfg.data, G, jax.process_index(), jax.process_count(),
                                                model_vocab_size=model.vocab_size)
            local = mixtures[stage].host_batch(step - starts[stage - 1])
            batch = {k: jax.make_array_from_process_local_data(bsh, local[k]) for k in BATCH_KEYS}
            t0 = time.perf_counter()
            with jax.set_mesh(mesh):
                state, m = step_fn(state, batch)
            m = jax.device_get(m)
            dt = time.perf_counter() - t0
            step += 1
            first = restored_step is None and step == 1 or restored_step is not None and step == restored_step + 1
            values = {"loss": float(m["loss"]), "grad_norm": float(m["grad_norm"]),
                      "learning_rate": float(m["learning_rate"]), "stage": stage, "finite": bool(m["finite"]),
                      "loss_tokens": float(m["loss_tokens"]), "step_seconds": dt,
                      "tokens_per_s": None if first else tokens_per_step / dt,
                      "mfu": None if first or peak is None else flops_per_step / dt / (peak * jax.device_count())}
            values.update(memory_gb())
            log.write(step, values, console=step % int(cfg.train.log_every) == 0 or step == run_steps)
            run = int(ckpt.host_scalar(state.nonfinite_run))
            if run >= int(cfg.train.max_nonfinite_run):
                ckpt.save(manager, step, state, force=True)
                manager.wait_until_finished()
                raise TrainingError(f"{run} consecutive non-finite losses/gradients at step {step}; saved "
                                    f"{manager.directory}/{step}. Lower optimizer.peak_lr or inspect the data of "
                                    "the last steps, then resume")
            if preempt.requested:
                ckpt.save(manager, step, state, force=True)
                reason = "preempted (SIGTERM): state saved"
                break
            ckpt.save(manager, step, state)
        manager.wait_until_finished()
        if reason == "finished" and manager.latest_step() != step:
            ckpt.save(manager, step, state, force=True)
        manager.wait_until_finished()
    finally:
        preempt.restore()
        log.close()
        try:
            manager.close()
        except RuntimeError:      # orbax's async loop may already be gone after an error
            pass
    print(f"{reason} at step {step}; checkpoints in {workdir / 'checkpoints'}")
    return {"step": step, "reason": reason, "skipped": int(ckpt.host_scalar(state.skipped))}
