"""A LightningDataModule that combines any of the datasets for train / val / test from plain config.

Each split is a mapping of named dataset entries, `{NAME: {"type": TYPE, **fields of that dataset's config}}`,
in order (an entry set to None is left out); training draws
scene-balanced pairs (a fixed number per scene per epoch, sharded across DDP ranks), evaluation reads every
pair once, in order, sharded across the ranks by a DistributedSampler. The data module shards every loader
itself, once: the trainer must not add Lightning's distributed sampler (train.py builds it with
`use_distributed_sampler=False`). The training loader is resumable: a checkpoint holds its epoch and position,
and a run resumed mid-epoch reads the rest of that epoch's pairs only.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import MISSING
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from utils.annotations import fits, type_name

from .augment import PhotometricAugmentation, PhotometricConfig, RandomSwap
from .errors import SkipBadPairs
from .homography import HomographyConfig, HomographyPairs
from .inhouse.dataset import SparseConfig, SparsePairs
from .io import naming
from .megadepth import MegaDepthConfig, MegaDepthPairs
from .sampling import SceneBalancedSampler
from .scannet import ScanNetConfig, ScanNetPairs
from .tilt import RandomTilt, TiltConfig

DATASETS = {
    "megadepth": (MegaDepthConfig, MegaDepthPairs),
    "scannet": (ScanNetConfig, ScanNetPairs),
    "homography": (HomographyConfig, HomographyPairs),
    "inhouse": (SparseConfig, SparsePairs),  # known correspondences (SfM tracks, labels) instead of depth
}


@dataclass
class DataConfig:
    # the dataset folder in LoFTR's layout (its data/megadepth or data/scannet, docs/TRAINING.md): the entries
    # of configs/data/megadepth.yaml and scannet.yaml derive their paths from it. MISSING ("???") here, not
    # None: a `???` in a YAML file does not override a schema default, so each data config sets it (or null)
    root: str | None = MISSING
    # {name: entry}: configs/data/NAME.yaml names its entries NAME, so that an experiment or override changes one
    # field (data.train.megadepth.longer_side=640) without restating the rest; null removes an entry
    train: dict[str, Any] = field(default_factory=dict)
    val: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1  # pairs per GPU (LoFTR: 1 per GPU, 64 GPUs)
    num_workers: int = 4
    samples_per_scene: int = 100  # pairs drawn per scene per epoch (LoFTR: N_SAMPLES_PER_SUBSET = 100)
    augment: PhotometricConfig | None = None  # training only
    random_swap: bool = False  # training only: each pair in the other image order with probability 1/2
    # training only: image 1 of a pair replaced by a random ASIFT tilt view, its ground truth carried exactly
    # (data/tilt.py); off unless tilt.probability > 0
    tilt: TiltConfig = field(default_factory=TiltConfig)
    skip_bad_pairs: bool = False  # training only: replace an unloadable pair and count it in a warning
    seed: int = 66  # LoFTR's default seed

    def entries(self, split: str) -> dict[str, dict]:
        """The entries of `split` ("train", "val" or "test") by name, in order, less those set to None."""
        return {name: entry for name, entry in getattr(self, split).items() if entry is not None}


def build_dataset(entry: dict, augment: PhotometricAugmentation | None = None) -> Dataset:
    """A dataset from `{"type": ..., **fields}`, with errors that list the valid choices or name the field
    and the type it needs."""
    entry = dict(entry)
    kind = entry.pop("type", None)
    if kind not in DATASETS:
        raise ValueError(f"dataset type {kind!r} is not one of {sorted(DATASETS)}")
    config_class, dataset_class = DATASETS[kind]
    fields = dataclasses.fields(config_class)
    names = {f.name for f in fields}
    unknown = sorted(set(entry) - names)
    if unknown:
        raise ValueError(f"{kind} dataset: unknown field(s) {unknown}; valid fields are {sorted(names)}")
    unset = [f.name for f in fields if f.name not in entry
             and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if unset:
        raise ValueError(f"{kind} dataset: set {', '.join(unset)}")
    annotations = typing.get_type_hints(config_class)
    for key, value in entry.items():
        if isinstance(value, list):  # lists from YAML where the config holds tuples
            entry[key] = value = tuple(value)
        if not fits(value, annotations[key]):
            raise ValueError(f"{kind} dataset: {key}={value!r} is not {type_name(annotations[key])}")
    return dataset_class(config_class(**entry), augment=augment)


def _layers(dataset: Dataset) -> list[Dataset]:
    """A dataset and the ones it wraps (RandomTilt, RandomSwap, SkipBadPairs), outermost first."""
    layers = [dataset]
    while hasattr(layers[-1], "dataset"):
        layers.append(layers[-1].dataset)
    return layers


def _scene_indices(datasets: list[Dataset]) -> list[list[int]]:
    """Scenes of the concatenation: each dataset's own scenes, or the dataset as one scene."""
    groups, offset = [], 0
    for dataset in datasets:
        own = dataset.scene_indices() if hasattr(dataset, "scene_indices") else [list(range(len(dataset)))]
        groups.extend([[offset + i for i in scene] for scene in own if scene])
        offset += len(dataset)
    return groups


