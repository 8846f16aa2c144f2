"""The photo formats (data/io.py IMAGE_SUFFIXES): every one is decoded by OpenCV and found by both readers of
photo folders: homography pairs all of them, the in-house preparation all that structure from motion reads."""

import cv2

from data.homography import HomographyConfig, HomographyPairs
from data.inhouse.prepare import SFM_IMAGE_SUFFIXES, find_images
from data.io import IMAGE_SUFFIXES
from data.synthetic.texture import make_texture
from utils.images import read_grayscale


def test_every_image_suffix_is_read_and_found_by_both_folder_readers(tmp_path):
    image = make_texture(48, 64, seed=0)
    for suffix in IMAGE_SUFFIXES:
        path = tmp_path / f"photo{suffix}"
        colour = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # .ppm holds colour only
        assert cv2.imwrite(str(path), colour if suffix == ".ppm" else image), suffix
        assert read_grayscale(path).shape == image.shape, suffix
    (tmp_path / "notes.txt").write_text("not a photo")
    names = {f"photo{suffix}" for suffix in IMAGE_SUFFIXES}
    assert set(find_images(tmp_path)) == names - {"photo.webp"}  # pycolmap cannot decode WebP
    assert set(SFM_IMAGE_SUFFIXES) == set(IMAGE_SUFFIXES) - {".webp"}
    assert {path.name for path in HomographyPairs(HomographyConfig(root=str(tmp_path))).images} == names
