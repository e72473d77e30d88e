"""Data-factory config: `--config configs/data/ziya2.py`, override any key with `--config.SECTION.KEY=VALUE`.

Sections follow the pipeline's steps (paper section 2.1). Thresholds are the defaults of each step's
dataclass in `ziya_jax/data/`; every rule can be switched off by name with
`--config.filter.disabled='("rule_a","rule_b")'` (`python -m ziya_jax data rules` lists them).
"""
import dataclasses

import ml_collections

from ziya_jax.data.dedup import DedupConfig
from ziya_jax.data.filters import FilterConfig
from ziya_jax.data.preprocess import PreprocessConfig


def _section(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)})


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.preprocess = _section(PreprocessConfig)
    cfg.score = ml_collections.ConfigDict(dict(
        model_dir="",                 # directory with <lang>.sp.model + <lang>.binary (data train-lm); "" = no scoring
        languages=("zh", "en"),       # scored languages; others (code) are kept as quality "unscored"
        high_fraction=0.3,            # lowest-perplexity 30% of each language -> "high"
        medium_fraction=0.6,          # 30%-60% -> "medium"; the rest is dropped
        num_quantiles=1001,           # resolution of the (approximate, exact on small data) percentiles
    ))
    cfg.filter = _section(FilterConfig)
    cfg.dedup = _section(DedupConfig)
    cfg.eval = ml_collections.ConfigDict(dict(
        sample_fraction=0.01,         # automatic metrics on a 1% sample (paper section 2.1 step 5)
        human_samples=1000,           # rows of the human annotation sheet
        max_rate_per_1000=1.0,        # a metric passes at <= 1 per 1,000 (paper Table 1)
    ))
    cfg.output = ml_collections.ConfigDict(dict(num_shards=0, rejected_shards=0))  # 0 = the runner decides
    return cfg
