"""The family's registry: each composition declares here, once, what the rest of the project asks of it.

A family member (LoFTR with its backbone, attention and coarse-matcher variants; Efficient LoFTR) is its
config type, its model type, the multiple its input sides must be, how it recognises its weights (official
files, kornia's, ours, with or without Lightning's `matcher.` prefix) and configures itself for them, and its
inference form. The code that uses a model asks the registry (`family_of`, `family_for_weights`), never the
model's class; its loss is chosen in losses/for_model.py by the family's `name`. Adding a member touches its
own module, its config and this registry.
"""

import warnings
from copy import deepcopy
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    is_efficient_loftr,
    is_reparameterized,
    load_weights,
    needs_legacy_encoding,
    needs_sinkhorn,
    quadtree_kind,
)
from .eloftr import EfficientLoFTR, EfficientLoFTRConfig
from .loftr import LoFTR, LoFTRConfig


@dataclass(frozen=True)
class WeightOptions:
    """What a user may say about weights beyond what their keys tell.

    pos_encoding: LoFTR's positional encoding, "legacy" (the released official weights), "fixed" (weights
    trained with the corrected one) or "auto" (legacy exactly for an official Lightning checkpoint's
    `matcher.*` keys). coarse_threshold: overrides the coarse confidence threshold. quadtree_topks: the keys
    QuadTree attention keeps a level (the outdoor model's [16, 8, 8] by default)."""

    pos_encoding: str = "auto"
    coarse_threshold: float | None = None
    quadtree_topks: tuple[int, ...] | None = None


