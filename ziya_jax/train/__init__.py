"""Training: AdamW schedule, sharded train state, the jitted train step, checkpoints and the loop."""
