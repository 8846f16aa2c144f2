"""Every command of README.md and of the docs/ pages (and docker-compose.yml's example) run as a user runs it.

The commands are read from README.md and docs/*.md themselves, so a command changed there is tested as changed;
so is README's Python example, run verbatim after the main job. Each runs in a
subprocess from a user's working folder; only the data folders are swapped for generated worlds written in the
datasets' real layouts (`python -m data.synthetic --layout megadepth|scannet`: LoFTR's data/megadepth and
data/scannet trees), and a few overrides make it seconds long (a tiny model, the CPU, two steps, 160 px).
Every experiment of configs/experiment/ must have its run here. The worlds are made once for the module."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data.megadepth import load_scene_info
from data.synthetic.__main__ import main as generate_world
from data.synthetic.texture import make_texture
from data.synthetic.world import WorldConfig, render_scene
from evaluation.benchmarks import build_benchmark
from evaluation.metrics import mean_average_accuracy, multiview_pose_errors
from geometry.affine import tilt_view
from geometry.warp import warp_image
from lightning_modules.config import TrainingConfig
from lightning_modules.loftr_module import LoFTRModule
from models.eloftr import EfficientLoFTR
from models.loftr import LoFTR
from sfm.colmap import camera_of_photo, write_database
from sfm.reconstruct import reconstruct, registered_poses
from tests.helpers import WARP, run_here, tiny_model_config
from tests.hpatches_helpers import SEQUENCES, write_sequence
from tests.match_helpers import share_on_the_warp, write_image
from tests.recipe_helpers import RECIPES, TRAIN_OVERRIDES
from tests.sfm_helpers import read_hloc

pytestmark = pytest.mark.recipe
ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# README and every docs page, by path: the documents whose commands are run here
DOCUMENTS = {"README.md": README} | {
    f"docs/{path.name}": path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))
}

# README's placeholders -> where the generated worlds play them (relative: -> the user's working folder)
MEGADEPTH, SCANNET = "/path/to/LoFTR/data/megadepth", "/path/to/LoFTR/data/scannet"
ASSETS = "/path/to/LoFTR/assets"
EVALUATE_OVERRIDES = ["max_pairs=2", "plot_pairs=1"]


def readme_commands(script: str, text: str | None = None) -> list[list[str]]:
    """The commands of `text`'s code blocks (by default README's and every docs page's) that run `script` with
    python, as argument lists (continuation lines joined, comments and the `python` itself dropped); a command
    written in two documents counts once."""
    if text is None:
        unique = []
        for document in DOCUMENTS.values():
            unique += [words for words in readme_commands(script, document) if words not in unique]
        return unique
    commands = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if not re.match(r"\s*\S*python3? ", part):  # not a command (prose, a layout, torchrun)
                    continue
                words = shlex.split(part, comments=True)
                if len(words) > 1 and words[0].endswith("python") and words[1] == script:
                    commands.append(words[2:])
    return commands


def experiment_of(words: list[str]) -> str:
    named = [w.split("=", 1)[1] for w in words if w.startswith("experiment=")]
    return named[0] if named else "synthetic"


def many_pairs(words: list[str]) -> bool:
    """match.py's batch forms: a pairs file or a folder of images, into one HDF5 file."""
    return "--pairs" in words or "--images" in words


PAPER_RECIPES = ["loftr_megadepth", "loftr_ot_megadepth", "se2_loftr_megadepth", "eloftr_megadepth", "loftr_scannet",
                 "loftr_quadtree_megadepth", "loftr_quadtree_scannet"]
# Which train.py command of README and docs/ each test runs; every one must be exactly one of these, or below
TRAINING_RUNS = {
    "main job": lambda w: w == [],
    "paper recipe": lambda w: experiment_of(w) in PAPER_RECIPES,
    "se2 synthetic": lambda w: experiment_of(w) == "se2_synthetic",
    "affine synthetic": lambda w: experiment_of(w) == "affine_synthetic",
    "loftr synthetic": lambda w: w == ["experiment=loftr_synthetic"],
    "C4 backbone": lambda w: "model.backbone.group_order=4" in w,
    "quadtree layer": lambda w: "model.coarse.block=quadtree" in w,
    "sweep": lambda w: w[:1] == ["-m"] and not any(word.startswith("hydra/launcher=") for word in w),
    "in-house": lambda w: experiment_of(w) == "finetune_inhouse",
}
# Which evaluate.py and match.py command of README and docs/ each test runs: every one must be exactly one of these
EVALUATION_RUNS = {
    "LoFTR test sets": lambda w: any(f"benchmark={name}" in w for name in ("megadepth1500", "scannet1500")),
    "classical on the world": lambda w: "benchmark=synthetic" in w and not any(
        word == "matcher=loftr" or word.startswith("matcher=[") for word in w),
    "several matchers": lambda w: any(word.startswith("matcher=[") for word in w),
    "in-house": lambda w: "benchmark.root=data/site_test" in w,
    "hpatches": lambda w: "benchmark=hpatches" in w,
    "affine simulation": lambda w: "affine=simulated" in w,
    "multiview": lambda w: "benchmark=multiview" in w and "benchmark.root=data/site_test" not in w,
}
MATCH_RUNS = {
    "main job's demo": lambda w: "outputs/train/synthetic/latest/checkpoints/last.ckpt" in w and not many_pairs(w),
    "official checkpoint": lambda w: "weights/outdoor_ds.ckpt" in w,
    "another matcher": lambda w: "--matcher" in w and not many_pairs(w) and "--affine-simulation" not in w,
    "affine simulation": lambda w: "--affine-simulation" in w,
    "a pairs file": lambda w: "--pairs" in w,
    "a folder of images": lambda w: "--images" in w and "--colmap" not in w,
    "reconstruction exports": lambda w: "--colmap" in w,
}
NOT_RUN_HERE = {  # README commands that need what this machine lacks, and the test that runs their substance
    "hydra/launcher=submitit_slurm": "a SLURM cluster; tests/test_launcher.py runs a sweep through submitit_local",
}


