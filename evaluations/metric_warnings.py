"""Warning category of the metrics (kept here so callers can filter it)."""


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for this input (e.g. no impostor pairs) and is reported as NaN."""
