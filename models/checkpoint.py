"""Loading LoFTR weights (official Lightning checkpoints, kornia state dicts, our own) and telling from
their keys which LoFTR they need (positional encoding, coarse matcher).

Checkpoints come from elsewhere, so they are read bounded: nothing runs (weights_only), nothing is allocated
beyond what the file holds (its archive members and tensor views are checked before torch.load or any copy
allocates them), and a stored model configuration is checked against its schema and bounds before a model is
built from it (`stored_model_config`)."""

import dataclasses
import math
import pickle
import re
import typing
import zipfile
from pathlib import Path

import torch
from torch import nn

from utils.annotations import fits, type_name

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


# Bounds of a model configuration stored in a checkpoint, checked before a model is built from it, so that a
# small file cannot make the model allocate more than a few GB: the family's official models have at most 14
# blocks a stage and 8 attention layers (64 entries of a tuple field leave room for 8x deeper ones), and no width,
# head count, window or size in pixels beyond 832 (RoPE's training size; 4096 leaves room for 4K images).
MAX_CONFIG_ENTRIES = 64
MAX_CONFIG_INT = 4096


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
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():  # a device (/dev/zero), a pipe, a folder: torch.load would read it to the end
        raise CheckpointError(f"{path} is not a regular file: give a checkpoint file")
    if zipfile.is_zipfile(path):
        check_archive(path)
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
        check_weight(key, value, path)
    for key, value in _tensors(checkpoint):  # optimizer states too: an in-place step on an expanded view fails
        check_stored(key, value, path)
    return checkpoint


def check_archive(path: str | Path) -> None:
    """CheckpointError naming the file and the member when a checkpoint archive (torch.save's zip) would make
    torch.load allocate more than the file holds: torch allocates each member's declared uncompressed size
    before reading it, so a compressed member (which torch.save never writes) or a size beyond the file's lets
    a few MB declare tens of GB. Only the archive's directory is read."""
    size = Path(path).stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or corrupt?): {error}") from None
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size > size:
            raise CheckpointError(f"{path}: archive member {member.filename} declares {member.file_size} bytes "
                                  f"({member.compress_size} stored, compression {member.compress_type}) in a "
                                  f"{size}-byte file; torch.save writes its members uncompressed: not a checkpoint "
                                  f"it wrote")
    declared = sum(member.file_size for member in members)
    if declared > size:  # members that overlap: each may be read, and allocated, once for every reference
        raise CheckpointError(f"{path}: its archive members declare {declared} bytes in all, more than the file's "
                              f"{size}: not a checkpoint torch.save wrote")


def check_stored(key: str, value: torch.Tensor, path: str | Path) -> None:
    """CheckpointError naming the file and the key when a tensor declares more elements than its stored data
    holds (a stride-0 expansion: a few bytes that any copy, or the finite check, allocates in full)."""
    stored = value.untyped_storage().nbytes()
    if value.numel() * value.element_size() > stored:
        raise CheckpointError(f"{path}: {key} declares {tuple(value.shape)} over {stored} stored bytes (an "
                              f"expanded view); save the tensors themselves")


def _tensors(value, key: str = "") -> typing.Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, with its dotted key."""
    if isinstance(value, torch.Tensor):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _tensors(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{key}.{index}" if key else str(index))


def check_weight(key: str, value: torch.Tensor, path: str | Path) -> None:
    """CheckpointError naming the file and the key for a weight that no model of the family has: complex or
    quantized values (a real model would silently drop the imaginary part), a view declaring more elements than
    its stored data holds (`check_stored`), NaN or inf values (saved from a diverged run), real or complex."""
    check_stored(f"weight {key}", value, path)  # first: the checks below allocate as much as the tensor declares
    if value.is_complex() and not torch.isfinite(value).all():  # both parts: isfinite of a complex tensor
        raise CheckpointError(f"{path}: weight {key} holds complex NaN or inf values; refusing to load it")
    if value.is_complex() or value.is_quantized:
        raise CheckpointError(f"{path}: weight {key} is {value.dtype}, not real numbers: a LoFTR's weights are "
                              f"real floating point (buffers integer)")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise CheckpointError(f"{path}: weight {key} holds NaN or inf values (saved from a diverged run?); "
                              f"refusing to load it")


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


def stored_model_config(checkpoint: dict, path: str | Path, schema: type) -> typing.Any:
    """The model configuration our training stored in a checkpoint (`model_config_of`) as the dataclass
    `schema` (the config type of the weights' family member: models/family.py), checked before any model is built
    from it: every key known to the schema, every value of its field's type and within the bounds
    (MAX_CONFIG_ENTRIES, MAX_CONFIG_INT). None for files that carry none; CheckpointError naming the file and
    the key otherwise."""
    stored = model_config_of(checkpoint)
    if stored is None:
        return None
    return _config_section(stored, schema, f"{path}: stored model config", "model")


def _config_section(values, schema: type, where: str, name: str):
    """`values` (a dict of a checkpoint) as the dataclass `schema`, its fields checked as `stored_model_config`
    says; `name`: the dotted key of the section, as train.py's configuration names it."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{where}: {name}={_shown(values)} is not a section of {schema.__name__}")
    annotations = typing.get_type_hints(schema)
    known = {field.name for field in dataclasses.fields(schema)}
    fields = {}
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in known:
            raise CheckpointError(f"{where}: unknown key {dotted} (not in {schema.__name__}); was it written by "
                                  f"another version of this project?")
        annotation = annotations[key]
        if dataclasses.is_dataclass(annotation):
            fields[key] = _config_section(value, annotation, where, dotted)
            continue
        value = tuple(value) if isinstance(value, list) else value  # YAML and Hydra store tuples as lists
        _check_bounds(value, where, dotted)
        if not fits(value, annotation):
            raise CheckpointError(f"{where}: {dotted}={_shown(value)} is not {type_name(annotation)}")
        fields[key] = float(value) if annotation is float else value
    try:
        return schema(**fields)
    except (TypeError, ValueError) as error:  # the dataclasses' own checks (fine.query_radius, ...)
        raise CheckpointError(f"{where}: {name}: {error}") from None


def _check_bounds(value, where: str, name: str) -> None:
    if isinstance(value, tuple) and len(value) > MAX_CONFIG_ENTRIES:
        raise CheckpointError(f"{where}: {name} has {len(value)} entries, more than the {MAX_CONFIG_ENTRIES} any "
                              f"model of the family has room for")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_CONFIG_INT:
            raise CheckpointError(f"{where}: {name}={_shown(value)} exceeds {MAX_CONFIG_INT}, the largest width, "
                                  f"count or size a model of the family is built with here")
        if isinstance(item, float) and not math.isfinite(item):
            raise CheckpointError(f"{where}: {name}={_shown(value)} is not a finite number")


def _shown(value) -> str:
    """repr(value), cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
