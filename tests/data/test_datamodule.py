"""The data module: datasets from plain config, scene-balanced training batches, clear config errors."""

import cv2
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from data.augment import PhotometricConfig, RandomSwap, swap_sides
from data.datamodule import DataConfig, PairDataModule, build_dataset
from data.errors import BadPairError
from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, generate_world
from geometry.ground_truth import coarse_supervision


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    infos = generate_world(root / "world", WorldConfig(num_scenes=2, cameras_per_scene=6, image_size=(160, 120)))
    (root / "photos").mkdir()
    for seed in range(3):
        cv2.imwrite(str(root / "photos" / f"{seed}.png"), make_texture(120, 160, seed=seed))
    world = {"type": "megadepth", "root": str(root / "world"), "scene_info": [str(p) for p in infos],
             "longer_side": 160, "depth_pad_size": 160}
    photos = {"type": "homography", "root": str(root / "photos"), "image_size": [160, 160]}
    return world, photos


def test_training_batches_are_scene_balanced_and_supervisable(sources):
    world, _ = sources
    module = PairDataModule(DataConfig(train={"world": world}, val={"world": world}, batch_size=2, num_workers=0,
                                       samples_per_scene=3, augment=PhotometricConfig()))
    module.setup("fit")
    loader = module.train_dataloader()
    batches = list(loader)
    assert len(batches) == 3  # 2 scenes x 3 pairs, 2 per batch
    scenes = [name for batch in batches for name in batch["scene_name"]]
    assert sorted(scenes) == ["scene0000"] * 3 + ["scene0001"] * 3
    batch = batches[0]
    assert batch["image0"].shape == (2, 1, 160, 160) and batch["mask0"].shape == (2, 160, 160)
    supervision = coarse_supervision(batch, (20, 20), (20, 20))
    assert len(supervision.index0) > 0
    loader.sampler.set_epoch(1)
    assert module.augment.epoch == 1
    assert len(list(module.val_dataloader())) == len(module.datasets["val"][0])


def test_crops_from_config_change_with_the_epoch_behind_wrappers(sources):
    world, _ = sources
    cropped = dict(world, pad_to_square=False, crop_size=[64, 48])
    module = PairDataModule(DataConfig(train={"world": cropped}, num_workers=0, samples_per_scene=2, random_swap=True,
                                       skip_bad_pairs=True))
    module.setup("fit")
    loader = module.train_dataloader()
    assert next(iter(loader))["image0"].shape == (1, 1, 48, 64)
    loader.sampler.set_epoch(2)
    inner = module.datasets["train"][0].dataset.dataset  # RandomSwap(SkipBadPairs(MegaDepthPairs))
    assert inner.config.crop_size == (64, 48) and inner.epoch == 2


def test_two_ranks_split_an_epoch(sources):
    world, _ = sources
    module = PairDataModule(DataConfig(train={"world": world}, num_workers=0, samples_per_scene=4))
    module.setup("fit")
    module._world = lambda: (2, 0)
    first = list(module.train_dataloader().sampler)
    module._world = lambda: (2, 1)
    second = list(module.train_dataloader().sampler)
    assert len(first) == len(second) == 4


def test_mixed_sources_and_config_errors(sources):
    world, photos = sources
    module = PairDataModule(DataConfig(train={"photos": photos}, num_workers=0, samples_per_scene=2))
    module.setup("fit")
    assert next(iter(module.train_dataloader()))["H_0to1"].shape == (1, 3, 3)
    with pytest.raises(ValueError, match=r"'colmap' is not one of \['homography', 'inhouse', 'megadepth', 'scannet'\]"):
        build_dataset({"type": "colmap"})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['longest_side'\]; valid fields are"):
        build_dataset({**world, "longest_side": 840})
    with pytest.raises(ValueError, match="data.train is empty"):
        PairDataModule(DataConfig()).train_dataloader()


