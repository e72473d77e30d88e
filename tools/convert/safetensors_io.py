"""Streaming reader and writer for safetensors (and a weights-only reader for PyTorch .bin).

The reader parses every shard's header up front and checks that each tensor's bytes lie inside
its file, so a truncated or corrupt shard is reported before any output is written. Tensors
are then read one at a time. The writer plans shards from shapes alone, writes each header
first and streams tensor bytes after it, so a shard never has to be held in memory.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator

import ml_dtypes
import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
DTYPE_CODES = {np.dtype(v): k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024


class CheckpointFormatError(ValueError):
    """A source checkpoint file is malformed; the message names the file and the fix."""


def _read_header(path: Path) -> tuple[dict, int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointFormatError(f"{path}: {size} bytes is too short for a safetensors file; re-download it")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise CheckpointFormatError(f"{path}: header length {n} exceeds the file ({size} bytes); "
                                        "the file is truncated or not safetensors, re-download it")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointFormatError(f"{path}: corrupt safetensors header ({e}); re-download it") from None
    data_start = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") not in DTYPES:
            raise CheckpointFormatError(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        expected = int(np.prod(info["shape"], dtype=np.int64)) * np.dtype(DTYPES[info["dtype"]]).itemsize
        if end - begin != expected:
            raise CheckpointFormatError(f"{path}: tensor {name} spans {end - begin} bytes but shape "
                                        f"{info['shape']} {info['dtype']} needs {expected}; the file is corrupt")
        if data_start + end > size:
            raise CheckpointFormatError(f"{path}: truncated: tensor {name} ends at byte {data_start + end} "
                                        f"but the file has {size} bytes; re-download or re-copy it")
    return header, data_start


class TensorSource:
    """Named tensors of a Hugging Face checkpoint directory, read one at a time."""

    def __init__(self, hf_dir: str | Path):
        self.dir = Path(hf_dir)
        self._entries: dict[str, tuple[Path, dict, int]] = {}
        self._torch_files: dict[str, Path] = {}
        self._torch_cache: tuple[Path, dict] | None = None
        index = self.dir / "model.safetensors.index.json"
        single = self.dir / "model.safetensors"
        if index.is_file():
            self._load_index(index, self._add_safetensors)
        elif single.is_file():
            self._add_safetensors(single)
        elif (self.dir / "pytorch_model.bin.index.json").is_file():
            self._load_index(self.dir / "pytorch_model.bin.index.json", self._add_torch)
        elif (self.dir / "pytorch_model.bin").is_file():
            self._add_torch(self.dir / "pytorch_model.bin")
        else:
            raise CheckpointFormatError(
                f"{self.dir}: no model.safetensors, model.safetensors.index.json or pytorch_model*.bin found; "
                "point --hf-dir at a Hugging Face LLaMA checkpoint directory")

    def _load_index(self, index: Path, add: Callable[[Path], None]) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointFormatError(f"{index}: not a valid index file ({e!r}); re-download it") from None
        for shard in sorted(set(weight_map.values())):
            if not (self.dir / shard).is_file():
                raise CheckpointFormatError(f"{index}: shard {shard} is missing from {self.dir}; "
                                            "download every shard the index lists")
            add(self.dir / shard)
        missing = sorted(set(weight_map) - set(self._entries) - set(self._torch_files))
        if missing:
            raise CheckpointFormatError(f"{index}: tensors {missing[:5]} are listed but absent from their shards")

    def _add_safetensors(self, path: Path) -> None:
        header, start = _read_header(path)
        for name, info in header.items():
            if name != "__metadata__":
                self._entries[name] = (path, info, start)

    def _add_torch(self, path: Path) -> None:
        import torch

        try:  # weights_only: never unpickle arbitrary objects; mmap: no full copy in memory
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001
            raise CheckpointFormatError(f"{path}: cannot load as a weights-only PyTorch file ({e}); "
                                        "convert it to safetensors or re-download it") from None
        for name in state:
            self._torch_files[name] = path
        self._torch_cache = (path, state)

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._torch_files))

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._torch_files

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._entries:
            return tuple(self._entries[name][1]["shape"])
        return tuple(self._torch_state(name)[name].shape)

    def read(self, name: str) -> np.ndarray:
        if name in self._entries:
            path, info, start = self._entries[name]
            dtype = np.dtype(DTYPES[info["dtype"]])
            begin, end = info["data_offsets"]
            array = np.empty(info["shape"], dtype=dtype)
            with open(path, "rb") as f:
                f.seek(start + begin)
                got = f.readinto(array.reshape(-1).view(np.uint8))
            if got != end - begin:
                raise CheckpointFormatError(f"{path}: truncated while reading {name}; re-download it")
            return array
        if name in self._torch_files:
            return _torch_to_numpy(self._torch_state(name)[name])
        raise KeyError(name)

    def _torch_state(self, name: str) -> dict:
        path = self._torch_files[name]
        if self._torch_cache is None or self._torch_cache[0] != path:
            import torch

            self._torch_cache = (path, torch.load(path, map_location="cpu", weights_only=True, mmap=True))
        return self._torch_cache[1]


def _torch_to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


def parse_size(text: str) -> int:
    """'5GB' -> 5e9 bytes, '500MB', '2GiB', or a plain integer."""
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    s = text.strip().upper()
    for unit, factor in units.items():
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * factor)
    return int(s)


PlannedTensor = tuple[str, tuple[int, ...], np.dtype]


def plan_shards(tensors: Iterable[PlannedTensor], shard_size: int) -> list[list[PlannedTensor]]:
    shards: list[list[PlannedTensor]] = [[]]
    used = 0
    for name, shape, dtype in tensors:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if shards[-1] and used + nbytes > shard_size:
            shards.append([])
            used = 0
        shards[-1].append((name, tuple(shape), np.dtype(dtype)))
        used += nbytes
    return shards


def write_sharded(out_dir: Path, shards: list[list[PlannedTensor]],
                  tensors: Iterator[tuple[str, np.ndarray]], on_tensor: Callable[[int], None] | None = None) -> None:
    """Stream `tensors` (in planned order) into model-XXXXX-of-YYYYY.safetensors + index json.

    The next tensor is produced in a helper thread while the current one is written.
    """
    from ziya_jax.streaming import prefetch

    tensors = prefetch(tensors)
    n = len(shards)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{n:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, dtype in shard:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            header[name] = {"dtype": DTYPE_CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(out_dir / fname, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for name, shape, dtype in shard:
                got_name, array = next(tensors)
                if got_name != name or array.shape != shape or array.dtype != dtype:
                    raise RuntimeError(f"writer expected {name} {shape} {dtype}, got {got_name} {array.shape} {array.dtype}")
                f.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
                if on_tensor:
                    on_tensor(array.nbytes)
        total += offset
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
