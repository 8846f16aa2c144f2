"""Scenes with a known answer for the ground-truth, loss and model tests: a plane seen by two cameras, the
MegaDepth sample pair, sparse labels of a homography; and `fit`, a few optimiser steps of a loss on one batch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from geometry.warp import warp_homography

FOCAL, Z = 100.0, 5.0


def plane_batch(height, width, T, principal=None, dtype=torch.float64) -> dict:
    cx, cy = principal if principal is not None else ((width - 1) / 2, (height - 1) / 2)
    K = torch.tensor([[[FOCAL, 0, cx], [0, FOCAL, cy], [0, 0, 1]]], dtype=dtype)
    depth = torch.full((1, height, width), Z, dtype=dtype)
    return {
        "image0": torch.zeros(1, 1, height, width, dtype=dtype),
        "image1": torch.zeros(1, 1, height, width, dtype=dtype),
        "depth0": depth,
        "depth1": depth.clone(),
        "K0": K,
        "K1": K.clone(),
        "T_0to1": T[None].to(dtype),
    }


def translation(tx, ty, tz=0.0):
    T = torch.eye(4, dtype=torch.float64)
    T[:3, 3] = torch.tensor([tx, ty, tz])
    return T


def megadepth_pair():
    h5py = pytest.importorskip("h5py")
    if not (SAMPLE / "sample.npz").is_file():
        pytest.skip("the real MegaDepth sample (../shared/data/megadepth_sample) is not here")
    info = dict(np.load(SAMPLE / "sample.npz", allow_pickle=True))
    i0, i1 = info["pair_infos"][0][0]
    depth = [torch.from_numpy(h5py.File(SAMPLE / info["depth_paths"][i], "r")["depth"][()])[None].double()
             for i in (i0, i1)]
    K0, K1 = (torch.from_numpy(info["intrinsics"][i])[None].double() for i in (i0, i1))
    pose0, pose1 = (torch.from_numpy(info["poses"][i]).double() for i in (i0, i1))  # world -> camera
    T_0to1 = (pose1 @ torch.linalg.inv(pose0))[None]
    return depth, K0, K1, T_0to1


GRID = (15, 20)  # 120 x 160 network pixels, stride 8


def labelled_batch(H: torch.Tensor, count: int = 600, seed: int = 0) -> dict:
    """Random points of a 160x120 image 0 and their exact images under H, with H itself (dense truth)."""
    generator = torch.Generator().manual_seed(seed)
    points0 = torch.rand(1, count, 2, generator=generator, dtype=torch.float64) * torch.tensor([159.0, 119.0])
    return {"image0": torch.zeros(1, 1, 120, 160, dtype=torch.float64),
            "image1": torch.zeros(1, 1, 120, 160, dtype=torch.float64), "H_0to1": H,
            "correspondences0": points0, "correspondences1": warp_homography(points0, H),
            "correspondences_valid": torch.ones(1, count, dtype=torch.bool)}


def fit(model, loss, batch: dict, supervision, steps: int, lr: float = 3e-3) -> list:
    """`steps` AdamW steps of `model` on one batch against its ground truth (which pads the fine level too);
    the LossParts of each step."""
    ground_truth = (supervision.batch_index, supervision.index0, supervision.index1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        parts = loss(model(batch, ground_truth=ground_truth), supervision)
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
        history.append(parts)
    return history


SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "megadepth_sample"