class PairDataModule(pl.LightningDataModule):
    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config
        self.augment = PhotometricAugmentation(config.augment) if config.augment is not None else None
        self.datasets: dict[str, list[Dataset]] = {}
        self._train_loader: ResumableLoader | None = None
        self._resume_at: dict[str, int] | None = None  # a checkpoint's training position, for the next loader

    def setup(self, stage: str | None = None) -> None:
        """Build every split's datasets and check the headers of every file their pairs read (once: train.py
        calls this before Lightning does, so that a bad entry or file stops the run before a model or logger
        exists, not when its pair is loaded); errors name the entry, e.g. `data.val.megadepth: ...`. Training files
        are left to the loader under `skip_bad_pairs`, which skips and counts their pairs."""
        if self.datasets:
            return
        for split in ("train", "val", "test"):
            augment = self.augment if split == "train" else None
            datasets = []
            for name, entry in self.config.entries(split).items():
                with naming(f"data.{split}.{name}"):
                    dataset = build_dataset(entry, augment)
                    if split != "train" or not self.config.skip_bad_pairs:
                        dataset.check_files()
                datasets.append(dataset)
            if split == "train" and self.config.skip_bad_pairs:  # evaluation must see every pair, or fail
                datasets = [SkipBadPairs(dataset) for dataset in datasets]
            if split == "train" and self.config.random_swap:
                datasets = [RandomSwap(dataset, self.config.seed) for dataset in datasets]
            if split == "train" and self.config.tilt.probability > 0:  # after the swap: image 1 is the tilted one
                datasets = [RandomTilt(dataset, self.config.tilt, self.config.seed) for dataset in datasets]
            self.datasets[split] = datasets

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        datasets = self.datasets.get("train") or []
        if not datasets:
            raise ValueError("no training dataset configured (data.train is empty)")
        replicas, rank = self._world()
        epoch_aware = [self.augment] if self.augment is not None else []
        epoch_aware += [layer for dataset in datasets for layer in _layers(dataset) if hasattr(layer, "set_epoch")]
        sampler = EpochAwareSampler(
            _scene_indices(datasets), self.config.samples_per_scene, self.config.seed, replicas, rank,
            epoch_aware=epoch_aware,
        )
        # the workers' base seed from a generator of its own: loading never draws from torch's global generator,
        # whose state the checkpoints restore (it pads the ground truth), however many workers and restarts
        loader = ResumableLoader(ConcatDataset(datasets), batch_size=self.config.batch_size, sampler=sampler,
                                 num_workers=self.config.num_workers, pin_memory=torch.cuda.is_available(),
                                 drop_last=True, generator=torch.Generator().manual_seed(self.config.seed))
        if len(loader) == 0:  # Lightning would end the run without a step, and without a word
            raise ValueError(f"data.batch_size={self.config.batch_size}: each of the {replicas} rank(s) draws "
                             f"{len(sampler)} training pairs an epoch, not one full batch, so no step would run; "
                             f"lower data.batch_size or raise data.samples_per_scene")
        if self._resume_at is not None:
            loader.load_state_dict(self._resume_at)
            self._resume_at = None
        self._train_loader = loader
        return loader

    # The training position travels in the checkpoint as the data module's state as well as the loader's:
    # Lightning 2.6 restores its loaders' states only into a loader it creates after the checkpoint is read,
    # but `trainer.estimated_stepping_batches` (the module's schedule) creates it before, and the state is lost
    def state_dict(self) -> dict:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = state.get("train_loader")

    def _ordered(self, split: str) -> list[DataLoader] | DataLoader:
        """Every pair once, in order; under DDP each rank reads every world_size-th, the last ones padded by
        repeating pairs (the module's results gather drops the repeats by pair name)."""
        replicas, rank = self._world()
        loaders = [DataLoader(d, batch_size=1, num_workers=self.config.num_workers,
                              sampler=DistributedSampler(d, replicas, rank, shuffle=False) if replicas > 1 else None)
                   for d in self.datasets.get(split, [])]
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self):
        return self._ordered("val")

    def test_dataloader(self):
        return self._ordered("test")


class ResumableLoader(DataLoader):
    """The training DataLoader with `state_dict`/`load_state_dict`, which Lightning saves in checkpoints and
    restores before the loader's first pass: the sampler's epoch and how many of its indices the batches
    handed out so far hold (not how many the workers have prefetched). Resumed, the pass starts after them.

    A pass starts its workers at its first batch, not when `iter` is called: Lightning calls `iter` on a
    resumed run before `set_epoch`, and workers started then would load the data of the wrong epoch."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._consumed = 0  # indices of the sampler's current epoch handed out in batches

    def __iter__(self):
        self._consumed = self.sampler.position
        for batch in super().__iter__():
            self._consumed += self.batch_size
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "position": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.resume(state["epoch"], state["position"])
        self._consumed = state["position"]


class EpochAwareSampler(SceneBalancedSampler):
    """The scene-balanced sampler that also moves the augmentations to the new epoch when Lightning calls
    `set_epoch`, before the epoch's workers are started."""

    def __init__(self, *args: Any, epoch_aware: list = ()):
        super().__init__(*args)
        self.epoch_aware = list(epoch_aware)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for augmentation in self.epoch_aware:
            augmentation.set_epoch(epoch)
