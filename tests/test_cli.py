"""The command line: help, config, init + generate through subprocesses."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "ziya_jax", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_help_lists_subcommands():
    out = _run("--help")
    assert out.returncode == 0
    for name in ("config", "init", "generate", "convert", "demo"):
        assert name in out.stdout


def test_unknown_config_key_is_one_line_error():
    out = _run("config", "--config", "configs/model.py:tiny", "--config.model.hidden=3")
    assert out.returncode == 2 and out.stderr.startswith("error:") and "unknown config key" in out.stderr


def test_init_then_generate(tmp_path):
    ckpt = tmp_path / "ck"
    out = _run("init", "--config", "configs/model.py:tiny", "--config.model.num_layers=1", "--out", str(ckpt))
    assert out.returncode == 0, out.stderr
    out = _run("generate", "--ckpt", str(ckpt), "--prompt-ids", "1,5,9", "--max-new-tokens", "4")
    assert out.returncode == 0, out.stderr
    ids = [int(x) for x in out.stdout.strip().split(",")]
    assert 1 <= len(ids) <= 4 and all(0 <= i < 1024 for i in ids)
    out = _run("generate", "--ckpt", str(tmp_path / "none"), "--prompt-ids", "1")
    assert out.returncode == 2 and "model config not found" in out.stderr
