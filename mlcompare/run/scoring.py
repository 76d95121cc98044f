"""Scores of one model on the fixed test protocol, through the ``evaluations`` package only."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

import evaluations
from mlcompare.backbones import embed
from mlcompare.config import results_schema
from mlcompare.data.protocol import VerificationPairs, identification_split, verification_pairs

@dataclass(frozen=True)
class TestProtocol:
    """Everything a model is scored on: test labels, verification pairs, gallery and probes."""

    labels: torch.Tensor
    pairs: VerificationPairs
    gallery: torch.Tensor
    probes: torch.Tensor

    @classmethod
    def build(cls, labels: torch.Tensor, *, pairs: int, seed: int = 0) -> "TestProtocol":
        """The fixed protocol on a test set: ``pairs`` balanced verification pairs in 10 folds, and
        a gallery of one image per identity with the other images as probes, all seeded."""
        gallery, probes = identification_split(labels, seed=seed)
        return cls(labels, verification_pairs(labels, pairs=pairs, seed=seed), gallery, probes)


FARS = (1e-2, 1e-3)  # the operating points of results.csv's TAR@FAR columns


def verify(embeddings: torch.Tensor, pairs: VerificationPairs, *, far: tuple[float, ...] = FARS
           ) -> tuple[dict[str, Any], np.ndarray]:
    """The one place where embeddings become verification scores: cosine pair scores of
    ``embeddings[pairs.a]`` and ``embeddings[pairs.b]``, and :func:`evaluations.verification` on them
    over ``pairs.folds`` folds. Returns ``(metrics, pair scores)``."""
    emb = embeddings.float()
    scores = evaluations.pair_scores(emb[pairs.a], emb[pairs.b])
    return evaluations.verification(scores, pairs.same.numpy(), folds=pairs.folds, far=far), scores


def validation_accuracy(model: torch.nn.Module, images: torch.Tensor, pairs: VerificationPairs, *,
                        device: torch.device, precision: str = "fp32") -> float:
    """10-fold verification accuracy on ``pairs`` for the per-step curve, embedding only the images
    the pairs use, at the training ``precision`` (as the final scores are)."""
    used, inverse = torch.unique(torch.cat([pairs.a, pairs.b]), return_inverse=True)
    emb = embed(model, images[used], device=device, precision=precision)
    local = VerificationPairs(inverse[: len(pairs.a)], inverse[len(pairs.a):], pairs.same, pairs.folds)
    return verify(emb, local)[0]["accuracy"]


def score(embeddings: torch.Tensor, protocol: TestProtocol, *,
          search: Callable[..., tuple[np.ndarray, np.ndarray]] = evaluations.knn) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics (a flat dict, the results.csv columns of :data:`mlcompare.config.results_schema.METRICS`, in
    its order) and curves (ROC, CMC) for the plots.

    ``search``: the retrieval metrics' neighbour search (:func:`evaluations.knn`, or under torchrun
    one split over the ranks, :func:`mlcompare.train.distributed.knn_over_ranks`)."""
    emb = embeddings.float()
    pairs = protocol.pairs
    ver, scores = verify(emb, pairs)
    ident = evaluations.identification(emb[protocol.gallery], protocol.labels[protocol.gallery],
                                       emb[protocol.probes], protocol.labels[protocol.probes], ranks=(1, 5))
    # Recall@K is not a results.csv column: none asked, so a small test set cannot fail on it.
    ret = evaluations.retrieval(emb, protocol.labels, search=search, recall_at=())
    measured = head_tail_rank1(emb, protocol) | {
        "accuracy": ver["accuracy"], "accuracy_std": ver["accuracy_std"], "auc": ver["auc"], "eer": ver["eer"],
        "tar_far_1e-2": ver["tar_at_far"][1e-2], "tar_far_1e-3": ver["tar_at_far"][1e-3],
        "rank_1": ident["rank_1"], "rank_5": ident["rank_5"],
        "map_at_r": ret["map_at_r"], "precision_at_1": ret["precision_at_1"], "r_precision": ret["r_precision"],
    }
    metrics = {name: measured[name] for name in results_schema.NAMES if name in measured}  # in the schema's order
    curves = {"fpr": np.asarray(ver["fpr"]), "tpr": np.asarray(ver["tpr"]), "cmc": np.asarray(ident["cmc"]),
              "pair_scores": np.asarray(scores, dtype=np.float32), "same": pairs.same.numpy()}
    return metrics, curves


def head_tail_rank1(emb: torch.Tensor, protocol: TestProtocol) -> dict[str, float]:
    """Rank-1 for probes of head and tail identities, where test identities differ in image count.

    Head: identities with more images than the median identity; tail: the rest. Empty when the
    largest identity has fewer than twice the images of the smallest (nothing to split).
    """
    counts = torch.bincount(protocol.labels)
    if counts.max() < 2 * counts.min():  # no real tail: nothing to split
        return {}
    head_ids = counts > counts.float().median()
    out = {}
    for name, keep in (("head", head_ids), ("tail", ~head_ids)):
        probes = protocol.probes[keep[protocol.labels[protocol.probes]]]
        if len(probes):
            out[f"rank_1_{name}"] = evaluations.identification(
                emb[protocol.gallery], protocol.labels[protocol.gallery], emb[probes], protocol.labels[probes],
                ranks=(1,))["rank_1"]
    return out
