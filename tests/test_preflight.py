"""Pre-flight: the real train step compiles for a TPU topology on this CPU host (PyPI libtpu)."""
import pytest

from ziya_jax.config import load_config
from ziya_jax.parallel import MeshError
from ziya_jax.train.preflight import PreflightError, preflight

TINY = ["--config.batch.global_batch=8", "--config.data.sequence_length=128", "--config.model.scan_layers=true",
        "--config.model.remat_policy=full"]


def test_tiny_model_on_v5p_slice():
    r = preflight(load_config("configs/train/ziya2_stage1.py:tiny", TINY), "v5p:2x2x1")
    assert r["devices"] == 4 and r["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    assert r["device_kind"].startswith("TPU v5") and r["hbm_per_device_gb"] == 95.0
    gb = r["per_device_gb"]
    assert 0 < gb["total"] < 1 and r["fits"] is True
    # more sequences per device need more temporaries
    big = preflight(load_config("configs/train/ziya2_stage1.py:tiny", TINY + ["--config.batch.global_batch=64"]),
                    "v5p:2x2x1")
    assert big["per_device_bytes"]["temporaries"] > 1.4 * r["per_device_bytes"]["temporaries"]


def test_preflight_bad_input():
    with pytest.raises(PreflightError, match="cannot build TPU topology 'v9:1x1'"):
        preflight(load_config("configs/train/ziya2_stage1.py:tiny", TINY), "v9:1x1")
    with pytest.raises(MeshError, match="does not divide 4 devices"):
        preflight(load_config("configs/train/ziya2_stage1.py:tiny", TINY + ["--config.mesh.ici.fsdp=3"]), "v5p:2x2x1")
    with pytest.raises(PreflightError, match="cannot be split over data x fsdp = 4"):
        preflight(load_config("configs/train/ziya2_stage1.py:tiny", TINY + ["--config.batch.global_batch=6"]), "v5p:2x2x1")


def test_hardware_presets_load():
    for name, accum, ici, dcn in (("v5p_128", 2, -1, 1), ("v4_128", 5, -1, 1), ("a100_80g_10x8", 8, 8, 10)):
        c = load_config(f"configs/hardware/{name}.py")
        assert c.model.vocab_size == 39424 and c.batch.global_batch == 640 and c.batch.grad_accum == accum
        assert c.mesh.ici.fsdp == ici and c.mesh.dcn.data == dcn and c.model.remat_policy == "full"
