"""Pieces shared by the converters: progress, extra HF files, error reporting."""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

from tqdm import tqdm

# Files of an HF model directory that are not weights but belong with them.
HF_EXTRA_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "added_tokens.json", "generation_config.json")
EXTRA_DIR = "hf_files"
CONVERSION_FILE = "conversion.json"
DTYPE_NAMES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32",
               "fp16": "float16", "float16": "float16"}


def copy_extra_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in HF_EXTRA_FILES:
        if (src / name).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def byte_progress(total: int, desc: str, enabled: bool) -> tuple[Callable[[int], None], Callable[[], None]]:
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled,
               file=sys.stderr, dynamic_ncols=True)
    return bar.update, bar.close


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def fail(message: str) -> None:
    """Print one error line and exit 2 at once (no interpreter teardown: Orbax's background
    threads would otherwise print unrelated 'event loop closed' tracebacks on the way out)."""
    import threading

    threading.excepthook = lambda args: None
    print(f"error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)


def quiet_absl() -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)


def run_cli(main: Callable[[], int]) -> None:
    """Run a converter; expected failures become one line on stderr and exit status 2."""
    from tools.convert.safetensors_io import CheckpointFormatError
    from ziya_jax.model.config import ConfigError
    from ziya_jax.params_io import CheckpointError
    from ziya_jax.tokenizer.extend import TokenizerError

    quiet_absl()
    try:
        code = main()
    except (CheckpointFormatError, ConfigError, CheckpointError, TokenizerError, FileExistsError) as e:
        fail(str(e))
    sys.exit(code)
