"""Pairs that cannot be loaded: an error that names the pair and the file, or, for training, a skip that is
counted in a warning."""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from torch.utils.data import Dataset

from .sampling import WrappedPairs


class BadPairError(ValueError):
    """A pair that cannot be loaded (missing or unreadable file, non-rigid pose, NaN depth, ...)."""


@contextmanager
def loading_pair(description: str) -> Iterator[None]:
    """Re-raise a file or value error raised while loading a pair as a BadPairError that names the pair."""
    try:
        yield
    except BadPairError:
        raise
    except (OSError, ValueError) as error:
        raise BadPairError(f"{description}: {error}") from error


class SkipBadPairs(WrappedPairs):
    """`dataset` whose unloadable pairs are replaced by the next loadable one, each skip counted in a warning.

    The replacement keeps batches full (DDP ranks then step together). Counts are per loading process:
    every DataLoader worker reports the bad pairs it met. `max_consecutive` bad pairs in a row raise, since
    then the data, not a pair, is broken.
    """

    def __init__(self, dataset: Dataset, max_consecutive: int = 100):
        super().__init__(dataset)
        self.max_consecutive = max_consecutive
        self.skipped: set[int] = set()

    def __getitem__(self, index: int) -> dict:
        attempts = min(len(self), self.max_consecutive)
        for offset in range(attempts):
            candidate = (index + offset) % len(self)
            try:
                return self.dataset[candidate]
            except BadPairError as error:
                self.skipped.add(candidate)
                warnings.warn(f"skipped a bad pair ({len(self.skipped)} so far in this process): {error}",
                              RuntimeWarning, stacklevel=2)
                last = error
        raise BadPairError(f"{attempts} consecutive pairs from index {index} cannot be loaded; the last: {last}")
