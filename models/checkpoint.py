"""Loading LoFTR weights (official Lightning checkpoints, kornia state dicts, our own) and telling from
their keys which LoFTR they need (positional encoding, coarse matcher)."""

import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

# Official / kornia / Efficient LoFTR backbone names -> ours (the FPN layers are named by role here).
_RENAMES = [
    (r"^backbone\.layer3_outconv\.", "backbone.lateral3."),
    (r"^backbone\.layer2_outconv\.", "backbone.lateral2."),
    (r"^backbone\.layer1_outconv\.", "backbone.lateral1."),
    (r"^backbone\.layer(\d)_outconv2\.0\.", r"backbone.merge\1.conv1."),
    (r"^backbone\.layer(\d)_outconv2\.1\.", r"backbone.merge\1.norm."),
    (r"^backbone\.layer(\d)_outconv2\.3\.", r"backbone.merge\1.conv2."),
    # Efficient LoFTR's RepVGG blocks (upstream's `rbr_*` branches -> models/backbone/repvgg.py's names)
    (r"\.rbr_dense\.bn\.", ".conv3x3.norm."),
    (r"\.rbr_dense\.conv\.", ".conv3x3.conv."),
    (r"\.rbr_1x1\.bn\.", ".conv1x1.norm."),
    (r"\.rbr_1x1\.conv\.", ".conv1x1.conv."),
    (r"\.rbr_identity\.", ".identity."),
    (r"\.rbr_reparam\.", ".fused."),
]
# Prefixes of the wrapping LightningModule: official PL_LoFTR stores the model as `matcher`.
_WRAPPER_PREFIXES = ("matcher.", "model.", "module.")
# Buffers some releases saved that are recomputed here.
_DERIVED = ("pos_encoding.pe",)
# What the positional encoding of a LoFTR is chosen by: "legacy" for the released official weights, "fixed" for
# weights trained with the corrected encoding, "auto" to tell from the checkpoint's keys (`needs_legacy_encoding`)
POS_ENCODINGS = ("auto", "legacy", "fixed")


class CheckpointError(RuntimeError):
    pass


def needs_legacy_encoding(state_dict: dict[str, torch.Tensor], pos_encoding: str = "auto") -> bool:
    """Whether weights run with the official release's positional encoding (LoFTRConfig.temp_bug_fix False):
    as `pos_encoding` says ("legacy" or "fixed"), or for "auto" exactly when the keys are an official Lightning
    checkpoint's (`matcher.*`). ValueError for another `pos_encoding`."""
    if pos_encoding not in POS_ENCODINGS:
        raise ValueError(f"pos_encoding must be 'auto', 'legacy' or 'fixed', got {pos_encoding!r}")
    if pos_encoding == "auto":
        return any(key.startswith("matcher.") for key in state_dict)
    return pos_encoding == "legacy"


