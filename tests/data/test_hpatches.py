"""HPatches sequences: a tiny release written with known homographies reads back exactly; bad files are named."""

import os
from pathlib import Path

import numpy as np
import pytest

from data.hpatches import D2NET_EXCLUDED, HPatchesConfig, hpatches_pairs, read_homography
from geometry.warp import warp_image
from tests.hpatches_helpers import SEQUENCES, SIZE, write_sequence


@pytest.fixture
def release(tmp_path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    root = tmp_path / "hpatches-sequences-release"
    truth = {name: write_sequence(root, name, seed) for seed, name in enumerate(SEQUENCES)}
    (root / "README.txt").write_text("not a sequence")
    (root / "notes").mkdir()  # a folder that is not a sequence is ignored
    return root, truth


def test_pairs_carry_the_written_homographies(release):
    root, truth = release
    pairs = list(hpatches_pairs(HPatchesConfig(root=str(root))))
    assert [p.name for p in pairs] == [f"{s}/1-{k}" for s in sorted(SEQUENCES) for k in range(2, 7)]
    for pair in pairs:
        sequence, k = pair.name.split("/1-")
        H = truth[sequence][int(k) - 2]
        np.testing.assert_allclose(pair.H_0to1, H, rtol=1e-12, atol=1e-15)
        assert pair.group == ("illumination" if sequence.startswith("i_") else "viewpoint")
        assert pair.image0.dtype == np.uint8 and pair.image0.shape == (SIZE[1], SIZE[0])
        # H maps image-1 pixels to image-k pixels: warping image 1 by it gives image k (PPM is lossless)
        np.testing.assert_array_equal(pair.image1, warp_image(pair.image0, pair.H_0to1))
        pair.validate()


def test_splits_and_exclusions(release):
    root, _ = release
    def names(**options) -> list[str]:
        return sorted({p.name.split("/")[0] for p in hpatches_pairs(HPatchesConfig(str(root), **options))})

    assert names(split="illumination") == ["i_ajuntament", "i_dc"]
    assert names(split="viewpoint") == ["v_bird", "v_talent"]
    assert names(exclude=D2NET_EXCLUDED) == ["i_ajuntament", "v_bird"]
    assert names(split="viewpoint", exclude=("v_bird",)) == ["v_talent"]


def test_config_errors_name_the_key(tmp_path, release):
    with pytest.raises(FileNotFoundError, match="set `root`"):
        next(hpatches_pairs(HPatchesConfig(root=str(tmp_path / "nowhere"))))
    root, _ = release
    with pytest.raises(ValueError, match="split 'outdoor'"):
        next(hpatches_pairs(HPatchesConfig(root=str(root), split="outdoor")))
    with pytest.raises(ValueError, match="exclude"):  # two names in one string: a typo that would exclude nothing
        next(hpatches_pairs(HPatchesConfig(root=str(root), exclude=("i_dc i_pencils",))))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no HPatches sequence folders"):
        next(hpatches_pairs(HPatchesConfig(root=str(tmp_path / "empty"))))


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "4.ppm").unlink(), "4.ppm"),
    (lambda folder: (folder / "H_1_3").unlink(), "H_1_3"),
    (lambda folder: (folder / "H_1_3").write_text("1 0 0\n0 one 0\n0 0 1\n"), "H_1_3"),
    (lambda folder: (folder / "H_1_3").write_text("1 0 0\n0 1 0\n"), "H_1_3"),
    (lambda folder: (folder / "H_1_3").write_text("1 2 3\n2 4 6\n0 0 1\n"), "H_1_3 is singular"),
    (lambda folder: (folder / "H_1_3").write_text("1 0 0\n0 nan 0\n0 0 1\n"), "H_1_3"),
    (lambda folder: os.truncate(folder / "H_1_3", 1 << 30), "H_1_3 is larger than"),  # read no further
    (lambda folder: ((folder / "H_1_3").unlink(), os.mkfifo(folder / "H_1_3")), "H_1_3 is not a regular file"),
])
def test_bad_sequence_files_are_named(release, damage, message):
    root, _ = release
    damage(root / "v_bird")
    with pytest.raises((FileNotFoundError, ValueError), match=f"v_bird/{message}"):
        list(hpatches_pairs(HPatchesConfig(root=str(root))))


def test_read_homography_keeps_the_values(tmp_path):
    H = np.array([[0.9, 0.1, 3.0], [-0.05, 1.1, -7.5], [1e-4, -2e-4, 1.0]])
    np.savetxt(tmp_path / "H", H)
    np.testing.assert_array_equal(read_homography(tmp_path / "H"), H)
