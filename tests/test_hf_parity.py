"""Parity with Hugging Face transformers (PyTorch): logits, KV-cache decoding, round trips."""
import json

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers

import ziya_jax
from hf_models import make_hf_model, save_hf_model
from tools.convert import hf_to_orbax, orbax_to_hf
from tools.convert.safetensors_io import TensorSource
from ziya_jax.params_io import param_shapes

CASES = [("mha", False), ("mha", True), ("gqa", False), ("gqa", True), ("odd", False), ("odd", True)]


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {k: (m, save_hf_model(m, root / k, max_shard_size="40KB"))
            for k, m in ((k, make_hf_model(k, seed=i)) for i, k in enumerate(("mha", "gqa", "odd")))}


@pytest.mark.parametrize("kind,scan", CASES)
def test_logits_and_roundtrip(hf_models, tmp_path, kind, scan):
    model, hf_dir = hf_models[kind]
    assert len(list(hf_dir.glob("*.safetensors"))) > 1  # the sharded index path is exercised
    ckpt = tmp_path / "ckpt"
    hf_to_orbax.convert(hf_dir, ckpt, scan_layers=scan, progress=False)
    stored = param_shapes(ckpt)
    assert (("layers", "attn", "query", "kernel") in stored) == scan

    ours = ziya_jax.load_pretrained(ckpt, dtype="float32")
    ids = np.random.RandomState(1).randint(0, model.config.vocab_size, (2, 19))
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    logits = ours(ids)
    assert logits.dtype == jnp.float32 and logits.shape == ref.shape
    assert np.abs(np.asarray(logits) - ref).max() <= 1e-4

    back = tmp_path / "back"
    orbax_to_hf.convert(ckpt, back, dtype="fp32", shard_size="30KB", progress=False)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(back)
    original = model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    # byte level too: every tensor identical in the safetensors files
    a, b = TensorSource(hf_dir), TensorSource(back)
    assert a.names() == b.names()
    for name in a.names():
        assert a.read(name).tobytes() == b.read(name).tobytes(), name


@pytest.mark.parametrize("kind,scan", [("gqa", True), ("odd", False)])
def test_kv_cache_decode_equals_full_forward(hf_models, tmp_path, kind, scan):
    model, hf_dir = hf_models[kind]
    hf_to_orbax.convert(hf_dir, tmp_path / "ckpt", scan_layers=scan, progress=False)
    ours = ziya_jax.load_pretrained(tmp_path / "ckpt", dtype="float32")
    prompt = np.random.RandomState(2).randint(3, model.config.vocab_size, (2, 7))
    out = ours.generate(prompt, max_new_tokens=12)
    # our greedy decode == argmax of our own full forward at every step
    seq = prompt
    for _ in range(12):
        nxt = np.asarray(ours(seq))[:, -1].argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(np.asarray(out.tokens), seq[:, 7:])
    # ... and == transformers' greedy generate
    with torch.no_grad():
        hf = model.generate(torch.tensor(prompt), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                            pad_token_id=0)[:, 7:].numpy()
    np.testing.assert_array_equal(np.asarray(out.tokens), hf)


def test_bf16_checkpoint_roundtrips_bit_identically(tmp_path):
    model = make_hf_model("gqa", seed=5, dtype=torch.bfloat16)
    hf_dir = save_hf_model(model, tmp_path / "hf")
    hf_to_orbax.convert(hf_dir, tmp_path / "ckpt", scan_layers=True, progress=False)
    orbax_to_hf.convert(tmp_path / "ckpt", tmp_path / "back", progress=False)  # default: source dtype
    assert json.loads((tmp_path / "back" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    a, b = TensorSource(hf_dir), TensorSource(tmp_path / "back")
    for name in a.names():
        x, y = a.read(name), b.read(name)
        assert x.dtype == y.dtype == ml_dtypes.bfloat16
        assert x.tobytes() == y.tobytes(), name


def test_pytorch_bin_input(tmp_path):
    """pytorch_model.bin (loaded with weights_only=True) converts like safetensors."""
    model = make_hf_model("mha", seed=3)
    hf_dir = tmp_path / "hfbin"
    hf_dir.mkdir()
    torch.save(model.state_dict(), hf_dir / "pytorch_model.bin")
    model.config.save_pretrained(hf_dir)
    hf_to_orbax.convert(hf_dir, tmp_path / "ckpt", progress=False)
    ours = ziya_jax.load_pretrained(tmp_path / "ckpt", dtype="float32")
    ids = np.arange(12)[None] % model.config.vocab_size
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    assert np.abs(np.asarray(ours(ids)) - ref).max() <= 1e-4


def test_packed_segments_equal_separate_sequences(hf_models, tmp_path):
    model, hf_dir = hf_models["gqa"]
    hf_to_orbax.convert(hf_dir, tmp_path / "ckpt", progress=False)
    ours = ziya_jax.load_pretrained(tmp_path / "ckpt", dtype="float32")
    r = np.random.RandomState(4)
    a, b = r.randint(0, 131, (1, 9)), r.randint(0, 131, (1, 6))
    packed = np.concatenate([a, b, np.zeros((1, 3), int)], axis=1)
    positions = np.concatenate([np.arange(9), np.arange(6), np.zeros(3)])[None]
    segments = np.array([[1] * 9 + [2] * 6 + [0] * 3])
    logits = np.asarray(ours(packed, positions, segments))
    np.testing.assert_allclose(logits[:, :9], np.asarray(ours(a)), atol=1e-5)
    np.testing.assert_allclose(logits[:, 9:15], np.asarray(ours(b)), atol=1e-5)
