"""The training loss of a model, by its family (models/family.py): LoFTR's (losses/loftr_loss.py) or Efficient
LoFTR's (losses/eloftr_loss.py), each in the units of that model's fine windows."""

from models.family import family_of

from .eloftr_loss import EfficientLoFTRLoss
from .loftr_loss import LoFTRLoss, LossConfig
from .targets import FineWindow


def _loftr_loss(model, config: LossConfig) -> LoFTRLoss:
    window = FineWindow(model.coarse_stride, model.backbone.fine_stride, model.config.fine.window_size)
    return LoFTRLoss(config, window)


def _efficient_loftr_loss(model, config: LossConfig) -> EfficientLoFTRLoss:
    fine = model.config.fine
    window = FineWindow(model.coarse_stride, fine_stride=1, size=fine.window, block=True)
    return EfficientLoFTRLoss(config, window, fine.regress_temperature)


LOSSES = {"loftr": _loftr_loss, "eloftr": _efficient_loftr_loss}  # keyed by the family's name


def loss_for(model, config: LossConfig) -> LoFTRLoss | EfficientLoFTRLoss:
    return LOSSES[family_of(model).name](model, config)
