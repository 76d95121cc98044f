"""``mlcompare tune``: ``tuning`` (the search, method by method, on folds, then retraining the best),
``study`` (the Optuna studies, created once), ``storage`` (where they live), ``workers`` (more
processes on this machine), ``heartbeat`` (lost trials retried), ``budget`` (equal for every method).
Builds on ``run`` and ``train``; imports nothing of ``report``."""
