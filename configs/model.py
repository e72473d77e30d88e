"""Model presets: `--config configs/model.py:NAME` with NAME one of PRESETS.

Shapes follow the public Hugging Face configs of Llama-2 and Ziya2 (see the paper digest,
sections 3.1 and 3.7). Ziya2-13B is LLaMA2-13B with 39,408 SentencePiece pieces plus
<human>/<bot>, padded to 39,424 rows, and rms_norm_eps 1e-6 as in its released config.
"""
import ml_collections

_LLAMA2_13B = dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_layers=40,
                   num_heads=40, num_kv_heads=40, max_seq_len=4096, rms_norm_eps=1e-5)

PRESETS = {
    # Tiny but complete (GQA, odd MLP width): for tests and the demo.
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=172, num_layers=2, num_heads=4,
                 num_kv_heads=2, max_seq_len=512, rms_norm_eps=1e-6),
    "llama2-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_layers=32,
                      num_heads=32, num_kv_heads=32, max_seq_len=4096, rms_norm_eps=1e-5),
    "llama2-13b": dict(_LLAMA2_13B),
    "llama2-70b": dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_layers=80,
                       num_heads=64, num_kv_heads=8, max_seq_len=4096, rms_norm_eps=1e-5),
    "ziya2-13b": dict(_LLAMA2_13B, vocab_size=39424, rms_norm_eps=1e-6),
}

_DEFAULTS = dict(head_dim=0, rope_theta=10000.0, initializer_range=0.02, bos_token_id=1, eos_token_id=2,
                 pad_token_id=0, param_dtype="float32", dtype="bfloat16", attention_impl="auto",
                 scan_layers=False, remat_policy="none")


def model_section(name: str) -> ml_collections.ConfigDict:
    if name not in PRESETS:
        raise KeyError(f"{name!r}; presets: {sorted(PRESETS)}")
    return ml_collections.ConfigDict({**_DEFAULTS, **PRESETS[name]})


def get_config(preset: str = "tiny") -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = model_section(preset or "tiny")
    return cfg
