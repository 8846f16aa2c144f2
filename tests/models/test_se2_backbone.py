"""SE2-LoFTR's steerable backbone: the standard backbone's shapes, exact invariance to 90-degree rotations,
approximate invariance to 45-degree ones (C8), the plain-torch export, and the factory's config checks."""

import dataclasses

import pytest
import torch
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import rotate

from models.backbone import build_backbone
from models.backbone.equivariant import is_library_module
from models.backbone.resnet_fpn import ResNetFPN, ResNetFPNConfig
from models.backbone.se2_resnet_fpn import SE2ResNetFPN
from models.loftr import LoFTR, LoFTRConfig
from tests.helpers import image_pair

TINY = dict(initial_dim=16, block_dims=(16, 24, 32))  # 2, 3 and 4 regular fields of C8


def se2_config(group_order: int = 8, divide_by_group: bool = True, widths: dict = TINY) -> ResNetFPNConfig:
    return ResNetFPNConfig(**widths, type="se2_resnet_fpn", group_order=group_order, divide_by_group=divide_by_group)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to the largest feature magnitude."""
    return float((a - b).abs().max() / b.abs().max())


def rot90_error(backbone, image: torch.Tensor) -> tuple[float, float]:
    """Errors of coarse and fine maps of the image rotated by 90 degrees against the rotated maps."""
    with torch.no_grad():
        coarse, fine = backbone(image)
        coarse_rot, fine_rot = backbone(torch.rot90(image, 1, (2, 3)))
    return (relative_error(coarse_rot, torch.rot90(coarse, 1, (2, 3))),
            relative_error(fine_rot, torch.rot90(fine, 1, (2, 3))))


@pytest.mark.parametrize("size", [(65, 97), (60, 90)])  # 8k + 1 and not
@pytest.mark.parametrize("group_order, divide_by_group", [(4, True), (8, True), (4, False)])
def test_shapes_and_strides_equal_the_standard_backbone(size, group_order, divide_by_group):
    config = se2_config(group_order, divide_by_group)
    se2, standard = SE2ResNetFPN(config).eval(), ResNetFPN(config).eval()
    image = torch.rand(2, 1, *size)
    with torch.no_grad():
        shapes = [tuple(x.shape) for x in se2(image)]
        assert shapes == [tuple(x.shape) for x in standard(image)]
    assert shapes == [(2, 32, -(-size[0] // 8), -(-size[1] // 8)), (2, 16, -(-size[0] // 2), -(-size[1] // 2))]
    for attribute in ("coarse_stride", "fine_stride", "coarse_dim", "fine_dim"):
        assert getattr(se2, attribute) == getattr(standard, attribute)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("group_order", [4, 8])
def test_invariant_to_90_degree_rotations(group_order, mode):
    """Exact up to float rounding on (8k+1) x (8m+1) images; in train mode too (per-field batch statistics)."""
    image = torch.rand(1, 1, 65, 97)
    se2 = SE2ResNetFPN(se2_config(group_order)).train(mode == "train")
    coarse_error, fine_error = rot90_error(se2, image)
    assert coarse_error < 1e-4 and fine_error < 1e-4, (coarse_error, fine_error)

    standard = ResNetFPN(se2_config(group_order)).train(mode == "train")
    coarse_error, fine_error = rot90_error(standard, image)
    assert coarse_error > 0.1 and fine_error > 0.1, (coarse_error, fine_error)


def rotation_45_errors(backbone, image: torch.Tensor) -> list[float]:
    """Errors of the coarse and fine maps of the image rotated by 45 degrees about its centre against the maps
    rotated the same way, on the cells of the central disk (away from the borders and the corners the rotation
    fills): the norm of the difference over the norm of the features' deviation from their mean on the disk
    (a constant feature is trivially invariant, so its offset should not count)."""
    angle = torch.tensor([45.0])
    with torch.no_grad():
        maps, maps_rot = backbone(image), backbone(rotate(image, angle))
    errors = []
    for features, features_rot in zip(maps, maps_rot):
        expected = rotate(features, angle)  # the centres match: cell c sits on pixel stride * c, sides 8k+1
        h, w = features.shape[2:]
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        disk = (rows - (h - 1) / 2) ** 2 + (cols - (w - 1) / 2) ** 2 <= (min(h, w) / 2 - 2) ** 2
        ours, truth = features_rot[..., disk], expected[..., disk]
        errors.append(float((ours - truth).norm() / (truth - truth.mean(-1, keepdim=True)).norm()))
    return errors


def test_c8_is_nearly_invariant_to_45_degree_rotations():
    """C8 filters sampled on a pixel grid are only approximately equivariant to 45 degrees; the error must still be
    far below the standard backbone's. A smooth texture keeps the image's own resampling error small. Eight
    regular fields or more: with the tiny widths' two to four, random C8 features are far from invariant."""
    image = gaussian_blur2d(image_pair(161, 161)[0], (9, 9), (1.5, 1.5))
    widths = dict(initial_dim=64, block_dims=(64, 96, 128))
    se2 = SE2ResNetFPN(se2_config(8, widths=widths)).eval()
    standard = ResNetFPN(se2_config(8, widths=widths)).eval()
    se2_coarse, se2_fine = rotation_45_errors(se2, image)
    standard_coarse, standard_fine = rotation_45_errors(standard, image)
    print(f"45-degree rotation, relative error coarse / fine: C8 {se2_coarse:.3f} / {se2_fine:.3f}, "
          f"standard {standard_coarse:.3f} / {standard_fine:.3f}")
    assert se2_coarse < 0.5 * standard_coarse


