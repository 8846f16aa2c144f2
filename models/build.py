"""The model a configuration describes: LoFTR (with either backbone) or Efficient LoFTR, by the config's type."""

from .eloftr import EfficientLoFTR, EfficientLoFTRConfig
from .loftr import LoFTR, LoFTRConfig


def build_model(config: LoFTRConfig | EfficientLoFTRConfig) -> LoFTR | EfficientLoFTR:
    """ValueError naming the types for anything else (e.g. a model file without its schema's defaults entry)."""
    if isinstance(config, EfficientLoFTRConfig):
        return EfficientLoFTR(config)
    if isinstance(config, LoFTRConfig):
        return LoFTR(config)
    raise ValueError(f"the model configuration is a {type(config).__name__}, not a LoFTRConfig or an "
                     f"EfficientLoFTRConfig: a model file in configs/model/ starts with the defaults entry of its "
                     f"schema (loftr_schema or eloftr_schema)")
