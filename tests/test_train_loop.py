"""The training loop through its CLI: exact resume (clean stop, kill -9, SIGTERM), fallback from a damaged
checkpoint, and clear errors for bad configs, meshes and checkpoints of another model size."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ziya_jax.stages.cache import write_cache

ROOT = Path(__file__).resolve().parents[1]
L, STEPS = 32, 30


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_caches")
    rng = np.random.default_rng(0)
    for task in ("ziya2_stage1_zh", "ziya2_stage1_en", "ziya2_stage1_code"):
        def rows():
            for _ in range(48):
                tok = rng.integers(3, 1024, L + 1).astype(np.int32)
                seg = np.ones(L + 1, np.int32)
                seg[L // 2:] = 2
                yield tok, seg
        write_cache(root / task, rows(), L, {"task": task, "vocabulary": "synthetic", "vocab_size": 1024,
                                             "mask_documents": True})
    return root


def _args(caches, workdir, steps, *extra):
    return ["train", "--config", "configs/train/ziya2_stage1.py:tiny", "--workdir", str(workdir),
            f"--config.data.cache_dir={caches}", f"--config.data.sequence_length={L}", "--config.batch.global_batch=4",
            f"--config.schedule.total_tokens={STEPS * 4 * L}", f"--config.train.steps={steps}",
            "--config.checkpoint.every=1", "--config.checkpoint.keep=50", "--config.optimizer.peak_lr=3e-3", *extra]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)                      # one CPU device: fast compiles
    return env


def _run(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ziya_jax", *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _start(args):
    return subprocess.Popen([sys.executable, "-m", "ziya_jax", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _losses(workdir) -> dict[int, float]:
    out = {}
    for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["loss"]                   # a re-run step overwrites the lost one
    return out


def _wait_for_steps(workdir, n, proc, timeout=240):
    t0 = time.time()
    path = Path(workdir) / "metrics.jsonl"
    while time.time() - t0 < timeout:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("training did not reach the step in time")


@pytest.fixture(scope="module")
def reference(caches, tmp_path_factory):
    work = tmp_path_factory.mktemp("ref")
    res = _run(_args(caches, work, STEPS))
    assert res.returncode == 0, res.stderr[-3000:]
    losses = _losses(work)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert np.mean([losses[s] for s in range(STEPS - 4, STEPS + 1)]) < np.mean([losses[s] for s in range(1, 6)])
    return losses


def test_stop_and_resume_is_bit_exact(caches, reference, tmp_path):
    assert _run(_args(caches, tmp_path, STEPS // 2)).returncode == 0
    res = _run(_args(caches, tmp_path, STEPS))
    assert res.returncode == 0 and f"resumed from" in res.stdout, res.stderr[-2000:]
    assert _losses(tmp_path) == reference


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_interrupted_run_resumes_bit_exact(caches, reference, tmp_path, how):
    proc = _start(_args(caches, tmp_path, STEPS))
    _wait_for_steps(tmp_path, 8, proc)
    proc.send_signal(signal.SIGKILL if how == "kill9" else signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if how == "sigterm":
        assert proc.returncode == 0 and "preempted (SIGTERM): state saved" in out, err[-2000:]
    else:
        assert proc.returncode == -signal.SIGKILL
    done = len(_losses(tmp_path))
    assert done < STEPS
    res = _run(_args(caches, tmp_path, STEPS))
    assert res.returncode == 0, res.stderr[-2000:]
    assert _losses(tmp_path) == reference


def test_damaged_checkpoint_falls_back(caches, reference, tmp_path):
    assert _run(_args(caches, tmp_path, 6)).returncode == 0
    latest = tmp_path / "checkpoints" / "6"
    files = sorted((p for p in latest.rglob("*") if p.is_file() and p.stat().st_size > 0), key=lambda p: -p.stat().st_size)
    for f in files[:3]:                                   # truncate the largest data files of step 6
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size // 3)
    res = _run(_args(caches, tmp_path, 8))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "checkpoint step 6 in" in res.stdout and "is unreadable" in res.stdout and "resumed from" in res.stdout
    assert f"{tmp_path / 'checkpoints'}/5" in res.stdout
    losses = _losses(tmp_path)
    assert [losses[s] for s in range(1, 9)] == [reference[s] for s in range(1, 9)]


def test_bad_configs_and_checkpoints(caches, tmp_path):
    res = _run(_args(caches, tmp_path / "a", 2, "--config.train.bogus=1"))
    assert res.returncode == 2 and res.stderr.startswith("error:") and "unknown config key" in res.stderr
    res = _run(_args(caches, tmp_path / "b", 2, "--config.mesh.ici.fsdp=3"))
    assert res.returncode == 2 and "does not divide 1 devices" in res.stderr
    assert _run(_args(caches, tmp_path / "c", 2)).returncode == 0
    res = _run(_args(caches, tmp_path / "c", 4, "--config.model.hidden_size=128"))
    assert res.returncode == 2 and res.stderr.startswith("error:") and "another model size" in res.stderr, res.stderr[-1500:]
    res = _run(_args(caches, tmp_path / "d", 2, f"--config.data.cache_dir={tmp_path / 'nothing'}"))
    assert res.returncode == 2 and "stage 1 needs ziya2_stage1_zh" in res.stderr


def test_init_params_and_nonfinite_stop(caches, tmp_path):
    env_args = ["--config", "configs/model.py:tiny"]
    assert _run(["init", *env_args, "--out", str(tmp_path / "init")]).returncode == 0
    res = _run(_args(caches, tmp_path / "w", 2, f"--config.train.init_params={tmp_path / 'init'}"))
    assert res.returncode == 0 and f"initialised params from {tmp_path / 'init'}" in res.stdout, res.stderr[-1500:]
    assert _run(["init", *env_args, "--config.model.hidden_size=128", "--out", str(tmp_path / "init128")]).returncode == 0
    res = _run(_args(caches, tmp_path / "w2", 2, f"--config.train.init_params={tmp_path / 'init128'}"))
    assert res.returncode == 2 and res.stderr.startswith("error:") and "init128" in res.stderr, res.stderr[-1500:]
    res = _run(_args(caches, tmp_path / "w3", 20, "--config.optimizer.peak_lr=1e30", "--config.train.max_nonfinite_run=2"))
    assert res.returncode == 2 and "2 consecutive non-finite losses/gradients" in res.stderr, res.stderr[-1500:]
    assert (tmp_path / "w3" / "checkpoints").is_dir()
