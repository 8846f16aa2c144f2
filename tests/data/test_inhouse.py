"""In-house data from photos: SfM on rendered photos against the renderer's truth, sparse labels through the
dataset, supervision and a training step, label files and bad input."""

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from data.datamodule import build_dataset
from data.inhouse.__main__ import main
from data.inhouse.labels import LabelFileError, read_labels
from data.inhouse.prepare import PrepareConfig, PrepareError, prepare
from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, render_scene
from geometry.ground_truth import coarse_supervision, sparse_supervision
from lightning_modules.config import TrainingConfig
from lightning_modules.loftr_module import LoFTRModule
from tests.helpers import tiny_model_config, track_errors

pytest.importorskip("pycolmap")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Ten rendered 320x240 photos of one room, one camera (f = 256 px), prepared by SfM; the renderer's truth."""
    root = tmp_path_factory.mktemp("inhouse")
    scene = render_scene(WorldConfig(num_scenes=1, cameras_per_scene=10, image_size=(320, 240),
                                     focal_range=(1.0, 1.0), seed=3), 0)
    (root / "photos").mkdir()
    for k, image in enumerate(scene.images):
        cv2.imwrite(str(root / "photos" / f"{k:02d}.png"), image)
    report = prepare(PrepareConfig(images=str(root / "photos"), out=str(root / "out"), camera_mode="single",
                                   num_threads=2))
    info = pickle.loads(report.scene_info.read_bytes())
    ids = [int(Path(path).stem) for path in info["image_paths"]]
    return root, scene, report, info, ids


def as_batch(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, np.float64))[None]


