"""Model structure: precision policy, logical axes, scan/remat options, generation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ziya_jax.config import load_config, model_config
from ziya_jax.model import Llama
from ziya_jax.model.generate import generate, sample_logits
from ziya_jax.model.llama import REMAT_POLICIES, abstract_params, init_params, logical_axes
from ziya_jax.params_io import flatten_params


@pytest.fixture(scope="module")
def tiny():
    return model_config(load_config("configs/model.py:tiny"))


def test_precision_policy(tiny):
    params = init_params(tiny, jax.random.PRNGKey(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))  # fp32 master weights
    tokens = jnp.ones((2, 8), jnp.int32)
    logits, inter = Llama(tiny).apply({"params": params}, tokens, capture_intermediates=True)
    assert logits.dtype == jnp.float32                                              # fp32 logits
    flat = flatten_params(inter["intermediates"])
    assert flat[("layers_0", "mlp", "wo", "__call__")][0].dtype == jnp.bfloat16       # bf16 compute
    assert flat[("layers_0", "pre_attn_norm", "__call__")][0].dtype == jnp.bfloat16


def test_every_parameter_has_logical_axes(tiny):
    axes = flatten_params(logical_axes(tiny))
    shapes = flatten_params(abstract_params(tiny))
    assert set(axes) == set(shapes)
    allowed = {"embed", "vocab", "mlp", "heads", "kv_heads", "head_dim", "norm", "layers"}
    for path, spec in axes.items():
        assert len(spec) == len(shapes[path].shape), path
        assert set(spec) <= allowed, (path, spec)
    scanned = flatten_params(logical_axes(tiny.replace(scan_layers=True)))
    assert tuple(scanned[("layers", "attn", "key", "kernel")]) == ("layers", "embed", "kv_heads", "head_dim")


@pytest.mark.parametrize("policy", ["none"] + sorted(REMAT_POLICIES))
def test_scan_and_remat_give_the_same_loss_and_grads(tiny, policy):
    cfg = tiny.replace(dtype="float32")
    base = init_params(cfg, jax.random.PRNGKey(0))
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), base["layers_0"], base["layers_1"])
    scanned = {k: v for k, v in base.items() if not k.startswith("layers_")} | {"layers": stacked}
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (2, 16)))

    def loss(p, c):
        return jnp.mean(jax.nn.log_softmax(Llama(c).apply({"params": p}, tokens)) [..., 0])

    scfg = cfg.replace(scan_layers=True, remat_policy=policy)
    l0, g0 = jax.value_and_grad(loss)(base, cfg)
    l1, g1 = jax.jit(jax.value_and_grad(loss), static_argnums=1)(scanned, scfg)
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    np.testing.assert_allclose(g0["layers_1"]["mlp"]["wo"]["kernel"], g1["layers"]["mlp"]["wo"]["kernel"][1],
                               atol=1e-6)


def test_left_padded_batch_decodes_like_single_rows(tiny):
    cfg = tiny.replace(dtype="float32")
    params = init_params(cfg, jax.random.PRNGKey(1))
    r = np.random.RandomState(3)
    a, b = r.randint(3, 1000, (1, 9)), r.randint(3, 1000, (1, 5))
    batch = np.concatenate([a, np.concatenate([np.zeros((1, 4), int), b], axis=1)])
    mask = np.ones_like(batch)
    mask[1, :4] = 0
    out = generate(cfg, params, jnp.asarray(batch), jnp.asarray(mask), max_new_tokens=6)
    np.testing.assert_array_equal(out.tokens[0], generate(cfg, params, jnp.asarray(a), max_new_tokens=6).tokens[0])
    np.testing.assert_array_equal(out.tokens[1], generate(cfg, params, jnp.asarray(b), max_new_tokens=6).tokens[0])


def test_sampling():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    assert set(np.asarray(jax.vmap(lambda k: sample_logits(logits, k, 1.0, 0.7))(keys)).ravel()) == {0, 1}
    assert set(np.asarray(jax.vmap(lambda k: sample_logits(logits, k, 1.0, 0.01))(keys)).ravel()) == {0}
    freq = np.bincount(np.asarray(jax.vmap(lambda k: sample_logits(logits, k, 1.0, 1.0))(keys)).ravel(),
                       minlength=4) / 2000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.04)
    assert int(sample_logits(logits, keys[0], 0.0, 1.0)[0]) == 0


def test_generate_rejects_too_long(tiny):
    params = init_params(tiny, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len"):
        generate(tiny, params, jnp.ones((1, 500), jnp.int32), max_new_tokens=20)