class Family:
    """One composition of the family. Subclasses set the class attributes and the weight-specific methods."""

    name: str
    config_type: type
    model_type: type[nn.Module]

    @property
    def input_multiple(self) -> int:
        """What the network input's sides must be multiples of (the model's own check in its forward)."""
        return self.model_type.input_multiple

    def recognises(self, state_dict: dict[str, torch.Tensor]) -> bool:
        raise NotImplementedError

    def configure(self, config: Any, state_dict: dict[str, torch.Tensor], options: WeightOptions) -> Any:
        """A copy of `config` (the member's config) as weights with these keys and the user's options need."""
        config = deepcopy(config)
        if options.coarse_threshold is not None:
            config.match_coarse.threshold = options.coarse_threshold
        return config

    def load(self, model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        load_weights(model, state_dict)

    def for_inference(self, model: nn.Module) -> nn.Module:
        """`model` in its inference form (the same matches, faster), in eval mode."""
        return model.eval()

    def positional_encoding(self, config: Any) -> str | None:
        """"legacy" or "fixed" for a member with LoFTR's sine encoding, None for one without."""
        return None

    def queries_off_centre(self, config: Any) -> bool:
        """Whether inference may take image 0's fine query away from its coarse cell's centre."""
        return False


class LoFTRFamily(Family):
    name, config_type, model_type = "loftr", LoFTRConfig, LoFTR

    def recognises(self, state_dict):
        return not is_efficient_loftr(state_dict)

    def configure(self, config, state_dict, options):
        config = super().configure(config, state_dict, options)
        config.temp_bug_fix = not needs_legacy_encoding(state_dict, options.pos_encoding)
        kind = quadtree_kind(state_dict)
        if kind is not None and config.coarse.block != "quadtree":  # official QuadTree-LoFTR weights
            config.coarse = replace(config.coarse, attention="quadtree", block="quadtree",
                                    quadtree=replace(config.coarse.quadtree, kind=kind))
            # its release was trained with the corrected encoding (its configs leave TEMP_BUG_FIX at True)
            config.temp_bug_fix = options.pos_encoding != "legacy"
        if options.quadtree_topks is not None:
            topks = tuple(options.quadtree_topks)
            config.coarse = replace(config.coarse, quadtree=replace(config.coarse.quadtree, topks=topks))
        if needs_sinkhorn(state_dict):
            config.match_coarse.match_type = "sinkhorn"
        return config

    def for_inference(self, model):
        if model.config.backbone.type == "se2_resnet_fpn":  # the same features from plain convolutions, ~1.5x faster
            model.backbone = model.backbone.export()
        return model.eval()

    def positional_encoding(self, config):
        return "fixed" if config.temp_bug_fix else "legacy"

    def queries_off_centre(self, config):
        return config.fine.query_radius > 0


class EfficientLoFTRFamily(Family):
    name, config_type, model_type = "eloftr", EfficientLoFTRConfig, EfficientLoFTR

    def recognises(self, state_dict):
        return is_efficient_loftr(state_dict)

    def load(self, model, state_dict):
        if is_reparameterized(state_dict):  # folded weights load into the folded model
            model.reparameterize()
        load_weights(model, state_dict)

    def for_inference(self, model):
        return model.reparameterize().eval()  # RepVGG's branches folded: exact


# Efficient LoFTR first: LoFTR recognises every other state dict (official, kornia's, ours)
FAMILIES: dict[str, Family] = {family.name: family for family in (EfficientLoFTRFamily(), LoFTRFamily())}
_BY_TYPE = {kind: family for family in FAMILIES.values() for kind in (family.config_type, family.model_type)}


def family_of(thing: Any) -> Family:
    """The family of a member's config or model; ValueError naming the registered configs otherwise (e.g. a
    model file in configs/model/ without its schema's defaults entry)."""
    family = _BY_TYPE.get(type(thing))
    if family is None:
        names = " or ".join(f.config_type.__name__ for f in FAMILIES.values())
        raise ValueError(f"the model configuration is a {type(thing).__name__}, not a {names}: a model file in "
                         f"configs/model/ starts with the defaults entry of its schema (loftr_schema or eloftr_schema)")
    return family


def family_for_weights(state_dict: dict[str, torch.Tensor]) -> Family:
    """The member whose weights these keys are."""
    return next(family for family in FAMILIES.values() if family.recognises(state_dict))


def build_model(config: Any) -> nn.Module:
    """The untrained model a member's config describes."""
    return family_of(config).model_type(config)


def model_for_weights(state_dict: dict[str, torch.Tensor] | None, config: Any = None,
                      options: WeightOptions = WeightOptions(), seed: int = 0) -> nn.Module:
    """The model in its inference form, on the CPU, for a (converted or official) state dict, or with seeded
    random weights when `state_dict` is None (the same model on every call, to try pipelines).

    The weights' keys choose the member (`family_for_weights`); `config` is the base configuration when it is
    that member's (a checkpoint's stored one, or the caller's), the member's defaults (the official outdoor
    model) otherwise; without weights, `config`'s member (LoFTR by default). CheckpointError when the weights
    do not fit the model."""
    if state_dict is None:
        family = family_of(config) if config is not None else FAMILIES["loftr"]
    else:
        family = family_for_weights(state_dict)
    if config is None or _BY_TYPE.get(type(config)) is not family:
        config = family.config_type()
    config = family.configure(config, state_dict or {}, options)
    if state_dict is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return family.for_inference(family.model_type(config))
    model = family.model_type(config)
    family.load(model, state_dict)
    return family.for_inference(model)


def check_fits_unbuilt(state_dict: dict[str, torch.Tensor], config: Any, options: WeightOptions) -> None:
    """CheckpointError when `model_for_weights`'s model for these arguments does not fit `state_dict`, found by
    building it on the meta device, which allocates nothing: a model that a checkpoint's stored config declares
    but its weights do not fill (a huge one within the config's bounds) is refused unbuilt. Layers that compute
    weights as they are built (SE2-LoFTR's steerable bases) cannot be built there: those are left to the real
    build, within the config's bounds (models/checkpoint.py)."""
    try:
        with torch.device("meta"), warnings.catch_warnings():
            # torch warns per parameter that copying into a meta model is a no-op: here that is the point
            warnings.filterwarnings("ignore", message=".*to a meta parameter in the current model")
            model_for_weights(state_dict, config, options)
    except CheckpointError:
        raise
    except (NotImplementedError, RuntimeError):  # an operation the meta device does not run
        pass
