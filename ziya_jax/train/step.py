"""The jitted train step: weighted next-token cross-entropy, gradient accumulation, non-finite skip.

The loss is sum(weight * nll) / sum(weight) over the whole global batch, so accumulating over
micro-batches gives the same update as one big batch. The softmax runs in fp32 (paper section
3.3). A non-finite loss or gradient leaves params and optimiser state untouched and is counted.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ziya_jax.model import Llama
from ziya_jax.model.config import ModelConfig
from ziya_jax.parallel import LOGICAL_AXIS_RULES
from ziya_jax.train.state import TrainState

BATCH_KEYS = ("input_tokens", "target_tokens", "loss_weights", "segment_ids", "positions")


def loss_sums(cfg: ModelConfig, params, batch) -> tuple[jax.Array, jax.Array]:
    """(sum of weighted token NLL, sum of weights) of a batch."""
    with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        logits = Llama(cfg).apply({"params": params}, batch["input_tokens"], batch["positions"], batch["segment_ids"])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, batch["target_tokens"][..., None], axis=-1)[..., 0]
    w = batch["loss_weights"].astype(jnp.float32)
    return jnp.sum(nll * w), jnp.sum(w)


def make_train_step(cfg: ModelConfig, tx: optax.GradientTransformation, schedule, grad_accum: int = 1):
    def grads_of(params, batch):
        def micro(carry, mb):
            g_acc, l_acc, w_acc = carry
            (l, w), g = jax.value_and_grad(lambda p: loss_sums(cfg, p, mb), has_aux=True)(params)
            return (jax.tree_util.tree_map(jnp.add, g_acc, g), l_acc + l, w_acc + w), None

        if grad_accum == 1:
            (l, w), g = jax.value_and_grad(lambda p: loss_sums(cfg, p, batch), has_aux=True)(params)
        else:
            micro_batches = jax.tree_util.tree_map(
                lambda x: x.reshape((grad_accum, x.shape[0] // grad_accum) + x.shape[1:]), batch)
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
            (g, l, w), _ = jax.lax.scan(micro, (zeros, jnp.zeros(()), jnp.zeros(())), micro_batches)
        denom = jnp.maximum(w, 1.0)
        return jax.tree_util.tree_map(lambda x: x / denom, g), l / denom, w

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict[str, Any]]:
        grads, loss, tokens = grads_of(state.params, batch)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = state.replace(
            step=state.step + 1, params=keep(new_params, state.params), opt_state=keep(new_opt, state.opt_state),
            skipped=state.skipped + (~finite).astype(jnp.int32),
            nonfinite_run=jnp.where(finite, 0, state.nonfinite_run + 1))
        metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
                   "loss_tokens": tokens, "finite": finite}
        return new_state, metrics

    return train_step


def batch_sharding(mesh):
    from jax.sharding import NamedSharding
    return NamedSharding(mesh, nn.logical_to_mesh_axes(("activation_batch", "activation_length"), LOGICAL_AXIS_RULES))


def jit_train_step(cfg: ModelConfig, tx, schedule, mesh, grad_accum: int = 1):
    """The step jitted with explicit shardings: state in and out alike (donated), batch over (data, fsdp)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from ziya_jax.train.state import state_shardings
    shardings = state_shardings(cfg, tx, mesh)
    bsh = batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(make_train_step(cfg, tx, schedule, grad_accum),
                   in_shardings=(shardings, {k: bsh for k in BATCH_KEYS}),
                   out_shardings=(shardings, replicated), donate_argnums=(0,))
