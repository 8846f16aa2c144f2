"""Scene-balanced sampling as LoFTR trains: a fixed number of pairs from every scene each epoch."""

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler


class SceneBalancedSampler(Sampler[int]):
    """Each epoch draws `samples_per_scene` dataset indices from every scene (without replacement when the
    scene has enough pairs, with replacement otherwise, as LoFTR's RandomConcatSampler does), shuffles them
    all, and gives rank `rank` of `num_replicas` every num_replicas-th index: disjoint shards of equal length.

    The draw depends only on (seed, epoch): call `set_epoch` before each epoch (Lightning does) for new pairs.
    `resume(epoch, position)` makes the next pass of that epoch start at its `position`-th index of this
    rank's shard (a run resumed mid-epoch); the length stays the whole epoch's, as Lightning counts.
    """

    def __init__(self, scene_indices: Sequence[Sequence[int]], samples_per_scene: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True):
        if samples_per_scene < 1:
            raise ValueError(f"samples_per_scene must be positive, got {samples_per_scene}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        empty = [k for k, scene in enumerate(scene_indices) if len(scene) == 0]
        if empty or not scene_indices:
            raise ValueError(f"every scene needs at least one pair; empty scenes: {empty or 'all'}")
        self.scenes = [torch.as_tensor(list(scene), dtype=torch.long) for scene in scene_indices]
        self.samples_per_scene = samples_per_scene
        self.seed, self.num_replicas, self.rank, self.shuffle = seed, num_replicas, rank, shuffle
        self.epoch = 0
        self.position = 0  # where the next pass starts in this rank's shard of the epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def resume(self, epoch: int, position: int) -> None:
        """Start the next pass at index `position` of epoch `epoch` (indices drawn before it are skipped)."""
        if not 0 <= position <= len(self):
            raise ValueError(f"position {position} is not in [0, {len(self)}]")
        self.set_epoch(epoch)
        self.position = position

    def __len__(self) -> int:
        return math.ceil(len(self.scenes) * self.samples_per_scene / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        draws = []
        for scene in self.scenes:
            if len(scene) >= self.samples_per_scene:
                pick = torch.randperm(len(scene), generator=generator)[: self.samples_per_scene]
            else:
                pick = torch.randint(len(scene), (self.samples_per_scene,), generator=generator)
            draws.append(scene[pick])
        indices = torch.cat(draws)
        if self.shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        total = len(self) * self.num_replicas  # pad by wrapping so that every rank gets as many
        indices = torch.cat([indices, indices[: total - len(indices)]])
        start, self.position = self.position, 0  # once: the pass after this one is a whole epoch again
        return iter(indices[self.rank :: self.num_replicas][start:].tolist())


class WrappedPairs(Dataset):
    """Base of the datasets that wrap another pair by pair: same length, same scenes (for the sampler)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def scene_indices(self) -> list[list[int]]:
        own = getattr(self.dataset, "scene_indices", None)
        return own() if own is not None else [list(range(len(self)))]
