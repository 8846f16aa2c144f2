"""The LoFTR training loss: coarse (focal or optimal-transport NLL) plus fine (std-weighted L2, and optionally
the heatmap cross-entropy of the match or of its whole window)."""

from dataclasses import dataclass

import torch
from torch import nn

from geometry.ground_truth import Supervision
from models.matching.coarse import CoarseMatches
from models.result import MatchResult

from .coarse import dual_softmax_log_confidence, focal_loss, optimal_transport_nll, overlap_weights
from .fine import fine_heatmap_nll, fine_l2_with_std
from .targets import FineWindow, fine_targets, subpixel_targets, window_targets


@dataclass
class LossConfig:
    coarse_weight: float = 1.0  # official LOSS.COARSE_WEIGHT
    fine_weight: float = 1.0  # official LOSS.FINE_WEIGHT
    focal_alpha: float = 0.25  # official LOSS.FOCAL_ALPHA
    focal_gamma: float = 2.0  # official LOSS.FOCAL_GAMMA
    pos_weight: float = 1.0  # official LOSS.POS_WEIGHT
    neg_weight: float = 1.0  # official LOSS.NEG_WEIGHT
    sparse_supervision: bool = False  # dual-softmax: positives only (official MATCH_COARSE.SPARSE_SPVS)
    fine_correct_threshold: float = 1.0  # official LOSS.FINE_CORRECT_THR, in window units
    fine_nll_weight: float = 0.0  # cross-entropy of the fine heatmap (losses/fine.py); 0: LoFTR's loss only
    # whose heatmaps the cross-entropy trains: "centre", the match's own query (LoFTR's cell centre), or
    # "window", every position of image 0's window that the ground truth reaches (25x the fine samples):
    # dense targets on the fine grid, or sparse labels carried by their fitted Jacobian (losses/targets.py)
    fine_nll_queries: str = "centre"
    # the stride-1 stage (model.subpixel), when the model has one: cross-entropy of its heatmap plus the
    # std-weighted L2 of its expectation, against the true match in its window
    subpixel_weight: float = 1.0
    # Efficient LoFTR: the weight of its stage-2 L2 (LOSS.LOCAL_WEIGHT of upstream's eloftr_full); and weighing
    # each true match by how squarely it falls on its coarse cell and fine pixel (COARSE_ and
    # FINE_OVERLAP_WEIGHT, true there); `fine_weight` weighs its stage-1 loss
    local_weight: float = 0.25
    overlap_weight: bool = False

    def __post_init__(self):
        if self.fine_nll_queries not in ("centre", "window"):
            raise ValueError(f"loss.fine_nll_queries must be 'centre' or 'window', got {self.fine_nll_queries!r}")

    @property
    def needs_window(self) -> bool:
        """Whether the loss reads every window position's heatmap (`LoFTR.forward(window_heatmaps=True)`)."""
        return bool(self.fine_nll_weight) and self.fine_nll_queries == "window"


@dataclass
class LossParts:
    """The loss and its parts, for the optimiser and the logs."""

    total: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor  # both fine stages
    num_ground_truth: int  # coarse ground-truth matches in the batch
    num_fine_supervised: int  # fine samples whose true position lies in the window


def coarse_matching_loss(config: LossConfig, coarse: CoarseMatches, supervision: Supervision,
                         coarse_stride: int = 8) -> torch.Tensor:
    """The coarse loss: the optimal-transport NLL for Sinkhorn matching, else the focal loss on the dual-softmax
    confidence (positives scored from the logits where the model kept them; `config.overlap_weight`: each
    positive weighed by `overlap_weights` of its warped cell point)."""
    if coarse.log_assignment is not None:
        unmatched0, unmatched1 = supervision.valid_cells0, supervision.valid_cells1
        if supervision.negative_rows0 is not None:  # sparse labels: no cell is known to be unmatched
            unmatched0 = unmatched0 & supervision.negative_rows0
            unmatched1 = unmatched1 & supervision.negative_columns1
        return optimal_transport_nll(
            coarse.log_assignment, supervision.batch_index, supervision.index0, supervision.index1,
            unmatched0, unmatched1, config.pos_weight, config.neg_weight,
        )
    valid = supervision.valid_cells0[:, :, None] & supervision.valid_cells1[:, None, :]
    labels = supervision.labels()
    b, i, j = torch.nonzero(labels & valid, as_tuple=True)  # the order focal_loss reads them in
    log_positive = None
    if coarse.logits is not None:
        log_positive = dual_softmax_log_confidence(coarse.logits, valid, b, i, j)
    weights = overlap_weights(supervision.warped0[b, i] / coarse_stride) if config.overlap_weight else None
    return focal_loss(
        coarse.confidence_matrix, labels, valid, config.focal_alpha, config.focal_gamma, config.pos_weight,
        config.neg_weight, config.sparse_supervision, log_positive, supervision.negatives(), weights,
    )