def test_sfm_registers_the_cameras_and_recovers_relative_poses(photos):
    _, scene, report, info, ids = photos
    assert len(report.registered) >= 5 and report.pairs_kept >= 5  # 6 of 10 and 8 pairs when written
    for k, i in enumerate(ids):  # intrinsics in this project's pixel convention (centre at (W - 1) / 2)
        assert np.allclose(info["intrinsics"][k], scene.intrinsics[i], rtol=0.01, atol=0.05)
    rotation, direction = [], []
    for (a, b), *_ in info["pair_infos"]:  # SfM's gauge is a similarity: compare relative poses
        estimated = info["poses"][b] @ np.linalg.inv(info["poses"][a])
        true = scene.poses[ids[b]] @ np.linalg.inv(scene.poses[ids[a]])
        R = estimated[:3, :3].T @ true[:3, :3]
        rotation.append(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
        t0, t1 = estimated[:3, 3], true[:3, 3]
        direction.append(np.degrees(np.arccos(np.clip(t0 @ t1 / np.linalg.norm(t0) / np.linalg.norm(t1), -1, 1))))
    assert max(rotation) < 0.5 and max(direction) < 1.5  # written: 0.2 and 0.6 degrees


def test_track_correspondences_agree_with_the_renderer(photos):
    _, scene, _, info, ids = photos
    seen, errors = track_errors(scene, info, ids)
    assert min(seen) > 0.95  # tracks are of points both cameras see
    assert len(errors) > 300
    assert np.median(errors) < 0.5 and np.percentile(errors, 90) < 2.0  # pixels


def test_prepared_pairs_train_through_sparse_supervision(photos):
    root, scene, _, info, ids = photos
    dataset = build_dataset({"type": "inhouse", "root": str(root / "out"),
                             "scene_info": [str(root / "out" / "scene_info" / "inhouse.npz")], "longer_side": 320,
                             "pad_to_square": False, "max_correspondences": 256})
    item = dataset[0]
    batch = default_collate([item])
    assert batch["correspondences0"].shape == (1, 256, 2) and batch["K0"].shape == (1, 3, 3)
    sparse = sparse_supervision(batch, (30, 40), (30, 40))
    assert len(sparse.index0) > 10
    # against the exact dense ground truth of the same pair (true depth and pose)
    i, j = (int(Path(name).stem) for name in item["pair_names"])
    exact = dict(batch, depth0=as_batch(scene.depths[i]).float(), depth1=as_batch(scene.depths[j]).float(),
                 K0=as_batch(scene.intrinsics[i]).float(), K1=as_batch(scene.intrinsics[j]).float(),
                 T_0to1=as_batch(scene.poses[j] @ np.linalg.inv(scene.poses[i])).float())
    exact.pop("T_1to0")
    dense = coarse_supervision(exact, (30, 40), (30, 40))
    rows = dict(zip(dense.index0.tolist(), dense.index1.tolist()))
    agree = np.mean([rows.get(a) == b for a, b in zip(sparse.index0.tolist(), sparse.index1.tolist())])
    assert agree > 0.75  # the rest: SfM noise on cell borders, occlusions
    known = sparse.warped0_valid[0, sparse.index0] & dense.warped0_valid[0, sparse.index0]
    error = (sparse.warped0[0, sparse.index0] - dense.warped0[0, sparse.index0]).norm(dim=-1)[known]
    assert known.sum() > 5 and error.median() < 1.0

    module = LoFTRModule(TrainingConfig(model=tiny_model_config()))  # the dispatch: a sparse batch trains
    dataset.config.longer_side = 160  # small images: a quick step
    loss = module.training_step(default_collate([dataset[k] for k in range(2)]), 0)
    loss.backward()
    assert torch.isfinite(loss)


def test_labels_replace_the_tracks_of_their_pair(photos, tmp_path):
    root, scene, _, info, ids = photos
    (a, b), *_ = info["pair_infos"][0]
    name0, name1 = (Path(info["image_paths"][k]).name for k in (a, b))
    unregistered = sorted({f"{k:02d}.png" for k in range(10)} - {Path(p).name for p in info["image_paths"]})[0]
    labels = tmp_path / "labels.csv"
    labels.write_text(f"image0,image1,x0,y0,x1,y1\n{name1}, {name0}, 10, 20, 30, 40\n{name0} {name1} 1 2 3 4\n"
                      f"{name0},{unregistered},5,5,6,6\n")
    report = prepare(PrepareConfig(images=str(root / "photos"), out=str(tmp_path / "out"),
                                   model=str(root / "out" / "sparse" / "0"), labels=str(labels)))
    written = pickle.loads(report.scene_info.read_bytes())
    index = [k for k, ((i0, i1), *_) in enumerate(written["pair_infos"]) if (i0, i1) == (a, b)][0]
    assert np.array_equal(written["correspondences"][index], [[30, 40, 10, 20], [1, 2, 3, 4]])
    assert report.labelled_pairs == 1 and any(unregistered in reason for reason in report.dropped)
    labels.write_text(f"{name0},{name1},10,20,30,40\n{name0},{name1},10,20,330,40\n")
    outside = r"labels.csv line 2: point \(330, 40\) lies outside image \d+\.png \(320x240"
    with pytest.raises(LabelFileError, match=outside):
        prepare(
            PrepareConfig(
                images=str(root / "photos"),
                out=str(tmp_path / "out2"),
                model=str(root / "out" / "sparse" / "0"),
                labels=str(labels),
            )
        )


@pytest.mark.parametrize(
    "text, message",
    [
        ("a.jpg,b.jpg,1,2,3\n", "line 1: expected 6 fields"),
        ("# comment\n\na.jpg,b.jpg,1,2,3,4\na.jpg,b.jpg,1,2,3,y\n", "line 4: y1 = 'y' is not a number"),
        ("a.jpg,a.jpg,1,2,3,4\n", "line 1: both points are on image a.jpg"),
        ("x0,y0\na.jpg b.jpg 1 nan 3 4\n", "line 1: expected 6 fields"),
        ("a.jpg b.jpg 1 nan 3 4\n", "line 1: y0 = 'nan' is not a finite"),
        ("# nothing\n", "no correspondences"),
    ],
)
def test_malformed_label_files_name_the_line(tmp_path, text, message):
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(LabelFileError, match=message):
        read_labels(tmp_path / "labels.txt")


def test_label_file_pairs_in_either_order_are_one_pair(tmp_path):
    (tmp_path / "labels.txt").write_text(
        "image0,image1,x0,y0,x1,y1\na.jpg,b.jpg,1,2,3,4\nb.jpg\tc.jpg 5 6 7 8\nb.jpg,a.jpg,10,20,30,40\n"
    )
    labels = read_labels(tmp_path / "labels.txt")
    assert sorted(labels) == [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg")]
    assert labels["a.jpg", "b.jpg"].array().tolist() == [[1, 2, 3, 4], [30, 40, 10, 20]]
    assert labels["a.jpg", "b.jpg"].lines == [2, 4]


def test_too_few_or_unrelated_photos_say_how_many_registered_and_why(tmp_path, capsys):
    (tmp_path / "one").mkdir()
    cv2.imwrite(str(tmp_path / "one" / "a.png"), make_texture(120, 160, seed=1))
    assert main(["prepare", "--images", str(tmp_path / "one"), "--out", str(tmp_path / "out")]) == 2
    assert "found 1 image(s)" in capsys.readouterr().err
    (tmp_path / "unrelated").mkdir()
    for seed in range(3):  # three different textures: nothing to match
        cv2.imwrite(str(tmp_path / "unrelated" / f"{seed}.png"), make_texture(240, 320, seed=seed + 10))
    with pytest.raises(PrepareError, match="registered 0 of 3 images .* may not overlap"):
        prepare(PrepareConfig(images=str(tmp_path / "unrelated"), out=str(tmp_path / "out"), num_threads=1))


def test_pairs_dropped_by_overlap_are_reported(photos, tmp_path):
    root, *_ = photos
    with pytest.raises(PrepareError, match=r"no pair kept: \d+ overlap above 0.05 .*; \d+ share fewer than 30"):
        prepare(
            PrepareConfig(
                images=str(root / "photos"),
                out=str(tmp_path / "out"),
                model=str(root / "out" / "sparse" / "0"),
                min_overlap=0.01,
                max_overlap=0.05,
            )
        )


def test_labels_alone_train_without_poses(photos, tmp_path):
    """A label file and its photos, no SfM: items without K/T, ground truth from the labels."""
    root, _, _, info, _ = photos
    (a, b), *_ = info["pair_infos"][0]
    names = [Path(info["image_paths"][k]).name for k in (a, b)]
    points = info["correspondences"][0]
    (tmp_path / "labels.csv").write_text(
        "".join(f"{names[0]},{names[1]},{x0},{y0},{x1},{y1}\n" for x0, y0, x1, y1 in points)
    )
    dataset = build_dataset(
        {
            "type": "inhouse",
            "root": str(root / "photos"),
            "labels": str(tmp_path / "labels.csv"),
            "longer_side": 320,
            "pad_to_square": False,
            "max_correspondences": 256,
        }
    )
    batch = default_collate([dataset[0]])
    assert "T_0to1" not in batch and int(batch["correspondences_valid"].sum()) == min(len(points), 256)
    assert len(sparse_supervision(batch, (30, 40), (30, 40)).index0) > 10


def test_random_swap_swaps_the_correspondences():
    from data.augment import swap_sides

    item = {
        "image0": torch.zeros(1, 4, 4),
        "image1": torch.ones(1, 4, 4),
        "correspondences0": torch.tensor([[1.0, 2.0]]),
        "correspondences1": torch.tensor([[3.0, 4.0]]),
        "correspondences_valid": torch.tensor([True]),
    }
    swapped = swap_sides(item)
    assert swapped["correspondences0"].tolist() == [[3.0, 4.0]] and swapped["correspondences1"].tolist() == [[1.0, 2.0]]
