"""The model's hyper-parameters: one frozen dataclass, validated, JSON round-trippable."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

ATTENTION_IMPLS = ("auto", "xla", "cudnn", "splash")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "qkv_proj", "qkv_out_proj", "minimal")


class ConfigError(ValueError):
    """A configuration is malformed; the message names the key and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """LLaMA2-family decoder hyper-parameters (HF `LlamaConfig` names in comments)."""

    vocab_size: int = 32000                 # vocab_size (embedding rows, padded)
    hidden_size: int = 4096                 # hidden_size
    intermediate_size: int = 11008          # intermediate_size
    num_layers: int = 32                    # num_hidden_layers
    num_heads: int = 32                     # num_attention_heads
    num_kv_heads: int = 32                  # num_key_value_heads (GQA when < num_heads)
    head_dim: int = 0                       # 0 = hidden_size // num_heads
    max_seq_len: int = 4096                 # max_position_embeddings (size of the RoPE table)
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0
    # Precision policy (see ziya_jax/precision.py): master params and compute dtypes.
    param_dtype: str = "float32"
    dtype: str = "bfloat16"
    # Execution options (do not change the parameters' values, only how they run).
    attention_impl: str = "auto"
    scan_layers: bool = False
    remat_policy: str = "none"

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            if self.hidden_size % self.num_heads:
                raise ConfigError(
                    f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                    "set head_dim explicitly")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "max_seq_len"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"model.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ConfigError(f"model.attention_impl={self.attention_impl!r}; choose one of {ATTENTION_IMPLS}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ConfigError(f"model.remat_policy={self.remat_policy!r}; choose one of {REMAT_POLICIES}")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise ConfigError(f"model.{name}={getattr(self, name)!r}; use float32, bfloat16 or float16")

    @property
    def num_params(self) -> int:
        d, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        q = d * self.num_heads * self.head_dim
        kv = 2 * d * self.num_kv_heads * self.head_dim
        per_layer = q + kv + q + 3 * d * f + 2 * d
        return 2 * v * d + self.num_layers * per_layer + d

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6N plus causal attention scores."""
        matmul_params = self.num_params - self.vocab_size * self.hidden_size - (2 * self.num_layers + 1) * self.hidden_size
        attn = 6 * self.num_layers * self.num_heads * self.head_dim * seq_len  # 12*L*H*hd*T/2 (causal)
        return 6.0 * matmul_params + attn

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown model key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**dict(values))

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_json(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: model config not found; is this a ziya-jax checkpoint directory?") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e}); re-create it with the converter") from None
        return cls.from_dict(values, source=str(path))
