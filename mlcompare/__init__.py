"""mlcompare: metric learning or margin-based classification, compared fairly.

The map, top to bottom; a package imports only from its own modules and the lines below it, the one
exception being ``config.comparison``, whose checks read the loss and backbone registries inside
functions (so the config loads without torch). ``tests/test_architecture.py`` checks these layers,
that no import closes a cycle, that no module takes another's private names, and that ``miners`` and
``evaluations`` import nothing of mlcompare:

- ``__main__``, ``cli``: argument parsing and dispatch.
- ``report/``: reads a finished run directory (through ``run.saved``) and draws; computes nothing new.
- ``use/``: what one does with a trained model: ``eval`` on a benchmark, ``embed``, ``export``.
- ``tune/``: ``mlcompare tune``: Optuna studies, their storage, workers, heartbeat and budget.
- ``run/``: a comparison from config to run directory: the runner, the directory and its lock,
  scoring, benchmarks, the statistics computed when the run finishes and ``saved`` (reading it back).
- ``train/``: one training loop and what it needs (torchrun, synchronised batch norm, TensorBoard).
- ``losses/``, ``backbones/``, ``data/``: the parts, each a registry of small modules.
- ``files/``: reading a checkpoint without trusting it, checking an output path before writing.
- ``config/``: what a comparison declares, read before torch loads: the TOML config (``comparison``),
  shared limits, method names on disk, search-space dimensions and the results schema.
- ``errors``: the one error type for bad input; ``doctor``: what the machine has (also for provenance).
- ``miners``, ``evaluations``: standalone packages beside mlcompare, usable by any layer.
"""
__version__ = "0.1.0"
