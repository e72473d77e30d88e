import pytest

from ziya_jax.config import load_config, model_config
from ziya_jax.model.config import ConfigError, ModelConfig


@pytest.mark.parametrize("preset,params", [("llama2-7b", 6.74e9), ("llama2-13b", 13.02e9),
                                           ("llama2-70b", 68.98e9), ("ziya2-13b", 13.09e9)])
def test_presets_have_published_sizes(preset, params):
    cfg = model_config(load_config(f"configs/model.py:{preset}"))
    assert abs(cfg.num_params - params) / params < 0.005


def test_ziya2_preset_matches_paper():
    cfg = model_config(load_config("configs/model.py:ziya2-13b"))
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_kv_heads) == (39424, 5120, 40, 40)
    assert cfg.vocab_size % 128 == 0 and cfg.param_dtype == "float32" and cfg.dtype == "bfloat16"
    assert model_config(load_config("configs/model.py:llama2-70b")).num_kv_heads == 8


def test_overrides_are_typed_and_unknown_keys_fail():
    cfg = load_config("configs/model.py:tiny", ["--config.model.num_layers=3", "--config.model.scan_layers=true",
                                                "--config.model.rope_theta=500000"])
    m = model_config(cfg)
    assert (m.num_layers, m.scan_layers, m.rope_theta) == (3, True, 500000.0)
    with pytest.raises(ConfigError, match="did you mean 'model.num_layers'"):
        load_config("configs/model.py:tiny", ["--config.model.num_layer=3"])
    with pytest.raises(ConfigError, match="expected int"):
        load_config("configs/model.py:tiny", ["--config.model.num_layers=three"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("configs/model.py:llama9")
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.py")


def test_model_config_validation():
    with pytest.raises(ConfigError, match="multiple of num_kv_heads"):
        ModelConfig(num_heads=8, num_kv_heads=3, hidden_size=64)
    with pytest.raises(ConfigError, match="unknown model key"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(ConfigError, match="remat_policy"):
        ModelConfig(remat_policy="sometimes")
