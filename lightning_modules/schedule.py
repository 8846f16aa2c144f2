"""The optimizer's settings and LoFTR's learning-rate schedule: a linear warm-up, then a multistep decay by
epoch or a cosine to the last step."""

import bisect
import math
from dataclasses import dataclass

from utils.values import check_number

SCHEDULES = ("multistep", "cosine")


@dataclass
class OptimizerConfig:
    """AdamW with LoFTR's schedule: linear warm-up over `warmup_steps` optimizer steps from
    `warmup_ratio` x lr, then x `gamma` at each epoch in `milestones` ("multistep"); or, after the same
    warm-up, a cosine from lr down to `final_ratio` x lr at the last step ("cosine", for short runs).
    With `scale_lr`, `lr` and `warmup_steps` are for `reference_batch_size` pairs a step: the lr scales with
    the true batch and the warm-up inversely (the same number of pairs), as LoFTR's train.py scales both."""

    lr: float = 6e-3  # LoFTR's TRAINER.CANONICAL_LR (its outdoor config raises it to 8e-3) ...
    reference_batch_size: int = 64  # ... for this true batch size (CANONICAL_BS); scaled linearly to ours
    scale_lr: bool = True  # False: `lr` as given, whatever the batch size
    weight_decay: float = 0.1  # TRAINER.ADAMW_DECAY
    decay_biases_and_norms: bool = True  # LoFTR decays every parameter; False: weights of layers only
    warmup_steps: int = 1875  # TRAINER.WARMUP_STEP (outdoor: 3 epochs at 64 pairs a step); 0: none
    warmup_ratio: float = 0.1  # TRAINER.WARMUP_RATIO
    schedule: str = "multistep"  # one of SCHEDULES
    milestones: tuple[int, ...] = (8, 12, 16, 20, 24)  # TRAINER.MSLR_MILESTONES (outdoor; indoor 3, 6, 9, 12)
    gamma: float = 0.5  # TRAINER.MSLR_GAMMA
    final_ratio: float = 0.02  # cosine: the last step's lr over the peak

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optimizer.schedule={self.schedule!r} is not one of {list(SCHEDULES)}")
        check_number("optimizer.lr", self.lr, 0, above=True)
        check_number("optimizer.reference_batch_size", self.reference_batch_size, 1, integer=True)
        check_number("optimizer.weight_decay", self.weight_decay, 0)
        check_number("optimizer.warmup_steps", self.warmup_steps, 0, integer=True)
        check_number("optimizer.warmup_ratio", self.warmup_ratio, 0, 1)  # of lr, where the warm-up starts
        if any(milestone < 0 for milestone in self.milestones):  # OmegaConf has made them ints
            raise ValueError(f"optimizer.milestones={list(self.milestones)}: must be epochs >= 0")
        check_number("optimizer.gamma", self.gamma, 0, above=True)
        check_number("optimizer.final_ratio", self.final_ratio, 0, 1)

    def scaled_warmup_steps(self, true_batch: int) -> int:
        """Warm-up steps at `true_batch` pairs a step: LoFTR's floor(WARMUP_STEP / (true_batch /
        CANONICAL_BS)) with `scale_lr` (at least one step unless there is no warm-up), else `warmup_steps`."""
        if not self.scale_lr or self.warmup_steps == 0:
            return self.warmup_steps
        return max(self.warmup_steps * self.reference_batch_size // true_batch, 1)  # exact integer floor

    def factor(self, step: int, epoch: int, total_steps: int, warmup_steps: int | None = None) -> float:
        """The learning-rate multiplier after `step` of `total_steps` optimizer steps, in epoch `epoch`;
        `warmup_steps`: the (scaled) warm-up length, `self.warmup_steps` when None."""
        warmup_steps = self.warmup_steps if warmup_steps is None else warmup_steps
        warmup = 1.0
        if step < warmup_steps:
            warmup = self.warmup_ratio + (1 - self.warmup_ratio) * step / warmup_steps
        if self.schedule == "cosine":
            progress = min(max(step - warmup_steps, 0) / max(total_steps - warmup_steps, 1), 1.0)
            return warmup * (self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        return warmup * self.gamma ** bisect.bisect_right(self.milestones, epoch)