def readme_training(run: str, text: str | None = None) -> list[list[str]]:
    """The train.py commands of README and docs/ that the test `run` (a key of TRAINING_RUNS) runs."""
    return [words for words in readme_commands("train.py", text) if TRAINING_RUNS[run](words)]


def substituted(words: list[str], places: dict[str, str]) -> list[str]:
    out = []
    for word in words:
        for placeholder in sorted(places, key=len, reverse=True):
            word = word.replace(placeholder, places[placeholder])
        out.append(word)
    return out


def run(home: Path, *args: str, own_process: bool = False) -> subprocess.CompletedProcess:
    """`python ARGS` from the user's folder `home`; the scripts are the repository's. In this process (see
    tests.helpers.run_here) unless `own_process`: README's first command runs in a process of its own."""
    script, *rest = args
    target = [str(ROOT / script)] if script.endswith(".py") else [script]
    if own_process:
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}  # for `python -m data...` from another folder
        result = subprocess.run([sys.executable, *target, *rest], cwd=home, capture_output=True, text=True,
                                timeout=600, env=environment)
    else:
        result = run_here([*target, *rest], home)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A user's working folder: photos of a site (other views of the same room held out), the rest made by
    the commands themselves (data/world, outputs/, data/site, ...)."""
    home = tmp_path_factory.mktemp("user")
    scene = render_scene(WorldConfig(num_scenes=1, cameras_per_scene=30, image_size=(320, 240),
                                     focal_range=(1.0, 1.0), seed=3), 0)
    for folder, views in (("site", range(10)), ("site_test", range(10, 30))):
        (home / "photos" / folder).mkdir(parents=True)
        for k in views:
            cv2.imwrite(str(home / "photos" / folder / f"{k:02d}.png"), scene.images[k])
    return home


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    worlds = tmp_path_factory.mktemp("datasets")
    megadepth, scannet = worlds / "megadepth", worlds / "scannet"
    assert generate_world(["--out", str(megadepth), "--layout", "megadepth", "--scenes", "4", "--cameras", "6",
                           "--size", "160x120"]) == 0
    assert generate_world(["--out", str(scannet), "--layout", "scannet", "--scenes", "3", "--cameras", "8",
                           "--size", "160x120"]) == 0
    return {MEGADEPTH: str(megadepth), SCANNET: str(scannet),
            f"{ASSETS}/megadepth_test_1500_scene_info": str(megadepth / "index" / "megadepth_test_1500_scene_info"),
            f"{ASSETS}/scannet_test_1500": str(scannet / "index" / "scannet_test_1500"),
            "/data/megadepth": str(megadepth)}  # docker-compose's DATA_DIR mount


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def reloaded_matches(run_dir: Path, image: Path):
    """The run's last checkpoint loaded as evaluate.py and match.py load it, matching an image with itself:
    (the number of matches, the matcher)."""
    from models.matcher import LoFTRMatcher

    matcher = LoFTRMatcher.from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    gray = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    return len(matcher.match(gray, gray)), matcher


@pytest.fixture(scope="module")
def main_job(home) -> subprocess.CompletedProcess:
    """README's first set-up command, `python train.py`: the world generated in data/world, then trained."""
    [words] = readme_training("main job")  # the bare `train.py` of the set-up command
    # long enough (120 steps) for the printed match.py command to find matches at the official threshold
    return run(home, "train.py", *words, *TRAIN_OVERRIDES, *RECIPES["synthetic"], "trainer.max_steps=120",
               "data.samples_per_scene=30", own_process=True)


