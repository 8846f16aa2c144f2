"""The training loss of a model: LoFTR's (losses/loftr_loss.py) or Efficient LoFTR's (losses/eloftr_loss.py),
each in the units of that model's fine windows."""

from models.eloftr import EfficientLoFTR
from models.loftr import LoFTR

from .eloftr_loss import EfficientLoFTRLoss
from .loftr_loss import LoFTRLoss, LossConfig
from .targets import FineWindow


def loss_for(model: LoFTR | EfficientLoFTR, config: LossConfig) -> LoFTRLoss | EfficientLoFTRLoss:
    if isinstance(model, EfficientLoFTR):
        fine = model.config.fine
        window = FineWindow(model.coarse_stride, fine_stride=1, size=fine.window, block=True)
        return EfficientLoFTRLoss(config, window, fine.regress_temperature)
    window = FineWindow(model.coarse_stride, model.backbone.fine_stride, model.config.fine.window_size)
    return LoFTRLoss(config, window)