@pytest.mark.parametrize("group_order", [4, 8])
def test_export_gives_the_same_features_with_plain_torch_modules(group_order):
    se2 = SE2ResNetFPN(se2_config(group_order))
    with torch.no_grad():  # non-trivial batch statistics, so that exporting them is tested
        for _ in range(3):
            se2(torch.rand(2, 1, 41, 57))
    se2.eval()
    plain = se2.export()
    assert se2.training is False and plain.training is False
    assert not any(is_library_module(m) for m in plain.modules())
    assert all(type(m).__module__.startswith(("torch.", "models.")) for m in plain.modules())
    assert (plain.coarse_dim, plain.fine_dim, plain.coarse_stride, plain.fine_stride) == (32, 16, 8, 2)

    image = torch.rand(1, 1, 65, 90)
    with torch.no_grad():
        for ours, exported in zip(se2(image), plain(image)):
            assert exported.shape == ours.shape
            assert relative_error(exported, ours) < 1e-5


def test_export_keeps_the_training_mode():
    se2 = SE2ResNetFPN(se2_config(4)).train()
    se2.export()
    assert all(m.training for m in se2.modules())


def se2_loftr_config() -> LoFTRConfig:
    config = LoFTRConfig(backbone=se2_config(8, widths=dict(initial_dim=32, block_dims=(32, 48, 64))))
    config.coarse.d_model, config.coarse.num_heads = 64, 4
    config.coarse.layer_names = ["self", "cross"]
    config.fine.transformer.d_model, config.fine.transformer.num_heads = 32, 4
    return config


def test_se2_loftr_runs_and_its_state_dict_round_trips():
    model = LoFTR(se2_loftr_config()).eval()
    assert isinstance(model.backbone, SE2ResNetFPN)
    image0, image1 = image_pair(97, 129)
    batch = {"image0": image0, "image1": image1}
    with torch.no_grad():
        result = model(batch)
    assert result.coarse_grid0 == (13, 17)

    state = model.state_dict()
    twin = LoFTR(se2_loftr_config()).eval()  # other random weights; eval before loading, as inference does
    twin.load_state_dict(state)
    assert twin.state_dict().keys() == model.train().state_dict().keys()  # the same keys in either mode
    with torch.no_grad():
        again = twin(batch)
    assert torch.equal(result.keypoints0, again.keypoints0)
    assert torch.allclose(result.keypoints1, again.keypoints1, atol=1e-4)


@pytest.mark.parametrize(
    "change, field, choices",
    [
        (dict(type="se2_resnet"), "backbone.type", "resnet_fpn, se2_resnet_fpn"),
        (dict(type="se2_resnet_fpn", group_order=1), "backbone.group_order", "integer N >= 2"),
        (dict(type="se2_resnet_fpn", group_order=8, block_dims=(4, 24, 32)), "at least group_order", "8"),
    ],
)
def test_bad_config_names_the_field_and_the_choices(change, field, choices):
    config = dataclasses.replace(ResNetFPNConfig(**TINY), **change)
    with pytest.raises(ValueError) as error:
        build_backbone(config)
    assert field in str(error.value) and choices in str(error.value)


def test_matcher_from_a_checkpoint_runs_the_exported_backbone_with_the_same_matches(tmp_path):
    from models.backbone.se2_resnet_fpn import PlainSE2ResNetFPN
    from models.family import build_model
    from models.matcher import LoFTRMatcher

    config = se2_loftr_config()
    config.match_coarse.threshold = 0.0
    torch.manual_seed(0)
    model = build_model(config).eval()  # the steerable backbone, as trained
    torch.save(model.state_dict(), tmp_path / "se2.ckpt")
    matcher = LoFTRMatcher.from_checkpoint(tmp_path / "se2.ckpt", config=se2_loftr_config(), coarse_threshold=0.0)
    assert isinstance(matcher.model.backbone, PlainSE2ResNetFPN)
    assert not any(is_library_module(m) for m in matcher.model.modules())

    image0, image1 = (
        (image * 255).round().to(torch.uint8)[0, 0].numpy() for image in image_pair(97, 129))
    expected = LoFTRMatcher(model).match(image0, image1)
    exported = matcher.match(image0, image1)
    assert len(expected) >= 10  # random weights, threshold 0: the mutual nearest neighbours
    assert (exported.keypoints0 == expected.keypoints0).all()
    assert abs(exported.keypoints1 - expected.keypoints1).max() < 1e-3


def test_models_do_not_share_the_libraries_cached_bases():
    """e2cnn hands one cached basis module to every convolution of a kind; casting, moving or switching the mode
    of one model must not reach another."""
    first, second = SE2ResNetFPN(se2_config(4)), SE2ResNetFPN(se2_config(4))
    first.double().eval()
    assert all(m.training for m in second.modules())
    coarse, fine = second(torch.rand(1, 1, 33, 33))  # float32 still
    assert coarse.dtype == fine.dtype == torch.float32