def test_main_job_trains_evaluates_links_latest_and_prints_a_match_command(home, main_job):
    latest = home / "outputs" / "train" / "synthetic" / "latest"
    assert latest.is_symlink() and (latest / "summary.json").is_file()
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["global_step"] == 120 and set(summary["final_evaluation"]) == {"eloftr (trained)", "sift", "xfeat"}
    assert all(name in main_job.stdout for name in ("eloftr (trained)", "sift", "xfeat"))
    command = main_job.stdout.split("match two held-out images with the trained model:\n")[1].splitlines()[0]
    words = shlex.split(command)
    assert words[:2] == ["python", "match.py"] and "outputs/train/synthetic/latest/checkpoints/last.ckpt" in words
    # README's demo is the same command (with the default world's images)
    [demo] = [w for w in readme_commands("match.py") if MATCH_RUNS["main job's demo"](w)]
    assert [w for w in demo if not w.endswith(".jpg")] == [w for w in words[2:] if not w.endswith(".jpg")]
    matched = run(home, *words[1:])
    found = int(re.search(r"(\d+) matches", matched.stdout).group(1))
    assert found > 0 and (home / "outputs" / "demo" / "matches.png").is_file()


@pytest.mark.parametrize("experiment", PAPER_RECIPES)
def test_paper_recipe_trains_on_the_real_layout_and_reloads(home, places, tmp_path, experiment):
    [words] = [w for w in readme_training("paper recipe") if experiment_of(w) == experiment]
    run_dir = tmp_path / "run"
    run(
        home,
        "train.py",
        *substituted(words, places),
        *TRAIN_OVERRIDES,
        *RECIPES[experiment],
        f"hydra.run.dir={run_dir}",
    )
    assert last_checkpoint(run_dir)["global_step"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "val/auc@20" in summary["validation"]
    image = next(Path(places[SCANNET if "scannet" in experiment else MEGADEPTH]).glob("train/**/*.jpg"))
    _, matcher = reloaded_matches(run_dir, image)
    config = matcher.model.config
    assert config.coarse.d_model == 64  # the tiny model the overrides asked for
    assert config.match_coarse.match_type == ("sinkhorn" if experiment == "loftr_ot_megadepth" else "dual_softmax")
    if experiment.startswith("eloftr"):
        assert isinstance(matcher.model, EfficientLoFTR) and config.match_coarse.train_coarse_percent == 0.3
    else:
        assert config.backbone.type == ("se2_resnet_fpn" if experiment.startswith("se2") else "resnet_fpn")
    if "quadtree" in experiment:  # the recipe's QuadTree-B layers, reloaded from our checkpoint
        assert config.coarse.block == "quadtree" and config.coarse.quadtree.kind == "B"
        assert config.coarse.quadtree.topks == ((16, 8, 8) if "megadepth" in experiment else (32, 16, 16))


def test_synthetic_variants_and_the_sweep_run_and_collect(home, main_job):
    """README's other commands on the synthetic world: the tiny LoFTR and SE2-LoFTR runs, LoFTR with a C4
    backbone, a sweep over the attentions with its table, and the QuadTree-LoFTR layer."""
    image = next((home / "data" / "world").glob("*/images/*.jpg"))
    [se2] = readme_training("se2 synthetic")
    run(home, "train.py", *se2, *TRAIN_OVERRIDES, *RECIPES["se2_synthetic"])
    _, matcher = reloaded_matches(home / "outputs" / "train" / "se2_synthetic" / "latest", image)
    assert matcher.model.config.backbone.group_order == 8
    [loftr] = readme_training("loftr synthetic")
    run(home, "train.py", *loftr, *TRAIN_OVERRIDES, *RECIPES["loftr_synthetic"])
    latest = home / "outputs" / "train" / "loftr_synthetic" / "latest"
    _, matcher = reloaded_matches(latest, image)
    assert isinstance(matcher.model, LoFTR) and matcher.model.config.backbone.type == "resnet_fpn"
    assert {"loftr (trained)", "sift"} <= set(json.loads((latest / "summary.json").read_text())["final_evaluation"])
    [c4] = readme_training("C4 backbone")
    run(home, "train.py", *c4, *TRAIN_OVERRIDES, *RECIPES["synthetic"], "hydra.run.dir=outputs/c4")
    assert (
        last_checkpoint(home / "outputs" / "c4")["hyper_parameters"]["training"]["model"]["backbone"]["group_order"]
        == 4
    )
    [sweep] = readme_training("sweep")
    run(home, "train.py", *sweep, *TRAIN_OVERRIDES, *RECIPES["synthetic"])
    [folder] = list((home / "outputs" / "train" / "multirun").iterdir())
    [collect] = readme_commands("scripts/collect_runs.py")
    table = run(
        home, "scripts/collect_runs.py", *[w.replace("outputs/train/multirun/TIME", str(folder)) for w in collect]
    )
    assert all(f"model.coarse.attention={name}" in table.stdout for name in ("linear", "full", "quadtree"))
    [quadtree] = readme_training("quadtree layer")
    run(home, "train.py", *quadtree, *TRAIN_OVERRIDES, *RECIPES["synthetic"], "hydra.run.dir=outputs/quadtree")
    _, matcher = reloaded_matches(home / "outputs" / "quadtree", image)
    assert matcher.model.config.coarse.block == "quadtree"


def test_the_tilt_robust_job_trains_on_tilted_pairs(home, main_job):
    """docs/training.md's tilt-robust run: the main job with image 1 of half the pairs tilted (data/tilt.py)."""
    [affine] = readme_training("affine synthetic")
    run(home, "train.py", *affine, *TRAIN_OVERRIDES, *RECIPES["affine_synthetic"])
    latest = home / "outputs" / "train" / "affine_synthetic" / "latest"
    summary = json.loads((latest / "summary.json").read_text())
    assert summary["global_step"] == 2 and "eloftr (trained)" in summary["final_evaluation"]
    assert "probability: 0.5" in (latest / ".hydra" / "config.yaml").read_text()


def test_docker_compose_example_trains_on_the_mounted_tree(places, tmp_path):
    header = re.sub(r"\\\n#\s*", " ", (ROOT / "docker-compose.yml").read_text())
    [example] = [
        line.split("run --rm train", 1)[1]
        for line in header.splitlines()
        if "run --rm train experiment=loftr_megadepth" in line
    ]
    words = substituted(shlex.split(example.split("#")[0]), places)
    run_dir = tmp_path / "run"
    run(
        tmp_path,
        "train.py",
        *words,
        *TRAIN_OVERRIDES,
        *RECIPES["loftr_megadepth"],
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        f"hydra.run.dir={run_dir}",
    )
    assert last_checkpoint(run_dir)["global_step"] == 2


def test_evaluation_commands_score_the_real_layouts(home, places, main_job, tmp_path):
    """README's evaluate.py commands for the two LoFTR test sets, with a checkpoint of ours as the weights."""
    weights = home / "weights"
    weights.mkdir(exist_ok=True)
    trained = (home / "outputs" / "train" / "synthetic" / "latest" / "checkpoints" / "last.ckpt").read_bytes()
    for name in ("outdoor_ds.ckpt", "indoor_ds_new.ckpt"):
        (weights / name).write_bytes(trained)
    for benchmark in ("megadepth1500", "scannet1500"):
        [words] = [
            w
            for w in readme_commands("evaluate.py")
            if EVALUATION_RUNS["LoFTR test sets"](w) and f"benchmark={benchmark}" in w
        ]
        out = tmp_path / benchmark
        # the world's K describes its 160x120 frames, not LoFTR's 640x480 (README: benchmark.intrinsics_size)
        frames = ["benchmark.intrinsics_size=[160,120]"] if benchmark == "scannet1500" else []
        run(home, "evaluate.py", *substituted(words, places), *frames, *EVALUATE_OVERRIDES, f"out_dir={out}")
        assert json.loads((out / "summary.json").read_text())["overall"]["pairs"] == 2
    synthetic = [w for w in readme_commands("evaluate.py") if EVALUATION_RUNS["classical on the world"](w)]
    assert len(synthetic) == 2  # SIFT, and ASIFT under rotation (on data/world, the default root)
    for index, words in enumerate(synthetic):
        run(
            home,
            "evaluate.py",
            *words,
            "benchmark.resize.longer_side=160",
            *EVALUATE_OVERRIDES,
            "max_pairs=1",
            f"out_dir={tmp_path / str(index)}",
        )
        assert (tmp_path / str(index) / "summary.json").is_file()
    [several] = [w for w in readme_commands("evaluate.py") if EVALUATION_RUNS["several matchers"](w)]
    out = tmp_path / "several"
    run(home, "evaluate.py", *several, "benchmark.resize.longer_side=160", *EVALUATE_OVERRIDES, f"out_dir={out}")
    names = [word for word in several if word.startswith("matcher=")][0][len("matcher=["):-1].split(",")
    assert all((out / name / "summary.json").is_file() for name in names) and (out / "matches" / "001.png").is_file()
    multiview = [w for w in readme_commands("evaluate.py") if EVALUATION_RUNS["multiview"](w)]
    assert len(multiview) == 4  # SIFT and the main job's model on the world, checkpoints on the two LoFTR layouts
    for index, words in enumerate(multiview):
        # the worlds' test scenes have 6 or 8 cameras of 160x120: bags of 3, one a scene
        words = [w for w in substituted(words, places) if not w.startswith("benchmark.bag_sizes=")]
        small = [] if any(w.startswith("benchmark.resize") for w in words) else ["benchmark.resize.longer_side=160"]
        if any(w.startswith("benchmark.index_dir=") for w in words):  # the world's K describes its 160x120 frames
            small.append("benchmark.intrinsics_size=[160,120]")
        out = tmp_path / f"multiview{index}"
        run(home, "evaluate.py", *words, *small, "benchmark.bag_sizes=[3]", "benchmark.bags=1", f"out_dir={out}")
        summary = json.loads((out / "summary.json").read_text())
        bags = csv_rows(out / "bags.csv")
        assert len(bags) == summary["overall"]["bags"] >= 1 and list(summary["groups"]) == ["3 images"]
        assert summary["overall"]["stereo_pairs"] == len({pair for bag in bags for pair in combinations(
            bag["images"].split(), 2)})


def test_inhouse_photos_to_a_fine_tuned_model(home, colmap_scene):
    """docs/inhouse.md, "Train on your own photos", command by command: SfM on the photos and on the held-out photos,
    the starting checkpoint evaluated, fine-tuned, evaluated again; and from an existing COLMAP model, sparse
    and with dense depth (data=inhouse_colmap)."""
    weights = home / "weights"
    weights.mkdir(exist_ok=True)
    # the starting LoFTR, a tiny one (the recipe's overrides ask for it) in the form of our checkpoints
    torch.manual_seed(0)
    module = LoFTRModule(TrainingConfig(model=tiny_model_config()))
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)},
               weights / "outdoor_ds.ckpt")
    colmap_root, *_ = colmap_scene
    (home / "colmap" / "stereo").mkdir(parents=True, exist_ok=True)
    for source, target in (("images", "images"), ("sparse", "sparse"), ("depth_maps", "stereo/depth_maps")):
        if not (home / "colmap" / target).exists():
            (home / "colmap" / target).symlink_to(colmap_root / source, target_is_directory=True)
    section = DOCUMENTS["docs/inhouse.md"]
    for words in readme_commands("-m", section):
        run(home, "-m", *words)
    for name in ("site", "site_test", "site_sparse", "site_dense"):
        assert (home / "data" / name / "scene_info" / "inhouse.npz").is_file(), name
    evaluations, trainings = readme_commands("evaluate.py", section), readme_commands("train.py", section)
    assert len(evaluations) == 4 and len(trainings) == 2
    assert all(EVALUATION_RUNS["in-house"](words) for words in evaluations)
    pairs_before, bags_before, pairs_after, bags_after = evaluations
    one_bag = ["benchmark.bags=1"]  # and bags of 5 photos only: bag_sizes=[5,10] as written, [5] here
    run(home, "evaluate.py", *pairs_before, *EVALUATE_OVERRIDES, "out_dir=outputs/before")
    run(home, "evaluate.py", *fewer_bags(bags_before), *one_bag, "out_dir=outputs/bags_before")
    tiny = [*TRAIN_OVERRIDES, *RECIPES["finetune_inhouse"]]
    run(home, "train.py", *trainings[0], *tiny, "data.train.inhouse.longer_side=320",
        "data.val.inhouse.longer_side=320")
    [finetuned] = list((home / "outputs" / "train" / "finetune_inhouse").glob("20*"))
    assert (finetuned / "checkpoints" / "best.ckpt").is_file()
    for words, out in ((pairs_after, ["out_dir=outputs/after", *EVALUATE_OVERRIDES]),
                       (fewer_bags(bags_after), ["out_dir=outputs/bags_after", *one_bag])):
        run(home, "evaluate.py", *[w.replace("finetune_inhouse/TIME", f"finetune_inhouse/{finetuned.name}")
                                   for w in words], *out)
    for name in ("before", "after"):
        assert json.loads((home / "outputs" / name / "summary.json").read_text())["overall"]["pairs"] == 2
        bags = json.loads((home / "outputs" / f"bags_{name}" / "summary.json").read_text())
        assert bags["overall"]["bags"] == 1 and bags["overall"]["stereo_pairs"] == 10
        assert {"maa", "maa_stereo", "registered"} <= set(bags["overall"]) and list(bags["groups"]) == ["5 images"]
    # SIFT, whose matches made the held-out photos' ground truth, reconstructs the same bags from its own
    sift = [w.replace("matcher=loftr", "matcher=sift") for w in fewer_bags(bags_before) if "checkpoint=" not in w]
    run(home, "evaluate.py", *sift, "benchmark.bags=2", "out_dir=outputs/bags_sift")
    check_multiview_run(home / "outputs" / "bags_sift", home / "data" / "site_test", min_registered=80, min_maa=50)
    run(home, "train.py", *trainings[1], *tiny, "data.train.inhouse_colmap.longer_side=160",
        "hydra.run.dir=outputs/dense")
    assert last_checkpoint(home / "outputs" / "dense")["global_step"] == 2
    tracks = load_scene_info(home / "data" / "site_sparse" / "scene_info" / "inhouse.npz")["correspondences"]
    assert len(tracks) > 0 and all(len(pair) > 0 for pair in tracks)  # the imported model's tracks label pairs


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def fewer_bags(words: list[str]) -> list[str]:
    """A documented multiview command with bags of 5 images only."""
    return [word.replace("benchmark.bag_sizes=[5,10]", "benchmark.bag_sizes=[5]") for word in words]


