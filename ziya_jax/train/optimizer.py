"""Ziya2's optimiser (paper section 4.2): AdamW (0.9, 0.95), weight decay 0.1, global-norm clip 1.0,
linear warmup over 1% of the run, cosine decay to 1e-5. One schedule spans all three stages; stage
boundaries are token counts, turned into steps by the tokens of a global batch."""
from __future__ import annotations

import math
from typing import Any

import jax
import optax


def schedule_steps(total_tokens: float, tokens_per_step: int) -> int:
    return max(1, math.ceil(total_tokens / tokens_per_step))


def make_schedule(opt_cfg, total_steps: int) -> optax.Schedule:
    warmup = max(1, int(round(float(opt_cfg.warmup_fraction) * total_steps)))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=float(opt_cfg.peak_lr), warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=float(opt_cfg.end_lr))


def decay_mask(params: Any) -> Any:
    """Weight decay on matrices only; norm scales (1-D, or 2-D when stacked by nn.scan) are excluded."""
    def is_matrix(path, leaf) -> bool:
        names = [getattr(k, "key", str(k)) for k in path]
        return "scale" not in names and leaf.ndim >= 2
    return jax.tree_util.tree_map_with_path(is_matrix, params)


def make_optimizer(opt_cfg, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = make_schedule(opt_cfg, total_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(float(opt_cfg.clip_norm)),
        optax.adamw(schedule, b1=float(opt_cfg.b1), b2=float(opt_cfg.b2), eps=float(opt_cfg.eps),
                    weight_decay=float(opt_cfg.weight_decay), mask=decay_mask))
    return tx, schedule


def stage_at_step(step: int, boundaries_tokens: tuple[float, ...], tokens_per_step: int) -> int:
    """1-based stage of a step: stage k ends when boundaries_tokens[k-1] tokens have been consumed."""
    consumed = step * tokens_per_step
    for k, end in enumerate(boundaries_tokens, 1):
        if consumed < end:
            return k
    return len(boundaries_tokens)
