"""One training loop and what it needs: ``trainer`` (the loop, checkpoints it writes, hooks as plain
callables), ``distributed`` (torchrun and DDP as seams), ``sync_batchnorm``, ``tensorboard_log``."""