def check_multiview_run(out: Path, root: Path, min_registered: float, min_maa: float) -> None:
    """A benchmark=multiview run folder: summary.json's numbers are its bags', each bag's mAA is what its own
    largest COLMAP model's cameras give against the ground truth (recomputed here from sparse/), and the
    reconstructions register at least `min_registered` percent of the images with an mAA of `min_maa` or
    more."""
    import pycolmap

    summary = json.loads((out / "summary.json").read_text())
    bags = csv_rows(out / "bags.csv")
    assert len(bags) == summary["overall"]["bags"] and summary["overall"]["failed"] == 0, summary["failed_bags"]
    truth = {view.name: view.pose for scene in build_benchmark("multiview", root=str(root), split_file="scenes.txt")
             .scenes().values() for view in scene}
    for bag in bags:
        names = bag["images"].split()
        sparse = out / "bags" / bag["scene"].replace("/", "_") / f"{bag['size']}-{bag['bag']}" / "sparse"
        models = [pycolmap.Reconstruction(str(folder)) for folder in sparse.iterdir() if folder.is_dir()]
        largest = max(models, key=lambda model: model.num_reg_images())
        errors = multiview_pose_errors(registered_poses(largest), {name: truth[name] for name in names})
        assert float(bag["maa"]) == pytest.approx(mean_average_accuracy([e.max_deg for e in errors.values()]), abs=0.01)
        assert int(bag["registered"]) == largest.num_reg_images()
    assert summary["overall"]["maa"] == pytest.approx(np.mean([float(bag["maa"]) for bag in bags]), abs=0.01)
    assert summary["overall"]["registered"] >= min_registered and summary["overall"]["maa"] >= min_maa, summary


