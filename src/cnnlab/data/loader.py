"""Batches from an in-memory dataset, with no per-example Python on the hot path.

Each epoch's order is a permutation drawn from a generator seeded by (seed,
epoch) alone, so a resumed run sees exactly the batches an uninterrupted one
would, without saving any generator state: (epoch, batch) is the whole position,
and `batches(start)` continues an epoch from its batch `start`.

In multi-process training every process computes that same order and cuts each
global batch of `batch_size` into contiguous shares, one per process
(`batch_share`): process r of N yields only its share, so the N processes
together see exactly the batches of a single process, whatever N.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.preprocessing import Preprocessing


def batch_share(n: int, rank: int, world_size: int) -> slice:
    """Process `rank`'s contiguous share of a global batch of `n` examples, of
    `world_size` shares as equal as can be: the first n % world_size take one more."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class BatchLoader:
    """Yields (inputs, labels): uint8 slices moved to `device`, then preprocessed there
    (in channels_last memory format with `channels_last`).

    With `world_size` > 1 it yields process `rank`'s share of each global batch
    (`batch_share`), and skips a batch in which that share is empty.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        preprocessing: Preprocessing,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.preprocessing = preprocessing
        self.shuffle = shuffle
        self.seed = seed
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch `epoch` (0-based)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """The number of global batches, the same in every process."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def global_batch_length(self, b: int) -> int:
        """The number of examples in global batch `b` (0-based), all processes together."""
        return min(self.batch_size, len(self.dataset) - b * self.batch_size)

    def order(self) -> torch.Tensor:
        """The example indices of the current epoch."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=g)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The current epoch's batches from global batch `start` (0-based) on."""
        order = self.order()
        images, labels = self.dataset.images, self.dataset.labels
        pin = self.device.type == "cuda"
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world_size > 1:
                idx = idx[batch_share(len(idx), self.rank, self.world_size)]
                if len(idx) == 0:
                    continue
            x, y = images[idx], labels[idx]
            if pin:
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=pin)
            y = y.to(self.device, non_blocking=pin)
            yield self.preprocessing(x).contiguous(memory_format=self.memory_format), y
