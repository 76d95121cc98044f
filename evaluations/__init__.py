"""Face-recognition and metric-learning evaluation on FAISS: exact, chunked, standalone.

Imports only numpy at import time (faiss, Pillow and scikit-learn are imported by the
functions that need them); never imports mlcompare.
"""

from evaluations.identification import identification
from evaluations.metric_warnings import UndefinedMetricWarning
from evaluations.pairs import pair_scores
from evaluations.readers import read_bin, read_identities_csv, read_lfw_pairs
from evaluations.retrieval import retrieval
from evaluations.search import knn, merge_knn
from evaluations.search_reduced import knn_reduced
from evaluations.verification import verification

__all__ = [
    "UndefinedMetricWarning",
    "identification",
    "knn",
    "knn_reduced",
    "merge_knn",
    "pair_scores",
    "read_bin",
    "read_identities_csv",
    "read_lfw_pairs",
    "retrieval",
    "verification",
]