def test_hpatches_and_an_official_checkpoint(tmp_path, official_checkpoint):
    """README's HPatches tilt test (on a tiny release in HPatches' layout) and its match.py command for an
    official checkpoint (random weights under the official names)."""
    for seed, name in enumerate(SEQUENCES):
        write_sequence(tmp_path / "hpatches", name, seed)
    [words] = [w for w in readme_commands("evaluate.py") if EVALUATION_RUNS["hpatches"](w)]
    words = [w.replace("benchmark.root=DIR", f"benchmark.root={tmp_path / 'hpatches'}") for w in words]
    run(tmp_path, "evaluate.py", *words, *EVALUATE_OVERRIDES, "max_pairs=1", "out_dir=outputs/hpatches")
    summary = json.loads((tmp_path / "outputs" / "hpatches" / "summary.json").read_text())
    assert summary["overall"]["pairs"] > 0
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "outdoor_ds.ckpt").symlink_to(official_checkpoint)
    image = make_texture(240, 320, seed=3)
    write_image(tmp_path / "a.jpg", image)
    write_image(tmp_path / "b.jpg", warp_image(image, WARP))
    [words] = [w for w in readme_commands("match.py") if MATCH_RUNS["official checkpoint"](w)]
    matched = run(tmp_path, "match.py", *words)
    assert re.search(r"\d+ matches", matched.stdout) and (tmp_path / "outputs" / "ab" / "matches.png").is_file()


