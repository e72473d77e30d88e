"""Device meshes and the one table that maps logical axis names onto mesh axes.

The model names only logical axes; this module decides where they live. Mesh axes are
``data`` (pure data parallel, usually across slices/DCN), ``fsdp`` (parameter + batch
sharding, ZeRO-3 style) and ``tensor`` (Megatron-style tensor parallel).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    # activations
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_kv", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    # parameters
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("layers", None),
)


class MeshError(ValueError):
    """A mesh shape does not fit the available devices."""


def resolve_mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Fill one -1 entry so that the product equals `num_devices`."""
    shape = [int(sizes.get(a, 1)) for a in MESH_AXES]
    fill = [i for i, s in enumerate(shape) if s == -1]
    if len(fill) > 1:
        raise MeshError(f"mesh {dict(zip(MESH_AXES, shape))}: at most one axis may be -1")
    known = math.prod(s for s in shape if s != -1)
    if known <= 0 or num_devices % known:
        raise MeshError(f"mesh {dict(zip(MESH_AXES, shape))} does not divide {num_devices} devices; "
                        "choose axis sizes whose product divides the device count")
    if fill:
        shape[fill[0]] = num_devices // known
    if math.prod(shape) != num_devices:
        raise MeshError(f"mesh {dict(zip(MESH_AXES, shape))} uses {math.prod(shape)} devices but "
                        f"{num_devices} are present; set one axis to -1 to fill")
    return tuple(shape)


def make_mesh(ici: Mapping[str, int], dcn: Mapping[str, int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh over `devices` (default all): ICI sizes within a slice, DCN sizes across slices."""
    devices = list(devices if devices is not None else jax.devices())
    if dcn and math.prod(int(dcn.get(a, 1)) for a in MESH_AXES) > 1:
        from jax.experimental import mesh_utils

        dcn_shape = resolve_mesh_shape(dcn, math.prod(int(dcn.get(a, 1)) for a in MESH_AXES))
        ici_shape = resolve_mesh_shape(ici, len(devices) // math.prod(dcn_shape))
        grid = mesh_utils.create_hybrid_device_mesh(ici_shape, dcn_shape, devices)
    else:
        shape = resolve_mesh_shape(ici, len(devices))
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def logical_to_sharding(logical: Any, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> Any:
    """Map a tree of logical PartitionSpecs to NamedShardings on `mesh`."""
    return jax.tree_util.tree_map(
        lambda spec: NamedSharding(mesh, nn.logical_to_mesh_axes(spec, rules)), logical,
        is_leaf=lambda x: isinstance(x, PartitionSpec))
