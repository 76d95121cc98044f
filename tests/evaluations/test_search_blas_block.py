"""knn sets faiss' process-wide BLAS block size around each search: two threads searching at
once must not leave it changed (each would otherwise save the other's value as the one to restore)."""
import threading
import time

import faiss
import numpy as np

from evaluations import knn
from evaluations import search


def test_overlapping_searches_in_two_threads_restore_the_block_size():
    original = faiss.cvar.distance_compute_blas_database_bs
    assert original != search._BLAS_DATABASE_BLOCK  # otherwise a leak could not be seen
    first_inside, first_done = threading.Event(), threading.Event()

    def first():
        with search._blas_blocks():
            first_inside.set()
            time.sleep(0.3)  # the second thread tries to enter meanwhile
        first_done.set()

    def second():
        first_inside.wait()
        with search._blas_blocks():  # waits for the first (or, unlocked, saves its value as "previous")
            assert faiss.cvar.distance_compute_blas_database_bs == search._BLAS_DATABASE_BLOCK
            first_done.wait(timeout=2)  # unlocked, the first restores before the second does

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert faiss.cvar.distance_compute_blas_database_bs == original


def test_concurrent_knn_calls_agree_with_one_call_and_restore_the_block_size():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((500, 16)).astype(np.float32)
    original = faiss.cvar.distance_compute_blas_database_bs
    expected = knn(queries, refs, 5, query_chunk=50)
    results = [None] * 4

    def work(i):
        results[i] = knn(queries, refs, 5, query_chunk=50)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for scores, indices in results:
        np.testing.assert_array_equal(indices, expected[1])
        np.testing.assert_allclose(scores, expected[0], rtol=0, atol=0)
    assert faiss.cvar.distance_compute_blas_database_bs == original
