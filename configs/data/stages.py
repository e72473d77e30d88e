"""Training-data stages config: `--config configs/data/stages.py`, override with `--config.KEY=VALUE`.

Rates are token shares (paper section 2.6, Table 2): stage 1 is about 37% Chinese, 33.5% English
and 29% code; stage 2 adds an equal-size replay of stage 1; stage 3 has 0.1B tokens each of
MetaMath, stage-1 replay and stage-2 replay.
"""
import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.tfds_data_dir = ""          # prepared TFDS sources; "" = $ZIYA_TFDS_DIR
    cfg.vocab = ""                  # SentencePiece model; "" = $ZIYA_VOCAB
    cfg.cache_dir = ""              # packed caches; "" = $ZIYA_CACHE_DIR
    cfg.seqio_cache_dir = ""        # output of seqio_cache_tasks, read by `tasks cache --use-seqio-cache`
    cfg.sequence_length = 4096
    cfg.seed = 0
    cfg.shuffle_buffer = 10_000     # documents shuffled before packing ("randomly spliced")
    cfg.stage1_rates = ml_collections.ConfigDict({"zh": 0.37, "en": 0.335, "code": 0.29})
    cfg.stage2_replay_fraction = 0.5
    cfg.stage3_tokens = ml_collections.ConfigDict({"metamath": 1e8, "stage1_replay": 1e8, "stage2_replay": 1e8})
    # attention between packed documents: True = mutually invisible (segment ids per document)
    cfg.mask_documents = ml_collections.ConfigDict({"stage1": True, "stage2": False, "stage3": False})
    return cfg
