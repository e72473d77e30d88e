"""The train state, created directly in its sharded layout (jax.eval_shape + out_shardings)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ziya_jax.model.config import ModelConfig
from ziya_jax.model.llama import init_params, logical_axes
from ziya_jax.parallel import LOGICAL_AXIS_RULES, logical_to_sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    skipped: jax.Array            # updates skipped because of non-finite loss or gradients (total)
    nonfinite_run: jax.Array      # consecutive skipped updates up to now


def state_shardings(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """NamedShardings of every state leaf: params by logical axes, Adam moments like their params."""
    params_sh = logical_to_sharding(logical_axes(cfg), mesh)
    abstract = jax.eval_shape(lambda: _fresh(cfg, tx, jax.random.PRNGKey(0)))
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_sh = optax.tree_map_params(tx, lambda _, sh: sh, abstract.opt_state, params_sh,
                                   transform_non_params=lambda _: replicated)
    return TrainState(step=replicated, params=params_sh, opt_state=opt_sh, skipped=replicated,
                      nonfinite_run=replicated)


def _fresh(cfg: ModelConfig, tx, rng, params=None) -> TrainState:
    params = init_params(cfg, rng) if params is None else params
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, opt_state=tx.init(params), skipped=zero, nonfinite_run=zero)


def create_state(cfg: ModelConfig, tx, mesh: Mesh, rng: jax.Array, params: Any = None) -> TrainState:
    """A fresh state (or one around given params), materialised shard by shard on the mesh."""
    shardings = state_shardings(cfg, tx, mesh)
    with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
        if params is None:
            return jax.jit(lambda r: _fresh(cfg, tx, r), out_shardings=shardings)(rng)
        params = jax.device_put(params, shardings.params)
        return jax.jit(lambda p: _fresh(cfg, tx, None, p), out_shardings=shardings)(params)
