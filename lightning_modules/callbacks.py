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


class LastCheckpoint(pl.callbacks.ModelCheckpoint):
    """`last.ckpt`: every epoch or every `every_n_train_steps` steps, and at the end of training too, so that
    it always holds the final step (ModelCheckpoint saves only at multiples of `every_n_train_steps`)."""

    def __init__(self, dirpath, every_n_train_steps: int | None = None):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                         every_n_train_steps=every_n_train_steps, save_on_train_epoch_end=every_n_train_steps is None,
                         enable_version_counter=False)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        super().on_train_end(trainer, module)
        # the checks and the save of ModelCheckpoint's own step and epoch triggers; skipped when saved already
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))
