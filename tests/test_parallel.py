"""Logical axes -> mesh: sharded forward equals single-device on 8 fake CPU devices."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ziya_jax.config import load_config, model_config
from ziya_jax.model import Llama
from ziya_jax.model.llama import init_params, logical_axes
from ziya_jax.parallel import LOGICAL_AXIS_RULES, MeshError, logical_to_sharding, make_mesh, resolve_mesh_shape

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


def test_mesh_shapes():
    assert resolve_mesh_shape({"fsdp": -1}, 8) == (1, 8, 1)
    assert resolve_mesh_shape({"data": 2, "fsdp": -1, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(MeshError, match="does not divide 8 devices"):
        resolve_mesh_shape({"fsdp": 3}, 8)
    with pytest.raises(MeshError, match="at most one axis"):
        resolve_mesh_shape({"fsdp": -1, "tensor": -1}, 8)


@pytest.mark.parametrize("ici", [{"fsdp": 8}, {"data": 2, "fsdp": 4}, {"fsdp": 4, "tensor": 2}])
def test_sharded_forward_equals_single_device(ici):
    cfg = model_config(load_config("configs/model.py:tiny")).replace(dtype="float32", num_heads=8, num_kv_heads=2,
                                                                    hidden_size=128, scan_layers=True)
    params = init_params(cfg, jax.random.PRNGKey(0))
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (8, 32)))
    ref = Llama(cfg).apply({"params": params}, tokens)

    mesh = make_mesh(ici)
    shardings = logical_to_sharding(logical_axes(cfg), mesh)
    sharded = jax.device_put(params, shardings)
    embed = sharded["embed"]["embedding"]
    assert embed.sharding.spec == PartitionSpec("tensor", "fsdp")  # vocab on tensor, embed on fsdp
    batch_sharding = NamedSharding(mesh, nn.logical_to_mesh_axes(("activation_batch", "activation_length"),
                                                                 LOGICAL_AXIS_RULES))

    @jax.jit
    def forward(p, t):
        with nn.logical_axis_rules(LOGICAL_AXIS_RULES):
            return Llama(cfg).apply({"params": p}, t)

    with jax.set_mesh(mesh):
        out = forward(sharded, jax.device_put(tokens, batch_sharding))
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-5)


def test_fsdp_replicates_little():
    cfg = model_config(load_config("configs/model.py:tiny")).replace(scan_layers=True, hidden_size=128)
    mesh = make_mesh({"fsdp": 8})
    shardings = jax.tree_util.tree_leaves(logical_to_sharding(logical_axes(cfg), mesh))
    shapes = jax.tree_util.tree_leaves(jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0))))
    total = sum(np.prod(s.shape) for s in shapes)
    replicated = sum(np.prod(s.shape) for s, sh in zip(shapes, shardings) if sh.is_fully_replicated)
    assert replicated / total < 0.02, replicated / total   # only the norm scales
