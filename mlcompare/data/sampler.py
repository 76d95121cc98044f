"""The P x K identity sampler: every method of a comparison sees the same batches."""
from __future__ import annotations

import numpy as np
import torch


def _generator(*key: int) -> torch.Generator:
    """A generator seeded from integers, the same in every process (unlike ``hash`` of a str)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))


class PKSampler:
    """Batches of ``p`` identities x ``k`` images each, as a pure function of ``(seed, step)``.

    Each epoch is a seeded permutation of the identities, cut into groups of ``p``; within an
    identity, ``k`` images are drawn without replacement (with replacement when it has fewer than
    ``k``). Because a batch depends only on the seed and the step, a resumed run and every method
    trained with the same seed see identical batches, whatever happened before.
    """

    def __init__(self, labels: torch.Tensor, *, p: int, k: int, seed: int) -> None:
        labels = labels.cpu()
        self.num_identities = int(labels.max()) + 1
        if p < 2 or k < 2:
            raise ValueError(f"P x K sampler needs p >= 2 identities and k >= 2 images per batch, got p={p}, k={k}")
        if p > self.num_identities:
            raise ValueError(f"p={p} identities per batch but the training set has {self.num_identities}; lower p")
        self.p, self.k, self.seed = p, k, seed
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=self.num_identities)
        starts = torch.cumsum(counts, 0) - counts
        self.members = [order[s:s + c] for s, c in zip(starts.tolist(), counts.tolist())]
        self.batches_per_epoch = self.num_identities // p

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def batch(self, step: int) -> torch.Tensor:
        """Image indices of the batch at ``step`` (``p * k`` of them, identity-major)."""
        epoch, position = divmod(step, self.batches_per_epoch)
        perm = torch.randperm(self.num_identities, generator=_generator(self.seed, epoch))
        identities = perm[position * self.p:(position + 1) * self.p]
        g = _generator(self.seed, epoch, position, 1)
        picks = []
        for identity in identities.tolist():
            members = self.members[identity]
            if len(members) >= self.k:
                picks.append(members[torch.randperm(len(members), generator=g)[: self.k]])
            else:
                picks.append(members[torch.randint(len(members), (self.k,), generator=g)])
        return torch.cat(picks)
