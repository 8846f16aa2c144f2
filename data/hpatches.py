"""HPatches sequences (Balntas et al., CVPR 2017) as evaluation pairs with exact homographies.

The release `hpatches-sequences-release/` holds one folder per sequence: `i_*` (illumination changes, the
homographies are close to identity) and `v_*` (viewpoint changes). Each has images `1.ppm` .. `6.ppm` and
text files `H_1_2` .. `H_1_6`: 3x3 homographies mapping image-1 pixels to image-k pixels. The pairs are
(1, k) for k = 2..6, five per sequence, as in LoFTR's evaluation (LoFTR sec. 4.1).

Excluded sequences: D2-Net (Dusmanu et al., CVPR 2019) left out the eight sequences whose images exceed
1600x1200 pixels, and LoFTR, Patch2Pix and most later matchers report on the remaining 108 (52 illumination,
56 viewpoint). `HPatchesConfig` excludes none by default so that the reader shows the data as it is on disk;
pass `exclude=D2NET_EXCLUDED` for the published protocol (the `hpatches` benchmark does).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.images import read_grayscale

from .pairs import EvalPair
from .untrusted import read_small_numbers

NUM_IMAGES = 6  # every sequence: a reference image 1 and five targets
SPLITS = {"illumination": "i_", "viewpoint": "v_"}  # split -> sequence folder prefix
# nine numbers in text take under 1 kB: a homography file 64 times that size is not one
MAX_HOMOGRAPHY_BYTES = 64 * 1024
# Sequences with images larger than 1600x1200, dropped by D2-Net and the matchers that follow its protocol.
D2NET_EXCLUDED = ("i_contruction", "i_crownnight", "i_dc", "i_pencils", "i_whitebuilding",
                  "v_artisans", "v_astronautis", "v_talent")


@dataclass
class HPatchesConfig:
    root: str  # hpatches-sequences-release/: the folder holding the i_* and v_* sequence folders
    split: str = "all"  # "all", "illumination" (i_*) or "viewpoint" (v_*)
    exclude: tuple[str, ...] = ()  # sequence folder names to leave out; D2NET_EXCLUDED gives LoFTR's 108


def read_homography(path: Path) -> np.ndarray:
    """(3, 3) float64 homography from a whitespace-separated text file; an error naming the file when it is
    missing, not nine finite numbers, or singular."""
    if not path.exists():
        raise FileNotFoundError(f"homography file not found: {path}")
    try:
        H = read_small_numbers(path, MAX_HOMOGRAPHY_BYTES)
    except ValueError as error:
        raise ValueError(f"cannot read a 3x3 homography from {path}: {error}") from None
    if H.size != 9 or not np.isfinite(H).all():
        raise ValueError(f"homography file {path} must hold 9 finite numbers (3 rows of 3), got shape {H.shape}")
    H = H.reshape(3, 3)
    # singular: the smallest singular value is negligible next to the largest (scale-free test)
    singular_values = np.linalg.svd(H, compute_uv=False)
    if singular_values[-1] <= 1e-12 * singular_values[0]:
        raise ValueError(f"homography in {path} is singular (singular values {singular_values})")
    return H


def split_of(sequence: str) -> str | None:
    """'illumination' or 'viewpoint' for a sequence folder name, None for any other folder."""
    return next((split for split, prefix in SPLITS.items() if sequence.startswith(prefix)), None)


def check_config(config: HPatchesConfig) -> None:
    """ValueError / FileNotFoundError naming the config key that is wrong."""
    if config.split not in ("all", *SPLITS):
        raise ValueError(f"HPatches split {config.split!r}: choose 'all', 'illumination' or 'viewpoint'")
    bad = [name for name in config.exclude if split_of(name) is None or any(c.isspace() for c in name)]
    if bad:
        raise ValueError(f"HPatches `exclude` entries {bad} are not sequence names (i_* or v_*, one per entry)")
    if not Path(config.root).is_dir():
        raise FileNotFoundError(f"HPatches root {config.root} does not exist: set `root` to the "
                                f"hpatches-sequences-release folder (holding i_* and v_* sequences)")


def hpatches_sequences(config: HPatchesConfig) -> list[Path]:
    """The sequence folders of the chosen split, sorted by name, without the excluded ones."""
    check_config(config)
    root = Path(config.root)
    sequences = [path for path in sorted(root.iterdir()) if path.is_dir() and split_of(path.name) is not None]
    if not sequences:
        raise ValueError(f"no HPatches sequence folders (i_* or v_*) under {root}: set `root` to "
                         f"hpatches-sequences-release")
    excluded = set(config.exclude)
    return [path for path in sequences
            if path.name not in excluded and config.split in ("all", split_of(path.name))]


def hpatches_pairs(config: HPatchesConfig) -> Iterator[EvalPair]:
    """EvalPairs (1, k), k = 2..6, of every chosen sequence: original-size uint8 grayscale images and
    H_0to1 (3, 3) mapping image-1 pixels to image-k pixels; group 'illumination' or 'viewpoint'."""
    for sequence in hpatches_sequences(config):
        reference = read_grayscale(sequence / "1.ppm")
        for k in range(2, NUM_IMAGES + 1):
            H = read_homography(sequence / f"H_1_{k}")
            image = read_grayscale(sequence / f"{k}.ppm")
            yield EvalPair(name=f"{sequence.name}/1-{k}", image0=reference.copy(), image1=image, H_0to1=H,
                           group=split_of(sequence.name))
