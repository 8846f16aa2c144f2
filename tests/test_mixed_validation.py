"""A validation list that mixes pose (megadepth) and homography datasets: each dataloader is scored by its own
kind and logged under its own names (`val/pose_0/...`, `val/homography_1/...`), and the unprefixed keys the
checkpoint monitor reads (`val/auc@10`, `val/auc@20`) stay defined."""

from pathlib import Path

import pytest

import train as train_script
from tests.train_helpers import config_of


def validate(world: Path, run_dir: Path, entries: dict[str, str]) -> dict:
    overrides = [
        "experiment=loftr_synthetic", f"world.root={world}", "world.generate=false", f"run_dir={run_dir}", "logger=csv",
        "final_evaluation.benchmark=null", "data.num_workers=0", "validate_only=true",
        "data.val.synthetic=null", f"data.val={{{','.join(f'{name}:{entry}' for name, entry in entries.items())}}}",
    ]
    return train_script.train(config_of(overrides))["validation"]


def pose_entry(world: Path) -> str:
    return f"{{type:megadepth,root:'{world}',scene_list:'{world}/val.txt',longer_side:160,depth_pad_size:160}}"


def homography_entry(world: Path) -> str:
    return f"{{type:homography,root:'{world}',image_size:[160,120]}}"


def test_each_validation_set_is_scored_by_its_kind(world, tmp_path):
    mixed = validate(world, tmp_path / "mixed", {"pose": pose_entry(world), "homography": homography_entry(world)})
    pose = validate(world, tmp_path / "pose", {"pose": pose_entry(world)})
    homography = validate(world, tmp_path / "homography", {"homography": homography_entry(world)})

    # a single set keeps its plain names
    assert {"val/auc@5", "val/auc@10", "val/auc@20", "val/precision", "val/matches", "val/loss"} <= set(pose)
    assert {"val/auc@3", "val/auc@5", "val/auc@10", "val/matches", "val/loss"} <= set(homography)
    assert "val/auc@20" not in homography and "val/precision" not in homography

    # the mix: each set's numbers under its own prefix, the same as validated alone
    for key in ("auc@5", "auc@10", "auc@20", "precision", "matches", "pairs"):
        assert mixed[f"val/pose_0/{key}"] == pytest.approx(pose[f"val/{key}"]), key
    for key in ("auc@3", "auc@5", "auc@10", "matches", "pairs"):
        assert mixed[f"val/homography_1/{key}"] == pytest.approx(homography[f"val/{key}"]), key
    assert "val/homography_1/auc@20" not in mixed and "val/homography_1/precision" not in mixed

    # the monitored keys: the mean over the sets that have the metric
    assert mixed["val/auc@10"] == pytest.approx((pose["val/auc@10"] + homography["val/auc@10"]) / 2)
    assert mixed["val/auc@20"] == pytest.approx(pose["val/auc@20"])
    assert mixed["val/precision"] == pytest.approx(pose["val/precision"])
    pairs = pose["val/pairs"], homography["val/pairs"]
    assert mixed["val/loss"] == pytest.approx(
        (pose["val/loss"] * pairs[0] + homography["val/loss"] * pairs[1]) / sum(pairs))
