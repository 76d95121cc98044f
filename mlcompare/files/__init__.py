"""Files a user names: a checkpoint read without trusting it (``checkpoints``), and an output path
checked before any work starts (``outputs``)."""