def python_examples() -> list[tuple[str, str]]:
    """The ```python blocks of README and of the docs pages, README's first: (document, code)."""
    return [(name, code) for name, text in DOCUMENTS.items() for code in re.findall(r"```python\n(.*?)```", text, re.S)]


def test_readmes_python_example_runs_verbatim_after_the_main_job(home, main_job):
    """README's Python example (and each docs page's), exactly as written, after the main job: from the folder it
    ran in (a user's repository root: its outputs/ and data/world/ are there), the repository's packages on the
    path as they are from the root."""
    examples = python_examples()
    assert [name for name, _ in examples].count("README.md") == 1 and "load_matcher" in examples[0][1]
    assert all(MAPPING in code or "load_matcher" in code for _, code in examples)  # each run here or below
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name, code in (example for example in examples if MAPPING not in example[1]):
        result = subprocess.run([sys.executable, "-c", code], cwd=home, capture_output=True, text=True, timeout=300,
                                env=environment)
        assert result.returncode == 0, f"{name}:\n{code}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        assert re.search(r"\d+ matches", result.stdout), (name, result.stdout)


def h5_pairs(path: Path) -> int:
    """How many pairs a match.py HDF5 file holds: its entries with keypoints0."""
    import h5py

    found = []
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: found.append(name) if name.rsplit("/", 1)[-1] == "keypoints0" else None)
    return len(found)


