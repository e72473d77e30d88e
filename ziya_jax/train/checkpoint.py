"""Orbax checkpoints of the train state: async saves every K steps, the last N kept plus milestones,
restore of the newest complete step (an unreadable one is skipped with a warning)."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from ziya_jax.params_io import CheckpointError


def make_manager(workdir: str | Path, ckpt_cfg) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(ckpt_cfg.keep), save_interval_steps=int(ckpt_cfg.every),
        keep_period=int(ckpt_cfg.milestone_every) or None, enable_async_checkpointing=bool(ckpt_cfg.async_save),
        create=True)
    return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def _abstract(state) -> object:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _check_shapes(manager, step: int, abstract) -> None:
    """Refuse a checkpoint written for another model size with a one-line error."""
    try:
        meta = manager.item_metadata(step)
    except Exception:  # noqa: BLE001 - metadata of a damaged step: let restore report it
        return
    tree = getattr(meta, "tree", meta)
    if tree is None:
        return
    params_meta = tree.get("params") if isinstance(tree, dict) else getattr(tree, "params", None)
    if params_meta is None:
        return
    flat_meta = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(params_meta)[0]}
    flat_want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(abstract.params)[0]}
    for key, want in flat_want.items():
        have = flat_meta.get(key)
        shape = tuple(getattr(have, "shape", ()) or ())
        if have is not None and shape and shape != tuple(want.shape):
            raise CheckpointError(f"{manager.directory}/{step}: params{key} has shape {shape} but the model needs "
                                  f"{tuple(want.shape)}; this workdir holds another model size, use a new --workdir")
        if have is None:
            raise CheckpointError(f"{manager.directory}/{step}: no params{key}; this workdir holds another model, "
                                  "use a new --workdir")


def restore_latest(manager: ocp.CheckpointManager, state) -> tuple[object, int | None]:
    """(restored state, step) from the newest readable step, or (state, None) when there is none."""
    abstract = _abstract(state)
    for step in sorted(manager.all_steps(), reverse=True):
        _check_shapes(manager, step, abstract)
        try:
            restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as e:  # noqa: BLE001 - truncated/corrupt step: fall back to an older one
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            print(f"warning: checkpoint step {step} in {manager.directory} is unreadable ({msg}); "
                  "trying the previous one")
            continue
        return restored, step
    return state, None


def save(manager: ocp.CheckpointManager, step: int, state, force: bool = False) -> bool:
    return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def host_scalar(x) -> float:
    return float(np.asarray(jax.device_get(x)))
