"""What a comparison declares, read and checked before torch loads.

``comparison``: the TOML file as dataclasses (``extends``, ``--set``, command-line options, checks);
``limits``: lists and ranges more than one layer checks; ``names``: method names as file names;
``search_space``: the dimensions a loss or the trainer declares for tuning; ``results_schema``: the
row of results.csv and its metrics. Imports nothing outside ``config`` but ``errors`` at module level (the
registries of losses, miners and backbones are read inside ``comparison``'s checks, when a file is loaded).
"""
