"""A comparison from config to run directory, and reading it back.

``runner`` trains and scores every method (through ``train``) into the directory ``rundir`` keeps
(``runlock``: one process at a time; ``provenance``: what ran where); ``scoring``, ``benchmarks`` and
``pairs`` measure; ``stats``, ``comparison_tests`` and ``quality_stats`` compute the tests and curves
when the run finishes; ``saved`` reads a finished directory back (what the report draws from).
Nothing here imports ``report``: the runner is handed the renderer.
"""
