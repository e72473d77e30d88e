"""SeqIO tasks and mixtures of Ziya2's three stages (paper section 4.1).

Tasks (one per source; text -> tokens + </s>):
    ziya2_stage1_zh, ziya2_stage1_en, ziya2_stage1_code   the curated corpus by language group
    ziya2_stage2_supervised                                prompt-templated supervised data (keeps `task`)
    ziya2_stage3_metamath                                  MetaMath Question/Answer
Mixtures (rates by tokens, from configs/data/stages.py):
    ziya2_stage1  zh/en/code
    ziya2_stage2  supervised + an equal-size replay of stage 1
    ziya2_stage3  MetaMath + replay of stage 1 and stage 2 (0.1B tokens each by default)

`register(tfds_data_dir, vocab_path)` registers them. On import they are registered from the
environment when ZIYA_TFDS_DIR and ZIYA_VOCAB are set, which is how `seqio_cache_tasks
--module_import=tasks.ziya2` finds them. No path is hard-coded.
"""
from __future__ import annotations

import functools
import os

import seqio

from ziya_jax.stages import tfds_builders  # noqa: F401  (registers the TFDS builders)
from ziya_jax.stages.rates import STAGE1_GROUPS, stage_token_rates  # noqa: F401  (re-exported)
from ziya_jax.stages.tfds_builders import VERSION

TASKS = {f"ziya2_stage1_{g}": (f"ziya2_curated/{g}:{VERSION}", "stream") for g in STAGE1_GROUPS}
TASKS["ziya2_stage2_supervised"] = (f"ziya2_supervised:{VERSION}", "bins")
TASKS["ziya2_stage3_metamath"] = (f"ziya2_metamath:{VERSION}", "bins")


def default_config():
    from pathlib import Path

    from ziya_jax.config import load_config
    return load_config(str(Path(__file__).resolve().parents[1] / "configs" / "data" / "stages.py"))


def register(tfds_data_dir: str, vocab_path: str, cfg=None) -> seqio.SentencePieceVocabulary:
    vocab = seqio.SentencePieceVocabulary(vocab_path)
    features = {"targets": seqio.Feature(vocab, add_eos=True)}
    for name, (tfds_name, _) in TASKS.items():
        keys = {"targets": "text"} if name.startswith("ziya2_stage1") else {"targets": "text", "task": "task"}
        seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(
            name, source=seqio.TfdsDataSource(tfds_name, tfds_data_dir=tfds_data_dir),
            preprocessors=[functools.partial(seqio.preprocessors.rekey, key_map=keys), seqio.preprocessors.tokenize,
                           seqio.CacheDatasetPlaceholder(), seqio.preprocessors.append_eos],
            output_features=features)
    if cfg is None:
        cfg = default_config()
    for stage in (1, 2, 3):
        seqio.MixtureRegistry.remove(f"ziya2_stage{stage}")
        seqio.MixtureRegistry.add(f"ziya2_stage{stage}", list(stage_token_rates(stage, cfg).items()))
    return vocab


if os.environ.get("ZIYA_TFDS_DIR") and os.environ.get("ZIYA_VOCAB"):
    register(os.environ["ZIYA_TFDS_DIR"], os.environ["ZIYA_VOCAB"])
