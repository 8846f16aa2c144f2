"""Training with the tilt augmentation (data/tilt.py): a tiny LoFTR learns a tilted pair of the
generated world from its composed ground truth, `train.py experiment=affine_synthetic` runs a few steps as a
user runs it, and a tilt option out of range is one line naming it (exit code 2)."""

import json

import torch
from torch.utils.data import default_collate

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.tilt import tilt_item
from geometry.grid import grid_size
from geometry.ground_truth import coarse_supervision
from geometry.warp import warp_depth
from losses.loftr_loss import LoFTRLoss
from models.loftr import LoFTR
from tests.ground_truth_helpers import fit
from tests.helpers import assert_unchanged, refusal, run_here, snapshot, tiny_model_config
from tests.train_helpers import ROOT, small

TRAIN = str(ROOT / "train.py")


def test_tiny_model_learns_a_tilted_pair_of_the_world(world, one_thread):
    """A world pair with image 1 tilted 2.5-fold (tests/losses/test_learning.py's fit): 80 AdamW steps on its
    composed ground truth cut the coarse loss a hundredfold, and the trained model's matches land where depth,
    pose and then the tilt put them (1.2 px median at 160x120), not where they would land untilted."""
    torch.manual_seed(0)
    pairs = MegaDepthPairs(MegaDepthConfig(root=str(world), scene_list=str(world / "train.txt"), longer_side=160,
                                           depth_pad_size=160, pad_to_square=False))
    model = LoFTR(tiny_model_config()).train()
    tilted, _ = tilt_item(pairs[0], 2.5, 30.0)
    batch = default_collate([tilted])
    grid0, grid1 = (grid_size(batch[f"image{side}"].shape[2:], 8) for side in (0, 1))
    supervision = coarse_supervision(batch, grid0, grid1)
    assert len(supervision.index0) > 20
    history = [parts.coarse.item() for parts in fit(model, LoFTRLoss(), batch, supervision, steps=80)]
    assert history[-1] < 0.01 * history[0]

    with torch.no_grad():
        result = model.eval()(batch)
    geometry = [batch[key].double() for key in ("depth0", "depth1", "K0", "K1", "T_0to1")]
    keypoints0, keypoints1 = result.keypoints0[None].double(), result.keypoints1.double()  # original pixels
    valid, landed = warp_depth(keypoints0, *geometry)  # K1 is the view's: the tilt included
    error = (landed[0] - keypoints1).norm(dim=-1)[valid[0]]
    assert len(error) >= 15
    assert error.median() < 2 and (error < 3).float().mean() > 0.7
    geometry[3] = pairs[0]["K1"].double()[None]  # the same matches against the untilted geometry: far off
    _, untilted = warp_depth(keypoints0, *geometry)
    assert (untilted[0] - keypoints1).norm(dim=-1)[valid[0]].median() > 5


def test_train_py_runs_the_tilt_experiment(world, tmp_path):
    run = run_here([TRAIN, *small(world, tmp_path / "run", "experiment=affine_synthetic", "trainer=cpu",
                                  "trainer.max_steps=3", "data.val.synthetic=null", f"hydra.run.dir={tmp_path / 'run'}",
                                  "callbacks.progress_bar=false")], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["experiment"] == "affine_synthetic" and summary["global_step"] == 3
    assert "max_tilt: 8.0" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()


def test_a_tilt_out_of_range_is_one_line_naming_it(world, tmp_path):
    before = snapshot(world)
    for override in ("data.tilt.max_tilt=0.5", "data.tilt.probability=1.5"):
        run = run_here([TRAIN, *small(world, tmp_path / "run", "trainer=cpu", "trainer.max_steps=1",
                                      f"hydra.run.dir={tmp_path / 'run'}", override)], tmp_path)
        refusal(run, override, "must be")
    assert_unchanged(before)
    assert not (tmp_path / "run" / "checkpoints").exists()
