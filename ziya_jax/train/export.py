"""Export the params of a training run's newest checkpoint as a ziya-jax checkpoint (then to HF with
tools.convert.orbax_to_hf), and measure perplexity on held-out packed rows."""
from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import numpy as np

from ziya_jax.params_io import CheckpointError

RUN_CONFIG = "train_config.json"


def write_run_config(workdir: Path, cfg) -> None:
    from ziya_jax.data.io import atomic_write_text
    atomic_write_text(Path(workdir) / RUN_CONFIG, cfg.to_json_best_effort(indent=2))


def load_run_config(workdir: str | Path):
    import ml_collections
    path = Path(workdir) / RUN_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{workdir}: no {RUN_CONFIG}; pass the --workdir of a `python -m ziya_jax train` run")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def export_params(workdir: str, out: str, overwrite: bool = False) -> dict:
    from ziya_jax.config import model_config
    from ziya_jax.parallel import make_mesh
    from ziya_jax.pretrained import save_pretrained
    from ziya_jax.train import checkpoint as ckpt
    from ziya_jax.train.optimizer import make_optimizer
    from ziya_jax.train.state import create_state

    cfg = load_run_config(workdir)
    model = model_config(cfg)
    tx, _ = make_optimizer(cfg.optimizer, 1)
    mesh = make_mesh({"fsdp": 1}, devices=jax.devices()[:1])
    manager = ckpt.make_manager(workdir, cfg.checkpoint)
    try:
        state, step = ckpt.restore_latest(manager, create_state(model, tx, mesh, jax.random.PRNGKey(0)))
    finally:
        manager.close()
    if step is None:
        raise CheckpointError(f"{workdir}/checkpoints holds no complete checkpoint to export")
    save_pretrained(out, model, state.params, overwrite=overwrite)
    return {"workdir": str(workdir), "step": step, "out": out, "num_params": model.num_params}


def perplexity(params, model_cfg, batches: list[dict]) -> dict:
    """Token-weighted perplexity of packed rows (features as produced by the stage mixtures)."""
    from ziya_jax.train.step import loss_sums
    f = jax.jit(lambda p, b: loss_sums(model_cfg, p, b))
    nll = tokens = 0.0
    for b in batches:
        l, w = f(params, {k: np.asarray(v) for k, v in b.items() if k != "source"})
        nll, tokens = nll + float(l), tokens + float(w)
    return {"tokens": tokens, "nll_per_token": nll / tokens, "perplexity": math.exp(nll / tokens)}
