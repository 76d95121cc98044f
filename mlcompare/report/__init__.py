"""The report of a finished run: ``render`` writes report.md and report.html from what ``run.saved``
reads, with ``section``, ``style`` and ``text`` (how numbers and claims are written) and the
``benchmarks``, ``quality`` and ``tuning`` sections. Reads and draws; the statistics were computed
when the run finished."""
