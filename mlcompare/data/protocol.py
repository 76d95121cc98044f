"""The open-set protocol: disjoint train/test identities, a verification list, an identification split.

Every source goes through the same functions, so every method of a comparison is scored on
the same pairs, gallery and probes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mlcompare.data.facedata import FaceData
from mlcompare.errors import UserError


def split_identities(data: FaceData, *, test_fraction: float, seed: int) -> tuple[FaceData, FaceData]:
    """Split identities (not images), seeded, into disjoint train and test sets.

    Test identities are never trained on. Both sides keep at least 2 identities.
    """
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = data.num_identities
    n_test = min(max(2, round(n * test_fraction)), n - 2)
    if n < 4:
        raise UserError(f"{data.source}: {n} identities cannot be split into train and test (2 each at least); give more identities or --test-data")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    is_test = torch.zeros(n, dtype=torch.bool)
    is_test[order[:n_test]] = True
    test_images = is_test[data.labels]
    return data.subset(torch.nonzero(~test_images).squeeze(1)), data.subset(torch.nonzero(test_images).squeeze(1))


@dataclass(frozen=True)
class VerificationPairs:
    """Image index pairs into the test set; ``same`` is True for genuine pairs.

    Pairs are ordered in ``folds`` contiguous blocks, each with as many genuine as impostor
    pairs, as in LFW's ``pairs.txt``.
    """

    a: torch.Tensor
    b: torch.Tensor
    same: torch.Tensor
    folds: int


def verification_pairs(labels: torch.Tensor, *, pairs: int, folds: int = 10, seed: int = 0) -> VerificationPairs:
    """Draw ``pairs`` pairs (half genuine, half impostor), seeded, arranged in ``folds`` balanced folds.

    Genuine pairs are drawn without replacement from all same-identity pairs; if there are fewer
    than ``pairs / 2``, all of them are used and the impostor count is matched to keep balance.
    """
    g = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    # Genuine pairs enumerated per identity: O(sum n_c^2), never O(N^2).
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels).tolist()
    gi_parts, gj_parts, start = [], [], 0
    for count in counts:
        members = order[start:start + count]
        start += count
        if count > 1:
            i, j = torch.triu_indices(count, count, offset=1)
            gi_parts.append(members[i])
            gj_parts.append(members[j])
    gi = torch.cat(gi_parts) if gi_parts else torch.empty(0, dtype=torch.long)
    gj = torch.cat(gj_parts) if gj_parts else torch.empty(0, dtype=torch.long)
    per_fold = min(pairs // 2, len(gi)) // folds
    if per_fold == 0:
        raise UserError(f"the test set has {len(gi)} genuine pairs, fewer than {folds} folds need; use more test images per identity")
    pick = torch.randperm(len(gi), generator=g)[: per_fold * folds]
    gi, gj = gi[pick], gj[pick]
    # Impostors: uniform over different-identity pairs, drawn by rejection (the candidate set is huge).
    n = per_fold * folds
    ia, ib = torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    seen: set[tuple[int, int]] = set()
    while len(ia) < n:
        a = torch.randint(len(labels), (2 * n,), generator=g)
        b = torch.randint(len(labels), (2 * n,), generator=g)
        keep = []
        for x, y in zip(a.tolist(), b.tolist()):
            key = (min(x, y), max(x, y))
            if labels[x] != labels[y] and key not in seen:
                seen.add(key)
                keep.append(key)
        if keep:
            k = torch.tensor(keep)
            ia, ib = torch.cat([ia, k[:, 0]]), torch.cat([ib, k[:, 1]])
    ia, ib = ia[:n], ib[:n]
    # Fold f holds genuine pairs [f*per_fold, (f+1)*per_fold) then the same count of impostors.
    a = torch.cat([torch.cat([gi[f * per_fold:(f + 1) * per_fold], ia[f * per_fold:(f + 1) * per_fold]]) for f in range(folds)])
    b = torch.cat([torch.cat([gj[f * per_fold:(f + 1) * per_fold], ib[f * per_fold:(f + 1) * per_fold]]) for f in range(folds)])
    same = torch.cat([torch.cat([torch.ones(per_fold, dtype=torch.bool), torch.zeros(per_fold, dtype=torch.bool)]) for _ in range(folds)])
    return VerificationPairs(a, b, same, folds)


def identification_split(labels: torch.Tensor, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery: one image per identity, chosen seeded; probes: all the other images."""
    labels = labels.cpu()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    first = torch.zeros(int(labels.max()) + 1, dtype=torch.bool)
    gallery = []
    for idx in order.tolist():
        if not first[labels[idx]]:
            first[labels[idx]] = True
            gallery.append(idx)
    gallery_t = torch.tensor(sorted(gallery))
    is_probe = torch.ones(len(labels), dtype=torch.bool)
    is_probe[gallery_t] = False
    return gallery_t, torch.nonzero(is_probe).squeeze(1)
