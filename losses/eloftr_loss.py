"""Efficient LoFTR's training loss (Wang et al., CVPR 2024, sec. 3.4): the coarse loss LoFTR's is, the focal
loss of stage 1's pixel-level dual-softmax at the true pixel matches, and the L2 of stage 2's sub-pixel
expectation, read at the true pixel matches, against the true sub-pixel rest (weight `local_weight`).
Upstream's src/losses/loftr_loss.py defines the terms; the targets are losses/targets.two_stage_targets."""

import torch
from torch import nn

from geometry.ground_truth import Supervision
from models.matching.two_stage import regress
from models.result import MatchResult

from .coarse import focal_loss
from .loftr_loss import LossConfig, LossParts, coarse_matching_loss
from .targets import FineWindow, two_stage_targets


class EfficientLoFTRLoss(nn.Module):
    """`window`: the model's pixel windows (FineWindow(block=True)); `regress_temperature`: its stage 2's."""

    def __init__(self, config: LossConfig, window: FineWindow, regress_temperature: float):
        super().__init__()
        if not window.block:
            raise ValueError("Efficient LoFTR's loss reads block windows (FineWindow(block=True))")
        self.config, self.window, self.regress_temperature = config, window, regress_temperature

    @property
    def model_options(self) -> dict:
        """Nothing to ask the model's forward for besides its matches (`LoFTRLoss.model_options`)."""
        return {}

    @property
    def reads_fine_grid(self) -> bool:
        """Always: every pixel of the windows has a target."""
        return True

    def forward(self, result: MatchResult, supervision: Supervision) -> LossParts:
        cfg, coarse, fine = self.config, result.coarse, result.fine
        coarse_loss = coarse_matching_loss(cfg, coarse, supervision, self.window.coarse_stride)
        targets = two_stage_targets(supervision, coarse.batch_index, coarse.index0, coarse.index1, self.window)
        match, pixel0 = torch.nonzero(targets.known, as_tuple=True)  # the true pixel matches, in label order
        pixel1 = targets.index1[match, pixel0]
        overlap = targets.overlap[match, pixel0] if cfg.overlap_weight else None

        # stage 1: positives only (upstream's MATCH_FINE.SPARSE_SPVS): the dual-softmax is normalised both ways
        labels = torch.zeros_like(fine.heatmap, dtype=torch.bool)
        labels[match, pixel0, pixel1] = True
        stage1 = focal_loss(fine.heatmap, labels, torch.ones_like(labels), cfg.focal_alpha, cfg.focal_gamma,
                            cfg.pos_weight, sparse=True, positive_weights=overlap)
        # stage 2 at the true pixel pairs, so that it learns from every one of them (not only where stage 1 was
        # right); its rest lies within half a pixel, so upstream's correct-threshold of 1 keeps them all
        expectation = regress(fine.regress_logits, match, pixel0, pixel1, self.regress_temperature)
        rest = targets.residual[match, pixel0].to(expectation.dtype)
        correct = rest.abs().amax(-1) < cfg.fine_correct_threshold
        local = (expectation[correct] - rest[correct]).square().sum(-1)
        local = local.mean() if len(local) else expectation.sum() * 0.0
        fine_loss = cfg.fine_weight * stage1 + cfg.local_weight * local
        return LossParts(
            total=cfg.coarse_weight * coarse_loss + fine_loss,
            coarse=coarse_loss.detach(),
            fine=fine_loss.detach(),
            num_ground_truth=len(supervision.index0),
            num_fine_supervised=len(match),
        )
