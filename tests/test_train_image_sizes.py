"""`python train.py data=homography` with an image size whose sides are not multiples of 8 trains a few steps
(the user's command, on a folder of a generated world's photos)."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import train as train_script
from data.synthetic.__main__ import main as generate_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    assert generate_world(["--out", str(root), "--scenes", "3", "--cameras", "4", "--size", "160x120"]) == 0
    return root  # its images, found recursively, are the photo folder


def test_homography_training_on_a_164x123_image_size(photos, tmp_path):
    overrides = [
        "~experiment", "data=homography", "model=loftr_tiny", "trainer=cpu",
        f"data.train.homography.root={photos}", f"data.val.homography.root={photos}",
        "data.train.homography.image_size=[164,123]", "data.val.homography.image_size=[164,123]",
        "data.num_workers=0", "data.batch_size=2", "data.samples_per_scene=4", f"run_dir={tmp_path}",
        "logger=csv", "final_evaluation.benchmark=null", "world.generate=false", f"world.root={photos}",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1", "optimizer.warmup_steps=3",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        config = OmegaConf.to_object(compose("train", overrides=overrides))
    summary = train_script.train(config)
    assert summary["global_step"] == 2 and summary["skipped_steps"] == 0
    written = json.loads(
        (tmp_path / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"summary.json holds {c}")
    )
    assert "val/auc@10" in written["validation"]
