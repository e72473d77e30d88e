"""Parameter checkpoints on disk: streaming Orbax saves, partial restores, atomic directories.

A ziya-jax checkpoint directory holds ``model_config.json`` and ``params/`` (a standard Orbax
PyTree checkpoint of the Flax ``params`` tree). Leaves may be `LazyArray`s: each is produced
and written one at a time, so saving a converted model needs memory for one tensor, not the
whole model. Restoring reads back plain numpy arrays (or sharded jax arrays, for training).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from orbax.checkpoint._src.serialization import ocdbt_utils
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils
from orbax.checkpoint._src.serialization import type_handlers as _type_handlers
from orbax.checkpoint._src.serialization.types import ParamInfo

from ziya_jax.model.config import ModelConfig
from ziya_jax.streaming import prefetch

PARAMS_DIR = "params"
CONFIG_FILE = "model_config.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match the model."""


class LazyArray:
    """A leaf whose value is produced on demand (shape and dtype known up front).

    Give `load` for the whole array, or `slices` yielding the arrays along the leading axis in
    order (a stacked leaf, one layer at a time): then it is written one slice at a time, in
    chunks of one slice, and never exists whole in memory.
    """

    def __init__(self, shape: Sequence[int], dtype: Any, load: Callable[[], np.ndarray] | None = None,
                 name: str = "", slices: Callable[[], Iterator[np.ndarray]] | None = None):
        if (load is None) == (slices is None):
            raise ValueError("LazyArray needs exactly one of load= or slices=")
        self.shape, self.dtype, self.name = tuple(int(s) for s in shape), np.dtype(dtype), name
        self._load, self.slices = load, slices

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def load(self) -> np.ndarray:
        if self._load is None:
            return np.stack(list(self.slices())).astype(self.dtype, copy=False)
        value = np.asarray(self._load())
        if value.shape != self.shape:
            raise CheckpointError(f"{self.name}: produced shape {value.shape}, expected {self.shape}")
        return value.astype(self.dtype, copy=False)


class _StreamingHandler(_type_handlers.NumpyHandler):
    """Writes LazyArray leaves one after another, recorded as ordinary numpy arrays.

    Converted weights are stored uncompressed (float weights gain little from zstd and it
    halves conversion throughput); any Orbax reader opens them as usual.
    """

    def __init__(self, on_written: Callable[[LazyArray], None] | None = None):
        super().__init__(deepcopy_host_arrays=False)
        self.on_written = on_written

    async def _background_serialize(self, values, infos, args):
        stores = []
        for value, info, arg in zip(values, infos, args):
            await info.await_path_creation()
            info.use_compression = False
            spec = ts_utils.build_array_write_spec(
                info=info, arg=arg, global_shape=value.shape, local_shape=value.shape, dtype=value.dtype,
                use_ocdbt=info.is_ocdbt_checkpoint,
                process_index=ocdbt_utils.get_process_index_for_subdir(use_ocdbt=info.is_ocdbt_checkpoint),
                metadata_key=self._metadata_key).json
            if value.slices is not None:
                spec["metadata"]["chunks"] = (1,) + tuple(value.shape[1:])
            stores.append(await ts.open(ts.Spec(spec), create=True, open=True, context=info.ts_context))

        def produce():  # runs in a helper thread, one piece ahead of the writes
            for k, value in enumerate(values):
                if value.slices is None:
                    yield k, None, value.load()
                else:
                    count = 0
                    for i, part in enumerate(value.slices()):
                        yield k, i, np.asarray(part, value.dtype)
                        count += 1
                    if count != value.shape[0]:
                        raise CheckpointError(f"{value.name}: produced {count} slices, expected {value.shape[0]}")

        for k, index, array in prefetch(produce()):
            target = stores[k] if index is None else stores[k][index]
            await target.write(array, can_reference_source_data_indefinitely=True)
            del array
            value = values[k]
            if self.on_written and (index is None or index == value.shape[0] - 1):
                self.on_written(value)


_HANDLER = _StreamingHandler()
_prev_level = logging.getLogger("absl").level
logging.getLogger("absl").setLevel(logging.ERROR)  # the registry warns that we reuse 'np.ndarray'
ocp.type_handlers.register_type_handler(LazyArray, _HANDLER, override=True)
logging.getLogger("absl").setLevel(_prev_level)


@contextlib.contextmanager
def atomic_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `out`; rename it to `out` only if the block succeeds."""
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another output or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def save_params(directory: str | Path, params: Mapping[str, Any],
                on_written: Callable[[LazyArray], None] | None = None) -> None:
    """Save a params tree (numpy/jax arrays or LazyArray leaves) as an Orbax checkpoint."""
    _HANDLER.on_written = on_written
    try:
        ocp.PyTreeCheckpointer().save(Path(directory).absolute(), dict(params))
    finally:
        _HANDLER.on_written = None


def flatten_params(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested dict -> {path tuple: leaf}."""
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = value
    return flat


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def params_dir(ckpt: str | Path) -> Path:
    ckpt = Path(ckpt).absolute()
    params = ckpt / PARAMS_DIR
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no such checkpoint directory")
    if not (params / "_METADATA").is_file():
        raise CheckpointError(f"{ckpt}: no complete Orbax params checkpoint at {params} "
                              "(missing _METADATA); was the conversion interrupted? Convert again")
    if (params / "manifest.ocdbt").is_file() and not any(
            p.is_dir() for p in [params / "d", *params.glob("ocdbt.process_*")]):
        raise CheckpointError(f"{ckpt}: the tensor data of {params} is missing (no d/ or ocdbt.process_*/); "
                              "the checkpoint is incomplete, convert or save it again")
    return params