class LoFTRLoss(nn.Module):
    """The loss of a model's outputs against a batch's ground truth (geometry/ground_truth.py, computed once by
    the caller, which needs it before the forward for the training pads); the fine targets are encoded here,
    at the model's own coarse matches, in the units of `window`."""

    def __init__(self, config: LossConfig | None = None, window: FineWindow = FineWindow()):
        super().__init__()
        self.config = config if config is not None else LossConfig()
        self.window = window

    @property
    def model_options(self) -> dict:
        """What the model's forward must be asked for: every window position's heatmap for the window loss."""
        return {"window_heatmaps": self.config.needs_window}

    @property
    def reads_fine_grid(self) -> bool:
        """Whether the targets need the ground truth of every fine pixel (`supervision_for(fine_stride=...)`)."""
        return self.config.needs_window

    def forward(self, result: MatchResult, supervision: Supervision) -> LossParts:
        cfg = self.config
        coarse_loss = coarse_matching_loss(cfg, result.coarse, supervision, self.window.coarse_stride)
        coarse = result.coarse

        matches = (coarse.batch_index, coarse.index0, coarse.index1)
        target, known = fine_targets(supervision, *matches, self.window, query=result.fine.query)
        target = target.to(result.fine.expectation.dtype)
        fine_loss = fine_l2_with_std(
            result.fine.expectation, result.fine.std, target, known, cfg.fine_correct_threshold
        )
        if cfg.needs_window:
            if result.fine.window_log_heatmaps is None:
                raise ValueError("loss.fine_nll_queries='window' needs the model run with window_heatmaps=True")
            if not supervision.has_window_targets:
                raise ValueError(
                    "loss.fine_nll_queries='window' needs fine targets off the cell centres: dense "
                    "ground truth with supervision_for(..., fine_stride=...), or sparse labels"
                )
            window_target, window_known = window_targets(supervision, *matches, self.window)
            fine_loss = fine_loss + cfg.fine_nll_weight * fine_heatmap_nll(
                result.fine.window_log_heatmaps.flatten(0, 1),
                window_target.flatten(0, 1).to(target.dtype),
                window_known.flatten(),
                cfg.fine_correct_threshold,
            )
        elif cfg.fine_nll_weight:
            fine_loss = fine_loss + cfg.fine_nll_weight * fine_heatmap_nll(
                result.fine.log_heatmap, target, known, cfg.fine_correct_threshold
            )
        if result.subpixel is not None:
            fine_loss = fine_loss + cfg.subpixel_weight * self._subpixel_loss(result, supervision, target, known)
        supervised = known & (target.abs().amax(dim=-1) < cfg.fine_correct_threshold)
        return LossParts(
            total=cfg.coarse_weight * coarse_loss + cfg.fine_weight * fine_loss,
            coarse=coarse_loss.detach(),
            fine=fine_loss.detach(),
            num_ground_truth=len(supervision.index0),
            num_fine_supervised=int(supervised.sum()),
        )

    def _subpixel_loss(
        self, result: MatchResult, supervision: Supervision, target: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        """The stride-1 stage against the true match of the first stage's query (`target`, `known`)."""
        sub = result.subpixel
        window = int(round(sub.log_heatmap.shape[1] ** 0.5))
        sub_target = subpixel_targets(target, result.coarse.index1, supervision.grid1, sub.anchor, window, self.window)
        threshold = self.config.fine_correct_threshold
        return fine_heatmap_nll(sub.log_heatmap, sub_target, known, threshold) + fine_l2_with_std(
            sub.expectation, sub.std, sub_target.to(sub.expectation.dtype), known, threshold
        )