def test_match_py_other_matchers_a_pairs_file_and_a_folder(home, main_job):
    """docs/matching.md's match.py commands beyond LoFTR on two images, on the main job's world (its scene0003
    playing the default world's scene0005): SIFT on two images; a pairs file with the trained model into one
    HDF5 file, then again with one more pair (resumed: the file ends with the four); a folder of images paired
    exhaustively (every pair) and sequentially (each image with the next N)."""

    def on_this_world(words: list[str]) -> list[str]:
        return [word.replace("scene0005", "scene0003") for word in words]

    [sift] = [on_this_world(w) for w in readme_commands("match.py") if MATCH_RUNS["another matcher"](w)]
    run(home, "match.py", *sift)
    assert all((home / sift[sift.index(flag) + 1]).is_file() for flag in ("--out", "--plot"))
    [listed] = [w for w in readme_commands("match.py") if MATCH_RUNS["a pairs file"](w)]
    pairs_file, out = home / listed[listed.index("--pairs") + 1], home / listed[listed.index("--out") + 1]
    names = [f"scene0003/images/{k}.jpg" for k in range(5)]
    pairs_file.write_text("".join(f"{names[0]} {name}\n" for name in names[1:4]))
    run(home, "match.py", *listed)
    assert h5_pairs(out) == 3
    pairs_file.write_text(pairs_file.read_text() + f"{names[0]} {names[4]}\n")
    run(home, "match.py", *listed)
    assert h5_pairs(out) == 4
    folders = [on_this_world(w) for w in readme_commands("match.py") if MATCH_RUNS["a folder of images"](w)]
    assert {w[w.index("--pairing") + 1].split(":")[0] for w in folders} == {"exhaustive", "sequential"}
    for words in folders:
        run(home, "match.py", *words)
        n = len(list((home / words[words.index("--images") + 1]).glob("*.jpg")))
        pairing = words[words.index("--pairing") + 1]
        following = n - 1 if pairing == "exhaustive" else int(pairing.split(":")[1])
        assert h5_pairs(home / words[words.index("--out") + 1]) == sum(min(following, n - 1 - i) for i in range(n))


MAPPING = "pycolmap.incremental_mapping"  # docs/matching.md's Python block that maps match.py's database


def test_match_py_exports_a_colmap_database_and_hlocs_files_that_reconstruct(home, main_job, tmp_path):
    """docs/matching.md's --colmap/--hloc command with the main job's model on the world's scene0003 (playing
    scene0005): the database holds every image, keypoints and verified pairs, hloc's files every image and
    pair; run again, the existing exports are refused (exit 2) before anything is matched, and left as they were.
    The main job's model is trained for seconds on 160 px images here, too little to map from: the same command
    with SIFT on the site's ten 320x240 photos (playing scene0005's images), then the docs' pycolmap block as
    written (its paths those photos' and outputs), registers images and triangulates points."""
    import h5py
    import pycolmap

    def on_this_world(text: str) -> str:
        return text.replace("scene0005", "scene0003")

    [documented] = [words for words in readme_commands("match.py") if MATCH_RUNS["reconstruction exports"](words)]
    words = [on_this_world(word) for word in documented]
    result = run(home, "match.py", *words)
    database_path, hloc = (home / words[words.index(flag) + 1] for flag in ("--colmap", "--hloc"))
    images = sorted((home / words[words.index("--images") + 1]).glob("*.jpg"))
    assert re.search(rf"keypoints in {len(images)} images \(loftr quantization\)", result.stdout), result.stdout
    database = pycolmap.Database.open(str(database_path))
    assert database.num_images() == len(images) and database.num_keypoints() > 0
    assert database.num_verified_image_pairs() > 0
    database.close()
    with h5py.File(hloc / "features.h5", "r") as features, h5py.File(hloc / "matches.h5", "r") as matches:
        assert sorted(features) == sorted(image.name for image in images)
        assert sum(len(group) for group in matches.values()) == len(images) * (len(images) - 1) // 2
    before = database_path.read_bytes()
    again = subprocess.run([sys.executable, str(ROOT / "match.py"), *words], cwd=home, capture_output=True, text=True)
    assert again.returncode == 2 and "--colmap" in again.stderr and "exists" in again.stderr
    assert database_path.read_bytes() == before

    def on_the_photos(text: str) -> str:
        return text.replace("data/world/scene0005/images", "photos/site").replace("scene0005", "site")

    checkpoint = documented.index("--checkpoint")
    sift = [on_the_photos(word) for word in documented[:checkpoint] + ["--matcher", "sift"]
            + documented[checkpoint + 2:]]
    result = run(home, "match.py", *sift)
    assert re.search(r"keypoints in 10 images \(none quantization\)", result.stdout), result.stdout
    [code] = [on_the_photos(code) for _, code in python_examples() if MAPPING in code]
    mapped = subprocess.run([sys.executable, "-c", code], cwd=home, capture_output=True, text=True, timeout=300)
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    # the summaries printed: a model with images registered and points triangulated
    registered = [int(count) for count in re.findall(r"num_reg_frames = (\d+)", mapped.stdout)]
    points = [int(count) for count in re.findall(r"num_points3D = (\d+)", mapped.stdout)]
    assert registered and max(registered) >= 5 and max(points) > 100, mapped.stdout[-2000:]
    # hloc's files of the same run, read as hloc reads them and mapped as its reconstruction.main does
    hloc = home / sift[sift.index("--hloc") + 1]
    with h5py.File(hloc / "matches.h5", "r") as file:
        pairs = [(name0, name1) for name0 in file for name1 in file[name0]]  # the photos' names hold no "/"
    features = read_hloc(hloc, pairs)
    photos = home / sift[sift.index("--images") + 1]
    write_database(tmp_path / "from_hloc.db", features,
                   {name: camera_of_photo(photos / name) for name in features.keypoints})
    model = reconstruct(tmp_path / "from_hloc.db", photos, tmp_path / "from_hloc")
    assert model is not None and model.num_reg_images() >= 5 and model.num_points3D() > 100


