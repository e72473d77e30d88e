"""Training config: `python -m ziya_jax train --config configs/train/ziya2_stage1.py[:PRESET] --workdir DIR`.

PRESET picks the model (configs/model.py; default ziya2-13b). Override any key with
`--config.SECTION.KEY=VALUE`; unknown keys are refused. Defaults follow the paper (section 4.2):
AdamW 0.9/0.95, weight decay 0.1, clip 1.0, 1% warmup, cosine to 1e-5 over 700B tokens with stage
boundaries at 650B (stage 1), 697B (stage 2) and 700B (stage 3); ~2.6M tokens per step
(640 x 4,096).
"""
import sys
from pathlib import Path

import ml_collections

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from configs.model import model_section  # noqa: E402


def _stages():
    from ziya_jax.config import load_config
    return load_config(str(Path(__file__).resolve().parents[1] / "data" / "stages.py"))


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.model = model_section(preset or "ziya2-13b")
    cfg.data = ml_collections.ConfigDict(_stages().to_dict())
    cfg.data.start_stage = 1            # this config starts at stage 1; later stages follow by token count
    cfg.mesh = ml_collections.ConfigDict({
        "ici": {"data": 1, "fsdp": -1, "tensor": 1},    # within a slice/node; -1 fills
        "dcn": {"data": 1, "fsdp": 1, "tensor": 1},     # across slices/nodes
    })
    cfg.optimizer = ml_collections.ConfigDict(dict(peak_lr=1e-4, end_lr=1e-5, warmup_fraction=0.01, b1=0.9, b2=0.95,
                                                   eps=1e-8, weight_decay=0.1, clip_norm=1.0))
    cfg.schedule = ml_collections.ConfigDict(dict(total_tokens=700e9, stage_end_tokens=(650e9, 697e9, 700e9)))
    cfg.batch = ml_collections.ConfigDict(dict(global_batch=640, grad_accum=1))
    cfg.train = ml_collections.ConfigDict(dict(steps=-1, seed=0, log_every=1, max_nonfinite_run=10,
                                               init_params=""))   # params-only checkpoint (converted LLaMA2/Ziya2)
    cfg.checkpoint = ml_collections.ConfigDict(dict(every=1000, keep=3, milestone_every=0, async_save=True))
    return cfg
