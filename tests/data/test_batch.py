"""The batch contract (data/batch.py): what the datasets emit passes it; a missing or misshapen key is a
ValueError naming it, where the batch enters the model and the ground truth."""

import cv2
import pytest
import torch
from torch.utils.data import default_collate

from data.batch import SHAPES, check_batch
from data.homography import HomographyConfig, HomographyPairs
from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, generate_world
from lightning_modules.loftr_module import LoFTRModule, TrainingConfig
from tests.helpers import tiny_model_config


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """A collated batch of two pairs from each dense dataset: MegaDepth (depth + pose) and homography."""
    root = tmp_path_factory.mktemp("sources")
    infos = generate_world(root / "world", WorldConfig(num_scenes=1, cameras_per_scene=5, image_size=(160, 120)))
    megadepth = MegaDepthPairs(MegaDepthConfig(root=str(root / "world"), scene_info=(str(infos[0]),),
                                               longer_side=160, depth_pad_size=160))
    (root / "photos").mkdir()
    for seed in range(2):
        cv2.imwrite(str(root / "photos" / f"{seed}.png"), make_texture(120, 160, seed=seed))
    homography = HomographyPairs(HomographyConfig(root=str(root / "photos"), image_size=(160, 128)))
    return {name: default_collate([dataset[0], dataset[1]])
            for name, dataset in (("megadepth", megadepth), ("homography", homography))}


def test_what_the_datasets_emit_is_the_contract(batches):
    for batch in batches.values():
        check_batch(batch)
        tensors = {key for key, value in batch.items() if isinstance(value, torch.Tensor)}
        assert tensors <= set(SHAPES), tensors - set(SHAPES)  # every tensor key has its shape written down
    assert {"scene_name", "pair_names", "dataset_name"} <= set(batches["megadepth"])


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: b.pop("image1"), r"image1 is missing"),
    (lambda b: b.update(mask0=b["mask0"][:, :-1]), r"mask0 has shape \(2, 159, 160\), expected \(2, 160, 160\)"),
    (lambda b: b.update(K0=b["K0"][:, :2]), r"K0 has shape \(2, 2, 3\), expected \(2, 3, 3\)"),
    (lambda b: b.update(T_0to1=b["T_0to1"][:1]), r"T_0to1 has shape \(1, 4, 4\), expected \(2, 4, 4\)"),
    (lambda b: b.update(scale1=b["scale1"].tolist()), r"scale1 must be a tensor \(B, 2\), got list"),
    (lambda b: b.pop("depth1"), r"depth and pose ground truth needs depth1"),
    (lambda b: b.update(scene_name=b["scene_name"][:1]), r"scene_name has 1 names for 2 pairs"),
])
def test_a_bad_key_is_named(batches, change, message):
    batch = dict(batches["megadepth"])
    change(batch)
    with pytest.raises(ValueError, match=message):
        check_batch(batch)


def test_a_batch_without_ground_truth_geometry_says_what_it_needs(batches):
    batch = {key: batches["homography"][key] for key in ("image0", "image1")}
    check_batch(batch, ground_truth=False)
    with pytest.raises(ValueError, match=r"no ground truth: needs correspondences0 \+ .* or H_0to1, or depth0"):
        check_batch(batch)


def test_the_training_step_checks_the_batch(batches):
    module = LoFTRModule(TrainingConfig(model=tiny_model_config()))
    batch = dict(batches["homography"])
    batch["H_0to1"] = batch["H_0to1"][:, :2]
    with pytest.raises(ValueError, match=r"batch: H_0to1 has shape \(2, 2, 3\), expected \(2, 3, 3\)"):
        module.training_step(batch, 0)
