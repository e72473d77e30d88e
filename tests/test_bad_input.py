"""Bad input gives one clear line naming the file, exit status 2, and no partial output."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ziya_jax
from hf_models import make_hf_model, save_hf_model
from tools.convert import hf_to_orbax
from ziya_jax.model.config import ModelConfig
from ziya_jax.params_io import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def hf_sharded(tmp_path_factory):
    return save_hf_model(make_hf_model("gqa"), tmp_path_factory.mktemp("hf") / "hf", max_shard_size="40KB")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_safetensors(hf_sharded, tmp_path):
    bad = _copy(hf_sharded, tmp_path / "hf")
    shard = sorted(bad.glob("*.safetensors"))[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    out = tmp_path / "out"
    proc = _cli("-m", "tools.convert.hf_to_orbax", "--hf-dir", str(bad), "--out", str(out), "--no-progress")
    _assert_one_line_error(proc, shard.name, "truncated")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_missing_shard(hf_sharded, tmp_path):
    bad = _copy(hf_sharded, tmp_path / "hf")
    shard = sorted(bad.glob("*.safetensors"))[0]
    shard.unlink()
    out = tmp_path / "out"
    proc = _cli("-m", "tools.convert.hf_to_orbax", "--hf-dir", str(bad), "--out", str(out), "--no-progress")
    _assert_one_line_error(proc, shard.name, "missing")
    assert not out.exists()


def test_wrong_config_json(hf_sharded, tmp_path):
    bad = _copy(hf_sharded, tmp_path / "hf")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_key_value_heads"] = cfg["num_attention_heads"]
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    proc = _cli("-m", "tools.convert.hf_to_orbax", "--hf-dir", str(bad), "--out", str(out), "--no-progress")
    _assert_one_line_error(proc, "k_proj", "config.json")
    assert not out.exists()


def test_invalid_config_json_and_missing_weights(tmp_path):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    proc = _cli("-m", "tools.convert.hf_to_orbax", "--hf-dir", str(d), "--out", str(tmp_path / "o"))
    _assert_one_line_error(proc, "config.json", "invalid JSON")
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 8, "hidden_size": 8,
                                               "intermediate_size": 8, "num_hidden_layers": 1,
                                               "num_attention_heads": 2}))
    proc = _cli("-m", "tools.convert.hf_to_orbax", "--hf-dir", str(d), "--out", str(tmp_path / "o"))
    _assert_one_line_error(proc, "model.safetensors")


def test_existing_output_is_not_overwritten(hf_sharded, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    proc = _cli("-m", "tools.convert.hf_to_orbax", "--hf-dir", str(hf_sharded), "--out", str(out), "--no-progress")
    _assert_one_line_error(proc, "already exists", "--overwrite")
    assert (out / "keep").read_text() == "x"


def test_corrupt_and_mismatched_orbax_checkpoints(hf_sharded, tmp_path):
    ckpt = tmp_path / "ckpt"
    hf_to_orbax.convert(hf_sharded, ckpt, progress=False)
    # another model size under the same params -> names what differs
    ModelConfig.load_json(ckpt / "model_config.json").replace(num_layers=5).save_json(tmp_path / "cfg.json")
    wrong = _copy(ckpt, tmp_path / "wrong")
    shutil.copy(tmp_path / "cfg.json", wrong / "model_config.json")
    with pytest.raises(CheckpointError, match="missing layers_3"):
        ziya_jax.load_pretrained(wrong)
    proc = _cli("-m", "tools.convert.orbax_to_hf", "--ckpt", str(wrong), "--out", str(tmp_path / "hfout"))
    _assert_one_line_error(proc, "do not match", "checkpoint has 3 layers, config has 5")
    assert not (tmp_path / "hfout").exists()
    # interrupted write: metadata missing
    broken = _copy(ckpt, tmp_path / "broken")
    (broken / "params" / "_METADATA").unlink()
    proc = _cli("-m", "tools.convert.orbax_to_hf", "--ckpt", str(broken), "--out", str(tmp_path / "hfout"))
    _assert_one_line_error(proc, "broken", "_METADATA")
    # tensor data destroyed
    gone = _copy(ckpt, tmp_path / "gone")
    shutil.rmtree(gone / "params" / "d")
    for p in (gone / "params").glob("ocdbt.process_*"):
        shutil.rmtree(p)
    proc = _cli("-m", "tools.convert.orbax_to_hf", "--ckpt", str(gone), "--out", str(tmp_path / "hfout"))
    _assert_one_line_error(proc, "gone")
    assert not (tmp_path / "hfout").exists()
