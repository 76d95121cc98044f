"""results.csv's retrieval columns (P@1, R-Precision, MAP@R, the metrics of "A Metric Learning Reality
Check") equal pytorch-metric-learning's AccuracyCalculator on the same embeddings."""
import logging

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from mlcompare.config import results_schema
from mlcompare.run import scoring

logging.getLogger("PML").setLevel(logging.ERROR)


@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_columns_match_accuracy_calculator(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(12).repeat_interleave(torch.randint(2, 8, (12,), generator=g))
    centres = torch.randn(12, 16, generator=g)
    emb = centres[labels] + 0.9 * torch.randn(len(labels), 16, generator=g)
    metrics, _ = scoring.score(emb, scoring.TestProtocol.build(labels, pairs=200, seed=0))
    # every schema metric but head/tail rank-1 (only where identities differ in image count), in the schema's order
    assert list(metrics) == [m for m in results_schema.NAMES if m in metrics]
    assert set(results_schema.NAMES) - set(metrics) <= {"rank_1_head", "rank_1_tail"} and "r_precision" in metrics
    # the score is cosine; AccuracyCalculator searches L2, which ranks normalised embeddings the same way
    ref = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                             device=torch.device("cpu")).get_accuracy(F.normalize(emb, dim=1), labels)
    assert metrics["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert metrics["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert metrics["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    assert 0 < metrics["r_precision"] < 1
