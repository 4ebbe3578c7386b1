"""The trainer's data order: a resumable, rank-sharded epoch sampler for map-style datasets and the same
interface over streaming datasets that shard and resume themselves.

Epoch ``e``'s order is a permutation from ``(seed, e)``, so a resumed run repeats the uninterrupted one;
``set_epoch(e, start_batch)`` skips the batches a resumed run already trained on without decoding them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from vidfm.utils import make_generator


class EpochSampler(Sampler):
    """Deterministic, resumable order: epoch ``e`` is a permutation from ``(seed, e)``, sharded by rank.

    Yields ``(epoch, index)`` pairs (read by :class:`EpochDataset`) for whole batches only; after
    ``set_epoch(e, start_batch)`` the first ``start_batch`` batches are skipped here, so a resumed run
    never decodes them.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        """Args: size: dataset length; batch_size: per-rank batch; seed: order seed; rank, world_size."""
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = (size // world_size) // batch_size
        if self.batches_per_epoch < 1:
            from vidfm.errors import ConfigError

            ranks = f" x {world_size} processes" if world_size > 1 else ""
            raise ConfigError(
                f"the dataset has {size} clips, fewer than one batch (train.batch_size={batch_size}{ranks}): "
                "lower train.batch_size or give more videos"
            )
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch < self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} not in [0, {self.batches_per_epoch})")
        self.epoch, self.start_batch = epoch, start_batch

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch`` in order, ``batches_per_epoch * batch_size`` of them."""
        perm = torch.randperm(self.size, generator=make_generator(self.seed, epoch))
        mine = perm[: (self.size // self.world_size) * self.world_size][self.rank :: self.world_size]
        return mine[: self.batches_per_epoch * self.batch_size].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.epoch_indices(epoch)[self.start_batch * self.batch_size :]:
            yield epoch, index

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class EpochDataset(Dataset):
    """Reads ``(epoch, index)`` keys and calls ``dataset.set_epoch`` inside whichever process fetches:
    with persistent workers a ``set_epoch`` in the main process would never reach the workers' copies."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.epoch = dataset, None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[index]


class StreamOrder:
    """The sampler's interface over a streaming dataset that splits by rank and resumes by itself."""

    def __init__(self, dataset: IterableDataset, batch_size: int, rank: int, world_size: int) -> None:
        """Args: dataset: with ``plan`` and ``set_epoch(epoch, start_batch)``; batch_size: per rank."""
        if not (callable(getattr(dataset, "plan", None)) and callable(getattr(dataset, "set_epoch", None))):
            raise TypeError(
                f"{type(dataset).__name__}: a streaming dataset needs plan(batch_size, rank, world_size) "
                "and set_epoch(epoch, start_batch)"
            )
        self.dataset = dataset
        self.batches_per_epoch = int(dataset.plan(batch_size, rank, world_size))
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"streaming dataset too small for batch_size {batch_size} x {world_size} rank(s)"
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        if not 0 <= start_batch < self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} not in [0, {self.batches_per_epoch})")
        self.dataset.set_epoch(epoch, start_batch)
