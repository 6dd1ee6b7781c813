"""The one training loop, checkpoints and logging."""
