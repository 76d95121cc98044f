"""mlcompare: metric learning or margin-based classification, compared fairly."""
__version__ = "0.1.0"