def needs_sinkhorn(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether weights are a LoFTR-OT checkpoint's, which runs the Sinkhorn coarse matcher: its learnt dustbin
    score (`coarse_matching.bin_score`) says so."""
    return any(key.endswith("coarse_matching.bin_score") for key in state_dict)


def is_efficient_loftr(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether weights are Efficient LoFTR's (upstream's or ours): its aggregated attention's query pooling
    (`loftr_coarse.layers.N.aggregate.weight`) exists in no other model of the family."""
    return any(key.endswith("aggregate.weight") for key in state_dict)


def quadtree_kind(state_dict: dict[str, torch.Tensor]) -> str | None:
    """"A" or "B" for QuadTree-LoFTR weights (the official release's or ours with its layer layout): their coarse
    layers' MLP has a depthwise convolution (`loftr_coarse.layers.N.mlp.dwconv.dwconv.weight`), and kind B alone
    learns level weights (`attn.py_att.weight`); None for other weights."""
    if not any("loftr_coarse.layers." in key and key.endswith("mlp.dwconv.dwconv.weight") for key in state_dict):
        return None
    return "B" if any(key.endswith("attn.py_att.weight") for key in state_dict) else "A"


def is_reparameterized(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether RepVGG weights are in the folded inference form (upstream's `rbr_reparam`, our `fused`) rather
    than the multi-branch training form."""
    return any(".rbr_reparam." in key or ".fused." in key for key in state_dict)


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of an official LoFTR / kornia / our checkpoint -> this project's module names."""
    converted = {}
    for key, value in state_dict.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key in _DERIVED:
            continue
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict:
    """The checkpoint file at `path` as torch.load gives it (a Lightning checkpoint dict or a plain state
    dict), checked: it holds a state dict of tensors and every weight is finite. The one reader of every
    checkpoint the project loads: to initialise, resume, match and evaluate.

    Files from elsewhere are untrusted: they are read with `weights_only=True`, which refuses pickled code.
    `trusted=True` lifts that for files you made yourself with arbitrary objects inside. FileNotFoundError,
    or CheckpointError with one line naming the file, for anything that cannot be used.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        if not zipfile.is_zipfile(path):  # torch >= 1.6 writes zip archives; this is no checkpoint at all
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (corrupt or another format)") from None
        found = re.search(r"(?:Unsupported global:|unsupported) GLOBAL ([\w.]+)", str(error))  # torch's wordings
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} holds objects that are not plain tensors{what}, so weights_only=True refused it. "
            f"If you trust the file, load it with trusted=True (match.py: --trust-checkpoint)"
        ) from None
    except Exception as error:  # a truncated archive, an unreadable file, ...
        with open(path, "rb") as file:
            start = file.read(2)
        if start[:2] != b"PK" and start[:1] != b"\x80":  # neither a zip archive nor a legacy (pickle) file
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (corrupt or another format)") from None
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or corrupt?): {reason}") from None
    state_dict = state_dict_of(checkpoint)
    if state_dict is None:
        raise CheckpointError(f"{path} is neither a Lightning checkpoint nor a state dict of tensors")
    for key, value in state_dict.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: weight {key} holds NaN or inf values (saved from a diverged run?); "
                                  f"refusing to load it")
    return checkpoint


def state_dict_of(checkpoint) -> dict[str, torch.Tensor] | None:
    """The model weights in what torch.load returned: a Lightning checkpoint's `state_dict`, or the plain state
    dict itself; None when it holds no dict of tensors."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return None
    return checkpoint


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The model state dict of a checkpoint file; see `read_checkpoint`."""
    return state_dict_of(read_checkpoint(path, trusted))


def model_config_of(checkpoint: dict) -> dict | None:
    """The model configuration that our training stored in a checkpoint (hyper_parameters.training.model, a
    plain dict of LoFTRConfig's fields), or None for files that carry none (official, kornia)."""
    hyper = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    model = (hyper or {}).get("training", {}).get("model") if isinstance(hyper, dict) else None
    return model if isinstance(model, dict) else None


def fit_problems(own: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `state_dict` from loading into a model whose state dict is `own`: one line each for the
    missing, unexpected and wrongly shaped keys; empty when it fits."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if state_dict[k].shape != own[k].shape
    )
    return [f"{title} ({len(keys)}): " + ", ".join(keys)
            for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys]


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy a (converted) state dict into `model`, failing with the full list of missing, unexpected and
    wrongly shaped keys (one line) rather than loading part of it."""
    state_dict = convert_state_dict(state_dict)
    problems = fit_problems(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state_dict)


def load_checkpoint(model: nn.Module, path: str | Path, trusted: bool = False) -> nn.Module:
    """Load an official LoFTR checkpoint (`matcher.*` keys), a kornia state dict or one of ours into `model`."""
    state_dict = read_state_dict(path, trusted)  # its errors name the file already
    try:
        load_weights(model, state_dict)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    return model