def test_skip_bad_pairs_keeps_training_batches_full_and_evaluation_strict(tmp_path):
    for seed in range(2):
        cv2.imwrite(str(tmp_path / f"{seed}.png"), make_texture(120, 160, seed=seed))
    # cut short after its header: setup's header check passes it, loading fails
    (tmp_path / "2.png").write_bytes(cv2.imencode(".png", make_texture(120, 160, seed=2))[1].tobytes()[:64])
    photos = {"type": "homography", "root": str(tmp_path), "image_size": [160, 160]}
    config = DataConfig(train={"photos": photos}, val={"photos": photos}, batch_size=3, num_workers=0,
                        samples_per_scene=3, skip_bad_pairs=True)
    module = PairDataModule(config)
    module.setup("fit")
    with pytest.warns(
        RuntimeWarning, match=r"skipped a bad pair \(1 so far.*homography pair 2: cannot decode image .*2.png"
    ):
        batch = next(iter(module.train_dataloader()))
    assert batch["image0"].shape[0] == 3 and all("2.png" not in name for name in batch["pair_names"][0])
    with pytest.raises(BadPairError, match="homography pair 2"):
        list(module.val_dataloader())


def _matches(item: dict) -> set[tuple[int, int]]:
    batch = default_collate([item])
    grids = [tuple(s // 8 for s in batch[f"image{side}"].shape[2:]) for side in (0, 1)]
    supervision = coarse_supervision(batch, *grids)
    return set(zip(supervision.index0.tolist(), supervision.index1.tolist()))


def test_a_swapped_pair_has_the_transposed_ground_truth(sources):
    for entry in sources:
        item = build_dataset(entry)[1]
        swapped = swap_sides(item)
        assert torch.equal(swapped["image0"], item["image1"]) and swapped["pair_names"] == item["pair_names"][::-1]
        original = _matches(item)
        assert len(original) > 10
        assert _matches(swapped) == {(j, i) for i, j in original}


def test_random_swap_draws_per_pair_and_epoch_alike_in_every_worker(sources):
    world, _ = sources
    module = PairDataModule(DataConfig(train={"world": world}, num_workers=0, samples_per_scene=8, random_swap=True))
    module.setup("fit")
    swap = module.datasets["train"][0]
    assert isinstance(swap, RandomSwap)
    plain = swap.dataset
    def order():
        return [swap[i]["pair_names"] != plain[i]["pair_names"] for i in range(len(plain))]
    first = order()
    assert 0 < sum(first) < len(first)
    assert order() == first
    loader = module.train_dataloader()
    loader.sampler.set_epoch(1)
    assert swap.epoch == 1 and order() != first
    def names(workers):
        return [b["pair_names"] for b in DataLoader(swap, batch_size=2, num_workers=workers)]
    assert names(0) == names(2)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader_resumes_mid_epoch_in_the_right_epoch(sources, workers):
    """The loader's state (epoch, pairs handed out) restored into a new loader, as a resumed run does: the
    rest of that epoch's pairs, even when `iter` comes before `set_epoch` (Lightning's order on resume)."""
    world, _ = sources
    def names(batches):
        return [name for batch in batches for name in batch["pair_names"][0]]
    module = PairDataModule(DataConfig(train={"world": world}, num_workers=workers, samples_per_scene=3,
                                            random_swap=True))
    module.setup("fit")
    loader = module.train_dataloader()
    loader.sampler.set_epoch(1)
    batches = iter(loader)
    seen = [next(batches), next(batches)]
    state = module.state_dict()
    assert state == {"train_loader": {"epoch": 1, "position": 2}} and loader.state_dict() == state["train_loader"]
    rest = list(batches)

    resumed = PairDataModule(DataConfig(train={"world": world}, num_workers=workers, samples_per_scene=3,
                                            random_swap=True))
    resumed.setup("fit")
    resumed.load_state_dict(state)
    again = resumed.train_dataloader()
    started = iter(again)
    again.sampler.set_epoch(1)
    assert len(again) == len(loader) == 6
    assert names(list(started)) == names(rest) and len(rest) == 4
    assert again.state_dict() == {"epoch": 1, "position": 6}
    assert names(seen + rest) == names(list(again))  # the pass after is the whole epoch again
    # resumed at an epoch's end: Lightning calls `iter`, then `set_epoch` for the next epoch
    resumed.load_state_dict({"train_loader": {"epoch": 1, "position": 6}})
    next_epoch = resumed.train_dataloader()
    started = iter(next_epoch)
    next_epoch.sampler.set_epoch(2)
    loader.sampler.set_epoch(2)
    assert names(list(started)) == names(list(loader)) != names(seen + rest)
