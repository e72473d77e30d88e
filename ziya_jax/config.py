"""Load `ml_collections` Python config files with command-line overrides; unknown keys are errors.

    load_config("configs/model.py:ziya2-13b", ["--config.model.scan_layers=True"])

A config file defines ``get_config(arg: str | None = None) -> ConfigDict``. Overrides use the
Flax-examples syntax ``--config.a.b=value``; values are parsed as Python literals and must keep
the type of the key they replace.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from ziya_jax.model.config import ConfigError, ModelConfig

OVERRIDE_PREFIX = "--config."


def _import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"ziya_config_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot import as a Python config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Load `path.py[:arg]` and apply `--config.key=value` overrides; the result is locked."""
    file_part, _, arg = spec.partition(":")
    path = Path(file_part)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (expected e.g. configs/model.py:tiny)")
    module = _import_file(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    try:
        cfg = module.get_config(arg) if arg else module.get_config()
    except KeyError as e:
        raise ConfigError(f"{path}: unknown preset {arg!r} ({e})") from None
    cfg = ml_collections.ConfigDict(cfg)
    cfg.lock()
    for item in overrides:
        apply_override(cfg, item, source=str(path))
    return cfg


def _parse_value(text: str, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text}: expected a boolean (true/false)")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if current is None or isinstance(current, str):
        return value if current is None else str(text)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(current)(value)
    if type(value) is not type(current):
        raise ConfigError(f"--config.{key}={text}: expected {type(current).__name__}, got {type(value).__name__}")
    return value


def apply_override(cfg: ml_collections.ConfigDict, item: str, source: str = "config") -> None:
    """Apply one `--config.a.b=value` (or `a.b=value`) override in place."""
    body = item[len(OVERRIDE_PREFIX):] if item.startswith(OVERRIDE_PREFIX) else item
    if "=" not in body:
        raise ConfigError(f"override {item!r} must look like --config.key=value")
    key, text = body.split("=", 1)
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth])
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            known = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            hint = difflib.get_close_matches(part, known, n=1)
            raise ConfigError(f"{source}: unknown config key {key!r}"
                              + (f" (did you mean {'.'.join(filter(None, [here, hint[0]]))!r}?)" if hint else "")
                              + (f"; keys under {here or 'the root'}: {sorted(known)}" if known else ""))
        if depth == len(parts) - 1:
            with node.unlocked():
                node[part] = _parse_value(text, node[part], key)
        else:
            node = node[part]


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate `--config.x=y` overrides from the other command-line arguments."""
    overrides = [a for a in argv if a.startswith(OVERRIDE_PREFIX)]
    return [a for a in argv if not a.startswith(OVERRIDE_PREFIX)], overrides


def model_config(cfg: ml_collections.ConfigDict, source: str = "config") -> ModelConfig:
    if "model" not in cfg:
        raise ConfigError(f"{source}: has no 'model' section")
    return ModelConfig.from_dict(cfg.model.to_dict(), source=f"{source}: model")
