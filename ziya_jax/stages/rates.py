"""Token rates of each stage's sources (paper section 4.1), from the `stages` config.

Pure Python: the trainer reads its stage mixtures through this without importing SeqIO or TF.
"""
from __future__ import annotations

STAGE1_GROUPS = ("zh", "en", "code")


def stage_token_rates(stage: int, cfg) -> dict[str, float]:
    """Token rates per task for a stage, from the `stages` config (normalised to sum 1)."""
    s1 = {f"ziya2_stage1_{g}": float(cfg.stage1_rates[g]) for g in STAGE1_GROUPS}
    total1 = sum(s1.values())
    s1 = {k: v / total1 for k, v in s1.items()}
    if stage == 1:
        return s1
    if stage == 2:
        replay = float(cfg.stage2_replay_fraction)
        return {"ziya2_stage2_supervised": 1 - replay} | {k: replay * v for k, v in s1.items()}
    if stage == 3:
        budgets = {"metamath": float(cfg.stage3_tokens.metamath), "stage1": float(cfg.stage3_tokens.stage1_replay),
                   "stage2": float(cfg.stage3_tokens.stage2_replay)}
        total = sum(budgets.values())
        return ({"ziya2_stage3_metamath": budgets["metamath"] / total,
                 "ziya2_stage2_supervised": budgets["stage2"] / total}
                | {k: budgets["stage1"] / total * v for k, v in s1.items()})
    raise ValueError(f"stage {stage} is not 1, 2 or 3")
