"""Relative poses from the two conventions datasets store, against exact answers."""

import numpy as np

from geometry.poses import pose_from_rows, relative_pose, relative_pose_of_camera_to_world


def rigid(angle_deg: float, axis: int, translation) -> np.ndarray:
    """A (4, 4) rotation by `angle_deg` about coordinate axis `axis`, then a translation."""
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    i, j = [k for k in range(3) if k != axis]
    T = np.eye(4)
    T[i, i], T[i, j], T[j, i], T[j, j] = c, -s, s, c
    T[:3, 3] = translation
    return T


def test_relative_pose_maps_camera0_points_to_camera1():
    w2c0, w2c1 = rigid(30, 1, [1.0, 0.0, 2.0]), rigid(-45, 2, [0.0, -1.0, 0.5])
    world = np.array([0.3, -0.2, 4.0, 1.0])
    T_0to1 = relative_pose(w2c0, w2c1)
    assert np.allclose(T_0to1 @ (w2c0 @ world), w2c1 @ world, atol=1e-12)
    assert np.allclose(relative_pose(w2c0, w2c0), np.eye(4), atol=1e-12)


def test_camera_to_world_poses_give_the_same_relative_pose():
    w2c0, w2c1 = rigid(10, 0, [0.5, 0.5, 0.0]), rigid(90, 1, [0.0, 0.0, 1.0])
    expected = relative_pose(w2c0, w2c1)
    assert np.allclose(relative_pose_of_camera_to_world(np.linalg.inv(w2c0), np.linalg.inv(w2c1)), expected,
                       atol=1e-12)


def test_pose_from_rows_is_the_top_of_a_rigid_transform():
    T = rigid(90, 2, [1.0, 2.0, 3.0])
    assert np.array_equal(pose_from_rows(T[:3].reshape(12).tolist()), T)