def param_shapes(ckpt: str | Path) -> dict[tuple[str, ...], tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of every stored leaf, read from the checkpoint metadata only."""
    directory = params_dir(ckpt)
    try:
        meta = ocp.PyTreeCheckpointer().metadata(directory).item_metadata
    except Exception as e:  # noqa: BLE001 - orbax raises many types for corrupt metadata
        raise CheckpointError(f"{directory}: unreadable checkpoint metadata ({type(e).__name__}: {e})") from None
    if meta is None:
        raise CheckpointError(f"{directory}: checkpoint metadata or tensor data is missing; "
                              "the checkpoint is corrupt or incomplete, convert or save it again")
    return {path: (tuple(m.shape), np.dtype(m.dtype)) for path, m in flatten_params(dict(meta)).items()}


def read_leaves(ckpt: str | Path, paths: Sequence[tuple[str, ...]],
                shapes: Mapping[tuple[str, ...], tuple[tuple[int, ...], Any]] | None = None,
                ) -> dict[tuple[str, ...], np.ndarray]:
    """Restore only `paths` (others are skipped), as numpy arrays; `shapes` as from param_shapes."""
    directory = params_dir(ckpt)
    shapes = shapes if shapes is not None else param_shapes(ckpt)
    wanted = set(paths)
    missing = wanted - set(shapes)
    if missing:
        raise CheckpointError(f"{directory}: missing parameters {sorted('/'.join(p) for p in missing)}")
    item = {p: (np.zeros((), shapes[p][1]) if p in wanted else ocp.PLACEHOLDER) for p in shapes}
    args = {p: (ocp.RestoreArgs(restore_type=np.ndarray) if p in wanted else ocp.PLACEHOLDER) for p in shapes}
    try:
        restored = ocp.PyTreeCheckpointer().restore(
            directory, args=ocp.args.PyTreeRestore(item=_unflatten(item), restore_args=_unflatten(args)))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{directory}: cannot read {sorted('/'.join(p) for p in wanted)[:3]}... "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              "the checkpoint is corrupt or incomplete, convert again") from None
    flat = flatten_params(restored)
    return {p: flat[p] for p in paths}


def iter_leaf_slices(ckpt: str | Path, path: tuple[str, ...]) -> Iterator[np.ndarray]:
    """Yield a stored leaf one leading-axis slice at a time (a stacked leaf layer by layer)."""
    directory = params_dir(ckpt)
    use_zarr3 = bool(json.loads((directory / "_METADATA").read_text()).get("use_zarr3", False))
    context = ts_utils.get_ts_context(use_ocdbt=True)
    info = ParamInfo(name=".".join(path), parent_dir=directory, is_ocdbt_checkpoint=True, use_zarr3=use_zarr3,
                     ts_context=context)
    try:
        store = ts.open(ts_utils.build_array_read_spec(info, use_ocdbt=True).json, open=True,
                        context=context).result()
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{directory}: cannot open {'/'.join(path)} ({e}); the checkpoint is "
                              "corrupt or incomplete") from None
    for i in range(store.shape[0]):
        yield store[i].read().result()


def load_params(ckpt: str | Path) -> dict[str, Any]:
    """Restore the whole params tree as numpy arrays."""
    shapes = param_shapes(ckpt)
    return _unflatten(read_leaves(ckpt, list(shapes), shapes=shapes))


def load_model_config(ckpt: str | Path) -> ModelConfig:
    return ModelConfig.load_json(Path(ckpt) / CONFIG_FILE)


def check_params_match(cfg: ModelConfig, stored: Mapping[tuple[str, ...], tuple[tuple[int, ...], Any]],
                       expected: Mapping[tuple[str, ...], tuple[int, ...]], where: str) -> None:
    """Raise a CheckpointError naming every missing, unexpected or mis-shaped parameter."""
    problems = []
    for path in sorted(set(expected) - set(stored)):
        problems.append(f"missing {'/'.join(path)}")
    for path in sorted(set(stored) - set(expected)):
        problems.append(f"unexpected {'/'.join(path)}")
    for path in sorted(set(stored) & set(expected)):
        if tuple(stored[path][0]) != tuple(expected[path]):
            problems.append(f"{'/'.join(path)} has shape {tuple(stored[path][0])}, model expects {tuple(expected[path])}")
    if problems:
        layers = _stored_layers(stored)
        if layers is not None and layers != cfg.num_layers:
            problems.insert(0, f"checkpoint has {layers} layers, config has {cfg.num_layers}")
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} problems)" if len(problems) > 6 else "")
        raise CheckpointError(f"{where}: parameters do not match the model config "
                              f"(layers={cfg.num_layers}, hidden={cfg.hidden_size}, scan_layers={cfg.scan_layers}): {shown}")


def _stored_layers(stored: Mapping[tuple[str, ...], Any]) -> int | None:
    """Number of decoder layers in a stored tree (scanned or unscanned), if recognisable."""
    unscanned = {p[0] for p in stored if p[0].startswith("layers_")}
    if unscanned:
        return len(unscanned)
    scanned = [shape for p, (shape, _) in stored.items() if p[0] == "layers" and shape]
    return int(scanned[0][0]) if scanned else None
