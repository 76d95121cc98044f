"""Face-recognition and metric-learning evaluation on FAISS: exact, chunked, standalone.

Imports only numpy at import time (faiss, Pillow and scikit-learn are imported by the
functions that need them); never imports mlcompare.
"""

from evaluations.pair_sets import all_pairs
from evaluations.calibration import calibrate_threshold, operating_point
from evaluations.erc import erc, erc_random
from evaluations.identification import identification
from evaluations.metric_warnings import UndefinedMetricWarning
from evaluations.pairs import pair_scores
from evaluations.quality_score import fit_qmagface, qmagface_scores
from evaluations.readers import read_bin, read_cfp, read_identities_csv, read_lfw_pairs
from evaluations.retrieval import retrieval
from evaluations.search import knn, merge_knn
from evaluations.search_reduced import knn_reduced
from evaluations.verification import verification

__all__ = [
    "UndefinedMetricWarning",
    "all_pairs",
    "calibrate_threshold",
    "erc",
    "erc_random",
    "fit_qmagface",
    "identification",
    "knn",
    "knn_reduced",
    "merge_knn",
    "operating_point",
    "pair_scores",
    "qmagface_scores",
    "read_bin",
    "read_cfp",
    "read_identities_csv",
    "read_lfw_pairs",
    "retrieval",
    "verification",
]
