"""What one does with a trained model: ``model`` loads it from its run directory; ``evaluate``
(``mlcompare eval``), ``embed`` and ``export`` (ONNX) use it."""
