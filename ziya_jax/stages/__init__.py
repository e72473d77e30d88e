"""Ziya2's three training stages as data: TFDS sources, SeqIO tasks, packing, deterministic mixtures."""
