"""Train step: sharded meshes match one device; accumulation matches one batch; non-finite updates skipped."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ziya_jax.config import load_config, model_config
from ziya_jax.parallel import make_mesh
from ziya_jax.train.optimizer import make_optimizer, stage_at_step
from ziya_jax.train.state import create_state
from ziya_jax.train.step import BATCH_KEYS, batch_sharding, jit_train_step

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")

OPT = ml_collections.ConfigDict(dict(peak_lr=1e-3, end_lr=1e-5, warmup_fraction=0.01, b1=0.9, b2=0.95, eps=1e-8,
                                     weight_decay=0.1, clip_norm=1.0))


def _cfg():
    return model_config(load_config("configs/model.py:tiny")).replace(dtype="float32", num_heads=8, num_kv_heads=2,
                                                                    hidden_size=128, scan_layers=True)


def _batches(cfg, n, batch=8, length=32):
    out = []
    for i in range(n):
        rng = np.random.RandomState(i % 2)                # two batches alternate, so the loss must fall
        tok = rng.randint(3, cfg.vocab_size, (batch, length + 1)).astype(np.int32)
        seg = np.ones((batch, length), np.int32)
        seg[:, length // 2:] = 2                          # two packed documents per row
        seg[0, -5:] = 0                                   # and some padding
        pos = np.where(seg == 2, np.arange(length) - length // 2, np.arange(length)) * (seg > 0)
        w = ((seg > 0) & (np.roll(seg, -1, 1) == seg)).astype(np.float32)
        out.append({"input_tokens": tok[:, :-1], "target_tokens": tok[:, 1:], "loss_weights": w,
                    "segment_ids": seg, "positions": pos.astype(np.int32)})
    return out


def _losses(ici, steps=3, grad_accum=1, devices=None):
    cfg = _cfg()
    mesh = make_mesh(ici, devices=devices)
    tx, schedule = make_optimizer(OPT, total_steps=100)
    state = create_state(cfg, tx, mesh, jax.random.PRNGKey(0))
    step = jit_train_step(cfg, tx, schedule, mesh, grad_accum)
    losses = []
    with jax.set_mesh(mesh):
        for b in _batches(cfg, steps):
            b = {k: jax.device_put(v, batch_sharding(mesh)) for k, v in b.items()}
            state, m = step(state, b)
            losses.append(float(m["loss"]))
    return losses, state


@pytest.fixture(scope="module")
def single_device():
    return _losses({"fsdp": 1}, devices=jax.devices()[:1])


@pytest.mark.parametrize("ici", [{"fsdp": 8}, {"data": 2, "fsdp": 4}, {"fsdp": 4, "tensor": 2}])
def test_sharded_losses_equal_single_device(single_device, ici):
    ref, _ = single_device
    losses, state = _losses(ici)
    assert ref[0] > ref[-1]                                   # it learns
    np.testing.assert_allclose(losses, ref, rtol=2e-5)        # fp32 compute; reductions reorder across shards
    if ici == {"fsdp": 8}:
        leaves = jax.tree_util.tree_leaves(state.params)
        total = sum(x.nbytes for x in leaves)
        replicated = sum(x.nbytes for x in leaves if x.sharding.is_fully_replicated)
        assert replicated / total < 0.02
        mu = jax.tree_util.tree_leaves(state.opt_state)
        assert any(not x.sharding.is_fully_replicated for x in mu if x.ndim >= 2)   # Adam moments sharded too


def test_gradient_accumulation_matches_full_batch(single_device):
    ref, _ = single_device
    losses, _ = _losses({"fsdp": 8}, grad_accum=2)
    np.testing.assert_allclose(losses, ref, rtol=2e-5)


def test_nonfinite_update_is_skipped():
    cfg = _cfg()
    mesh = make_mesh({"fsdp": 8})
    tx, schedule = make_optimizer(OPT, total_steps=100)
    state = create_state(cfg, tx, mesh, jax.random.PRNGKey(0))
    before = jax.tree_util.tree_map(np.asarray, state.params)
    step = jit_train_step(cfg, tx, schedule, mesh)
    b = _batches(cfg, 1)[0]
    b["loss_weights"] = b["loss_weights"] * np.nan
    with jax.set_mesh(mesh):
        state, m = step(state, {k: jax.device_put(v, batch_sharding(mesh)) for k, v in b.items()})
    assert not bool(m["finite"]) and int(state.skipped) == 1 and int(state.nonfinite_run) == 1 and int(state.step) == 1
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), state.params, before)


def test_schedule_and_stages():
    tx, schedule = make_optimizer(OPT, total_steps=1000)
    assert float(schedule(0)) == 0.0 and float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(1000)) == pytest.approx(1e-5)
    assert [stage_at_step(s, (650e9, 697e9, 700e9), 2_621_440) for s in (0, 247_000, 248_000, 266_000, 300_000)] == \
        [1, 1, 2, 3, 3]
