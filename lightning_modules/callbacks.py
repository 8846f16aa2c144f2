"""Training callbacks of our own."""

import time

import pytorch_lightning as pl


class PairsPerSecond(pl.Callback):
    """Training throughput (image pairs per second, all devices) on the progress bar and in the logs."""

    def __init__(self, window: int = 20):
        self.window = window
        self._start: float | None = None
        self._pairs = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._start is None:  # the first batch carries start-up costs
            self._start, self._pairs = now, 0
            return
        self._pairs += batch["image0"].shape[0] * trainer.world_size
        if self._pairs >= self.window:
            module.log("train/pairs_per_s", self._pairs / (now - self._start), prog_bar=True, batch_size=1)
            self._start, self._pairs = now, 0
