"""A pytest plugin (``-p tests.doctest_gc`` in pyproject.toml): collect garbage before each doctest.

A doctest resets its debugger, which calls ``linecache.checkcache()``; on Python 3.11 that walks a
snapshot of the cache's keys and fails with KeyError when an entry disappears mid-walk. SQLAlchemy
(Optuna's storages, used by the tuning tests) registers its generated code in linecache and removes
the entry from a weakref finalizer when that code is garbage collected, which can happen at any
allocation inside that walk: a doctest then fails at random. Collecting first runs those
finalizers before the walk starts.
"""
import gc

import pytest
from _pytest.doctest import DoctestItem


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if isinstance(item, DoctestItem):
        gc.collect()
