"""Relative poses between two cameras, from the absolute poses the datasets store."""

import numpy as np


def relative_pose(world_to_camera0: np.ndarray, world_to_camera1: np.ndarray) -> np.ndarray:
    """T_0to1 (4, 4), camera-0 coordinates -> camera-1 coordinates, from two (4, 4) world-to-camera poses (as
    MegaDepth's scene-info files, COLMAP and the synthetic world store them)."""
    return world_to_camera1 @ np.linalg.inv(world_to_camera0)


def relative_pose_of_camera_to_world(camera_to_world0: np.ndarray, camera_to_world1: np.ndarray) -> np.ndarray:
    """T_0to1 (4, 4) from two (4, 4) camera-to-world poses (as ScanNet's pose/*.txt files store them)."""
    return np.linalg.inv(camera_to_world1) @ camera_to_world0


def pose_from_rows(rows) -> np.ndarray:
    """The (4, 4) rigid transform whose top 3x4 block is `rows` (12 numbers, row by row: ScanNet's rel_pose)."""
    pose = np.eye(4)
    pose[:3] = np.asarray(rows, np.float64).reshape(3, 4)
    return pose
