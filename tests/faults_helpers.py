"""The fault tests' shared inputs and commands: a short train.py run of a recipe on a generated world, an
evaluate.py command, the validation files a world holds, a photo folder, an earlier run's folder."""

import pickle
from pathlib import Path

import numpy as np

from data.synthetic.texture import make_texture
from tests.helpers import run_here
from tests.match_helpers import write_image
from tests.recipe_helpers import RECIPES, TRAIN_OVERRIDES
from tests.train_helpers import ROOT


def earlier_run(folder: Path) -> Path:
    """A run folder as train.py leaves it: checkpoints, logs and Hydra's record of the config."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"the earlier run's weights")
    (folder / "checkpoints" / "best.ckpt").write_bytes(b"the earlier run's best weights")
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / "summary.json").write_text("{}")
    return folder


MEGADEPTH_VAL = Path("index/scene_info_val_1500/0001_0.1_0.7.npz")  # the generated world's validation scene


def train(run_dir: Path, experiment: str, data_root: Path, *overrides: str):
    return run_here([str(ROOT / "train.py"), f"experiment={experiment}", f"data.root={data_root}",
                     *TRAIN_OVERRIDES, *RECIPES[experiment], *overrides, f"hydra.run.dir={run_dir}"], run_dir.parent)


def first_val_files(worlds) -> dict[str, Path]:
    """The image and depth files of the first validation pair of each world."""
    info = pickle.loads((worlds["megadepth"] / MEGADEPTH_VAL).read_bytes())
    (i0, _), *_ = info["pair_infos"][0]
    scannet = worlds["scannet"] / "test" / "scene0001_00"
    frame = int(np.load(worlds["scannet"] / "index" / "scannet_test_1500" / "test.npz")["name"][0][2])
    return {"megadepth image": Path(info["image_paths"][i0]), "megadepth depth": Path(info["depth_paths"][i0]),
            "scannet image": scannet.relative_to(worlds["scannet"] / "test") / "color" / f"{frame}.jpg",
            "scannet depth": scannet.relative_to(worlds["scannet"] / "test") / "depth" / f"{frame}.png"}


FAST = ["--random-weights", "--resize", "0", "--coarse-threshold", "0", "--device", "cpu"]


def files_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def write_photo_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    write_image(folder / "one.png", make_texture(120, 160, seed=4))
    return folder


def evaluate_command(root: Path, out_dir: Path, *overrides: str) -> list[str]:
    """evaluate.py on the homographies benchmark of `root` (one 160x120 photo: one pair), with SIFT."""
    return [EVALUATE, "benchmark=homographies", f"benchmark.root={root}", "benchmark.image_size=[160,120]",
            "benchmark.resize.longer_side=160", "matcher=sift", "plot_pairs=0", f"out_dir={out_dir}", *overrides]


EVALUATE = str(ROOT / "evaluate.py")