def test_the_affine_simulation_commands(home, main_job, tmp_path):
    """docs/evaluation.md's affine=simulated commands, LoFTR under tilt stress with the main job's model and SIFT
    on the site's photos (playing DIR), at 160 px, a tilt of 4 and fewer views for LoFTR; docs/matching.md's
    match.py --affine-simulation on a photo and its view at tilt 4, at 320 px: matches on the true warp, the plot
    and the panorama."""
    loftr, photos = [w for w in readme_commands("evaluate.py") if EVALUATION_RUNS["affine simulation"](w)]
    fast = ["benchmark.resize.longer_side=160", *EVALUATE_OVERRIDES, "max_pairs=1"]
    run(home, "evaluate.py", *loftr, *fast, "stress_config.tilts=[4]", "affine.max_tilt=3", "affine.tolerance=2",
        f"out_dir={tmp_path / 'loftr'}")
    summary = json.loads((tmp_path / "loftr" / "summary.json").read_text())
    assert summary["affine"]["views_per_pair"] == 7 and "loftr+affine" in summary["title"]
    photos = [word.replace("benchmark.root=DIR", f"benchmark.root={home / 'photos' / 'site'}") for word in photos]
    run(home, "evaluate.py", *photos, *fast, f"out_dir={tmp_path / 'photos'}")
    summary = json.loads((tmp_path / "photos" / "summary.json").read_text())
    assert summary["affine"]["views_per_pair"] == 15 and summary["overall"]["pairs"] == 1

    [words] = [w for w in readme_commands("match.py") if MATCH_RUNS["affine simulation"](w)]
    image = make_texture(300, 400, seed=5)
    view, warp = tilt_view(image, 4.0, 30.0)
    write_image(tmp_path / "a.jpg", image)
    write_image(tmp_path / "b.jpg", view)
    run(tmp_path, "match.py", *words, "--resize", "320")  # the 61 default views at 320 px, not 640
    with np.load(tmp_path / words[words.index("--out") + 1]) as data:
        matches = dict(data)
    # measured: 225 matches, 76% within 3 px of the warp (JPEG, 320 px); SIFT alone: one (tests/test_match_cli.py)
    assert len(matches["confidence"]) * share_on_the_warp(matches, warp) > 100
    for flag in ("--plot", "--panorama"):
        picture = cv2.imread(str(tmp_path / words[words.index(flag) + 1]))
        assert picture is not None and picture.std() > 10, flag


def test_every_readme_evaluation_and_match_command_is_run_here():
    """Each evaluate.py and match.py command of README and of every docs page is run by exactly one test here;
    each kind of run has its command in them."""
    assert {"docs/evaluation.md", "docs/matching.md", "docs/inhouse.md"} <= set(DOCUMENTS)
    for script, runs in (("evaluate.py", EVALUATION_RUNS), ("match.py", MATCH_RUNS)):
        for name, text in DOCUMENTS.items():
            for words in readme_commands(script, text):
                assert sum(selects(words) for selects in runs.values()) == 1, (name, script, words)
        commands = readme_commands(script)
        assert all(any(selects(words) for words in commands) for selects in runs.values()), script


def test_every_experiment_has_its_recipe_run_here():
    """A new configs/experiment/ file needs its README command and its overrides here."""
    experiments = {path.stem for path in (ROOT / "configs" / "experiment").glob("*.yaml")}
    assert experiments == set(RECIPES)
    run_here = [words for run in TRAINING_RUNS for words in readme_training(run)]
    assert {experiment_of(words) for words in run_here} == experiments


def test_every_readme_training_command_is_run_here():
    """Each train.py command of README and of every docs page is run by exactly one test above, or needs what
    this machine lacks; their `python -m` modules are tested: data.synthetic by tests/data/synthetic/,
    data.inhouse above, pytest by CI."""
    assert {"docs/training.md", "docs/inhouse.md"} <= set(DOCUMENTS)
    assert {words[0] for words in readme_commands("-m")} <= {"data.synthetic", "data.inhouse", "pytest"}
    assert len(readme_commands("train.py")) >= 10
    for name, text in DOCUMENTS.items():
        for words in readme_commands("train.py", text):
            runs = [run for run, selects in TRAINING_RUNS.items() if selects(words)]
            lacking = [need for need in NOT_RUN_HERE if need in words]
            assert len(runs) + len(lacking) == 1, (name, words, runs, lacking)
    assert all(readme_training(run) for run in TRAINING_RUNS)  # each test has its command to run
