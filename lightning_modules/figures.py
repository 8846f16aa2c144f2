"""Images to whichever logger runs: wandb and TensorBoard log them, the CSV logger writes PNG files."""

from pathlib import Path

import cv2
import numpy as np
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger


def log_image(logger: Logger, key: str, image: np.ndarray, step: int) -> None:
    """Log `image` (H, W, 3) uint8 RGB under `key` at `step`."""
    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[image], step=step)
    elif isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(key, image, step, dataformats="HWC")
    elif isinstance(logger, CSVLogger):
        path = Path(logger.log_dir) / "figures" / f"{key.replace('/', '_')}_step{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
