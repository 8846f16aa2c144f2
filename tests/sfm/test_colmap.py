"""The exports for structure from motion (sfm/colmap.py, sfm/hloc.py): exact projections of a known scene, merged
into one keypoint set per image, written as a COLMAP database and mapped by pycolmap, give back the cameras'
relative poses; hloc's files read back as hloc reads them map the same."""

import h5py
import numpy as np
import pytest

from evaluation.metrics import mean_average_accuracy, multiview_pose_errors
from models.matches import Matches
from sfm.colmap import CameraPrior, camera_of_photo, write_database
from sfm.hloc import pair_key, write_hloc
from sfm.keypoints import QuantizationConfig, sfm_features
from sfm.reconstruct import reconstruct, registered_poses
from tests.sfm_helpers import read_hloc

pycolmap = pytest.importorskip("pycolmap")

WIDTH, HEIGHT, FOCAL = 640, 480, 500.0
K = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]])


def scene(views: int = 5, points: int = 500, seed: int = 0, K: np.ndarray = K):
    """Random points in front of `views` cameras on an arc looking at them: (names, world-to-camera (R, t) per
    view, the pairwise matches of the exact projections, each point seen by every camera, pixel (c, r) at
    (c, r))."""
    rng = np.random.default_rng(seed)
    world = rng.uniform([-2, -1.5, 5], [2, 1.5, 9], (points, 3))
    poses = []
    for k in range(views):
        angle = np.radians(6.0 * (k - views // 2))
        rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        poses.append((rotation, np.array([0.5 * (k - views // 2), 0.05 * k, 0.0])))

    def projected(k):
        rotation, translation = poses[k]
        pixels = (world @ rotation.T + translation) @ K.T
        return pixels[:, :2] / pixels[:, 2:] - 0.5  # COLMAP's corner-at-0 pinhole, in our pixel convention

    names = [f"view{k}.png" for k in range(views)]
    pairs = {(names[a], names[b]): Matches(projected(a), projected(b), np.ones(points))
             for a in range(views) for b in range(a + 1, views)}
    return names, poses, pairs


def mapped(tmp_path, features, cameras):
    """`features` written to a database and mapped by `reconstruct` (one thread, seeded): (the image ids, the
    largest model or None)."""
    ids = write_database(tmp_path / "scene.db", features, cameras)
    return ids, reconstruct(tmp_path / "scene.db", tmp_path, tmp_path / "sparse")


def test_a_written_database_maps_back_to_the_true_relative_poses(tmp_path):
    """Known focal lengths (as from EXIF) and exact keypoints (no snapping, exact duplicates merged: each scene
    point one keypoint per image): every image registered, every scene point triangulated, every pair's relative
    rotation and translation direction within 0.05 degree of the truth, so IMC's mAA is 100."""
    names, poses, pairs = scene()
    features = sfm_features(pairs, QuantizationConfig(cell_size=0, max_error=0))
    assert all(len(points) == 500 for points in features.keypoints.values())
    ids, model = mapped(tmp_path, features, {name: CameraPrior(WIDTH, HEIGHT, FOCAL) for name in names})
    database = pycolmap.Database.open(str(tmp_path / "scene.db"))
    assert database.num_images() == 5 and database.num_verified_image_pairs() == 10
    assert np.allclose(database.read_keypoints(ids[names[0]])[:, :2], features.keypoints[names[0]] + 0.5)
    database.close()
    assert model.num_reg_images() == 5 and model.num_points3D() == 500
    estimated = registered_poses(model)
    truth = {}
    for name, (rotation, translation) in zip(names, poses):
        truth[name] = np.eye(4)
        truth[name][:3, :3], truth[name][:3, 3] = rotation, translation
    errors = multiview_pose_errors(estimated, truth)
    assert len(errors) == 10 and max(error.max_deg for error in errors.values()) < 0.05
    assert mean_average_accuracy(error.max_deg for error in errors.values()) == 100.0


def test_known_intrinsics_off_centre_stay_as_given_and_map_exactly(tmp_path):
    """Cameras with a principal point off the centre, written as known and kept by the mapper (the multiview
    benchmark's cameras): COLMAP's parameters are the given ones, the principal point half a pixel on (COLMAP's
    pixel centres), and the poses come back exactly. Written at the centre instead, the same keypoints map to
    poses off by degrees."""
    off_centre = np.array([[FOCAL, 0, 300.0], [0, FOCAL, 260.0], [0, 0, 1]])
    names, poses, pairs = scene(K=off_centre)
    features = sfm_features(pairs, QuantizationConfig(cell_size=0, max_error=0))
    truth = {}
    for name, (rotation, translation) in zip(names, poses):
        truth[name] = np.eye(4)
        truth[name][:3, :3], truth[name][:3, 3] = rotation, translation
    worst = {}
    for label, point in (("given", (300.0 - 0.5, 260.0 - 0.5)), ("centre", None)):
        folder = tmp_path / label
        folder.mkdir()
        write_database(folder / "scene.db", features, {name: CameraPrior(WIDTH, HEIGHT, FOCAL, point)
                                                        for name in names})
        model = reconstruct(folder / "scene.db", folder, folder / "sparse", known_intrinsics=True)
        assert all(camera.params.tolist() == CameraPrior(WIDTH, HEIGHT, FOCAL, point).params()
                   for camera in model.cameras.values())
        worst[label] = max(e.max_deg for e in multiview_pose_errors(registered_poses(model), truth).values())
    assert CameraPrior(WIDTH, HEIGHT, FOCAL, (299.5, 259.5)).params()[1:3] == [300.0, 260.0]
    assert worst["given"] < 0.05 and worst["centre"] > 1.0, worst


def test_without_focal_lengths_colmaps_prior_still_registers_every_image(tmp_path):
    names, _, pairs = scene()
    _, model = mapped(tmp_path, sfm_features(pairs), {name: CameraPrior(WIDTH, HEIGHT) for name in names})
    database = pycolmap.Database.open(str(tmp_path / "scene.db"))
    camera = database.read_all_cameras()[0]
    database.close()
    assert camera.focal_length == 1.2 * WIDTH and not camera.has_prior_focal_length
    assert model is not None and model.num_reg_images() == 5 and model.num_points3D() > 0


def test_an_existing_database_is_never_replaced(tmp_path):
    names, _, pairs = scene(views=2, points=50)
    path = tmp_path / "scene.db"
    path.write_bytes(b"a user's database")
    with pytest.raises(FileExistsError, match="scene.db"):
        write_database(path, sfm_features(pairs), {name: CameraPrior(WIDTH, HEIGHT) for name in names})
    assert path.read_bytes() == b"a user's database"
    with pytest.raises(KeyError, match="view1.png"):
        write_database(tmp_path / "other.db", sfm_features(pairs), {names[0]: CameraPrior(WIDTH, HEIGHT)})
    assert not (tmp_path / "other.db").exists()


def test_hlocs_files_read_back_as_hloc_reads_them_map_to_the_scene(tmp_path):
    """Images in a sub-folder (hloc's names keep the "/"; pair keys make it "-"): the files read back the
    features written, and a database made from what was read maps every image and point."""
    names, _, pairs = scene()
    pairs = {(f"site/{a}", f"site/{b}"): matches for (a, b), matches in pairs.items()}
    features = sfm_features(pairs, QuantizationConfig(cell_size=0, max_error=0))
    sizes = dict.fromkeys(features.keypoints, (WIDTH, HEIGHT))
    write_hloc(tmp_path / "hloc", features, sizes)
    with h5py.File(tmp_path / "hloc" / "matches.h5", "r") as file:
        assert pair_key("site/view0.png", "site/view1.png") == "site-view0.png/site-view1.png" in file
    again = read_hloc(tmp_path / "hloc", list(pairs))
    for name, points in features.keypoints.items():
        assert np.allclose(again.keypoints[name], points, atol=1e-4)  # float32
    for pair, found in features.matches.items():
        assert np.array_equal(again.matches[pair], found[np.argsort(found[:, 0])])
    _, model = mapped(tmp_path, again, {name: CameraPrior(WIDTH, HEIGHT, FOCAL) for name in again.keypoints})
    assert model is not None and model.num_reg_images() == 5 and model.num_points3D() == 500
    with pytest.raises(FileExistsError, match="features.h5"):
        write_hloc(tmp_path / "hloc", features, sizes)


def test_a_photos_camera_is_its_upright_size_and_its_exif_focal_length(tmp_path):
    """A 400x300 JPEG stored turned (EXIF orientation 6) with a 28 mm 35-mm-equivalent focal length: 300x400 as
    the matchers read it, focal 28 / 35 x 400 px (COLMAP's rule); without EXIF, COLMAP's prior."""
    from PIL import Image

    stored = Image.fromarray(np.zeros((300, 400), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0xA405] = 28
    stored.save(tmp_path / "turned.jpg", exif=exif)
    stored.save(tmp_path / "plain.jpg")
    turned, plain = camera_of_photo(tmp_path / "turned.jpg"), camera_of_photo(tmp_path / "plain.jpg")
    assert (turned.width, turned.height) == (300, 400) and turned.focal == pytest.approx(28 / 35 * 400)
    assert (plain.width, plain.height, plain.focal) == (400, 300, None)
    assert plain.params()[0] == pytest.approx(1.2 * 400)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        camera_of_photo(tmp_path / "broken.jpg")
