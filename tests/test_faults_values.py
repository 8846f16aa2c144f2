"""Bad values, tried as a user types them: each case runs a command (evaluate.py, train.py, match.py) and
asserts exit code 2, one line on stderr naming the key or the input, no traceback, and that no file written
before changed. Every numeric option is checked where it is declared (the typed config's __post_init__, the
benchmark's or the matcher's constructor, check_trainer_settings, match.py's argument types). The table:

- evaluate.py: a RANSAC seed past OpenCV's int or negative (PoseLib), inf or NaN thresholds, a nested matcher
  list or an option that one listed matcher lacks, plot_pairs < 0, whole numbers past a C int (2^70 pairs,
  pixels, features), a negative stress seed or a tilt of 1e300, a benchmark's epipolar threshold or resize rule
  out of range, the matchers' options (XFeat's top_k 0, abc, -5, min_cossim NaN; SIFT's ratio 0, max_features
  -1; LoFTR's coarse_threshold NaN or 2, device meta), images too small for XFeat, XFeat* and DISK
  (benchmark.resize.longer_side 16 and 48), the homographies benchmark's draws (image size 0x0, NaN rotation,
  tilt < 1, zoom range reversed, no or 2^70 pairs per image, inf shift, a negative seed), the affine
  simulation's (max_views 0, a view tilt under 1, no tilts, an unknown filter: named `affine.<field>`);
- pairs files naming an image outside image_root (an absolute path, a `..` that climbs out): one line naming
  the pairs file and the line;
- a ScanNet world at 160x120 scored with 640x480 intrinsics (the default intrinsics_size): refused naming
  intrinsics_size; with `benchmark.intrinsics_size=[160,120]` (no `+`, as README writes it) it is scored;
  every `benchmark.` key README and docs/ write composes without `+`;
- train.py: seed 2^70 or -1, checkpoint every -1 or 0 steps, accumulate_grad_batches=0, inf and NaN values of
  validation, optimizer and trainer options, negative counts, the final evaluation's (a NaN resize, max_pairs 0,
  an unknown baseline: before training, not after it); a GPU recipe (trainer: gpu) on a machine without CUDA is one
  line saying "add trainer=cpu", before any run folder (or sweep folder) is made; more devices than a GPU
  machine has (checked with a pretend one-GPU machine);
- match.py: --device meta, mps, cuda:7 where the machine has none, --epipolar-threshold inf, NaN or 0,
  --resize abc, --quadtree-topks 2^70, --affine-max-tilt 0.5, --affine-tolerance NaN: one line each
  (argparse's usage block is --help's).
"""

import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tqdm import tqdm

from data.pair_list import PairRecord, write_pair_list
from data.synthetic.__main__ import main as generate_world
from data.synthetic.texture import make_texture
from evaluation import harness
from evaluation.config import register_configs
from lightning_modules.builders import unavailable_accelerator
from tests.helpers import assert_unchanged, refusal, run_here, snapshot
from tests.match_helpers import write_image
from tests.train_helpers import ROOT, small

EVALUATE, TRAIN, MATCH = str(ROOT / "evaluate.py"), str(ROOT / "train.py"), str(ROOT / "match.py")


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch):
    """A progress bar's line on stderr is not the refusal's (TQDM_DISABLE=1 in a fresh process)."""
    monkeypatch.setattr(harness, "tqdm", partial(tqdm, disable=True))


@pytest.fixture(scope="module")
def scannet(tmp_path_factory) -> Path:
    """A ScanNet-layout world at 160x120: its intrinsics describe 160x120 frames, not LoFTR's 640x480."""
    root = tmp_path_factory.mktemp("scannet")
    assert generate_world(["--out", str(root), "--layout", "scannet", "--scenes", "3", "--cameras", "6",
                           "--size", "160x120"]) == 0
    return root


def evaluate(world: Path, out_dir: Path, *overrides: str):
    args = [EVALUATE, "benchmark=synthetic", f"benchmark.root={world}", "max_pairs=1", "plot_pairs=0",
            *overrides, f"out_dir={out_dir}"]
    return run_here(args, out_dir.parent)


# --------------------------------------------------------------------------------------------------- evaluate.py

# overrides (WORLD: the synthetic world) -> what the one line names
EVALUATE_CASES = {
    "ransac_seed 2^70": (["ransac_seed=1180591620717411303424"], ["ransac_seed=1180591620717411303424"]),
    "poselib negative seed": (["estimator=poselib", "ransac_seed=-1"], ["ransac_seed=-1", "[0, 2147483647]"]),
    "ransac_threshold inf": (["ransac_threshold=inf"], ["ransac_threshold", "inf"]),
    "ransac_threshold sweep": (["ransac_threshold=sweep"], ["ransac_threshold=sweep", "ransac_sweep=true"]),
    "sweep threshold nan": (["ransac_sweep=true", "sweep_thresholds=[0.5,nan]"], ["sweep_thresholds", "nan"]),
    "ransac_sweep abc": (["ransac_sweep=abc"], ["ransac_sweep", "abc"]),
    "sweep on homographies": (["benchmark=homographies", "benchmark.root=WORLD", "ransac_sweep=true"],
                              ["ransac_sweep=true", "homographies"]),
    "nested matcher list": (["matcher=[sift,[xfeat]]"], ["matcher=[sift,[xfeat]]", "flat list"]),
    "an option of one listed matcher": (["matcher=[sift,xfeat]", "matcher.top_k=0"], ["matcher sift", "matcher.top_k"]),
    "plot_pairs -1": (["plot_pairs=-1"], ["plot_pairs=-1"]),
    "max_pairs 2^70": ([f"max_pairs={2**70}"], ["max_pairs", str(2**70)]),
    "resize 2^70": ([f"benchmark.resize.longer_side={2**70}"], [f"resize.longer_side={2**70}"]),
    "sift max_features 2^70": (["matcher=sift", f"matcher.max_features={2**70}"], [f"max_features={2**70}"]),
    "stress seed -1": (["stress=tilt", "stress_config.seed=-1"], ["stress_config.seed", "-1"]),
    "stress tilt 1e300": (["stress=tilt", "stress_config.tilts=[1,1e300]"], ["stress_config.tilts", "<= 64"]),
    "epipolar_threshold inf": (["benchmark.epipolar_threshold=inf"], ["epipolar_threshold=inf", "finite number > 0"]),
    "epipolar_threshold 0": (["benchmark.epipolar_threshold=0"], ["epipolar_threshold=0", "finite number > 0"]),
    "resize nan": (["benchmark.resize.longer_side=nan"], ["resize.longer_side=nan"]),
    "resize 0": (["benchmark.resize.longer_side=0"], ["resize.longer_side=0"]),
    "resize divisible_by 0": (["benchmark.resize.divisible_by=0"], ["resize.divisible_by=0", "whole number in [1, "]),
    "xfeat top_k 0": (["matcher=xfeat", "matcher.top_k=0"], ["xfeat", "top_k=0"]),
    "xfeat top_k abc": (["matcher=xfeat", "matcher.top_k=abc"], ["xfeat", "top_k='abc'"]),
    "xfeat top_k -5": (["matcher=xfeat", "matcher.top_k=-5"], ["xfeat", "top_k=-5"]),
    "xfeat min_cossim nan": (["matcher=xfeat", "matcher.min_cossim=nan"], ["min_cossim=nan"]),
    "sift ratio 0": (["matcher=sift", "matcher.ratio=0"], ["sift", "ratio=0"]),
    "sift max_features -1": (["matcher=sift", "matcher.max_features=-1"], ["max_features=-1"]),
    "loftr coarse_threshold nan": (["matcher=loftr", "matcher.coarse_threshold=nan"], ["coarse_threshold=nan"]),
    "loftr coarse_threshold 2": (["matcher=loftr", "matcher.coarse_threshold=2"], ["coarse_threshold=2"]),
    "loftr device meta": (["matcher=loftr", "matcher.device=meta"], ["device='meta'", "cpu, cuda"]),
    "xfeat at 16 px": (["matcher=xfeat", "benchmark.resize.longer_side=16"], ["image0", "16x8", "benchmark.resize"]),
    "xfeat_star at 48 px": (["matcher=xfeat_star", "benchmark.resize.longer_side=48"],
                            ["image0", "48x32", "benchmark.resize"]),
    "disk_lightglue at 16 px": (["matcher=disk_lightglue", "benchmark.resize.longer_side=16"],
                                ["image0", "16x8", "disk_lightglue", "benchmark.resize"]),
    "homographies 0x0": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.image_size=[0,0]"],
                         ["image_size=[0, 0]"]),
    "homographies nan rotation": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.max_rotation_deg=nan"],
                                  ["max_rotation_deg=nan"]),
    "homographies tilt 0.5": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.max_tilt=0.5"],
                              ["max_tilt=0.5", "must be"]),
    "homographies zoom reversed": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.zoom_range=[2,1]"],
                                   ["zoom_range=[2, 1]"]),
    "homographies no pairs": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.pairs_per_image=0"],
                              ["pairs_per_image=0"]),
    "homographies shift inf": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.max_shift=inf"],
                               ["max_shift=inf", "must be"]),
    "homographies 2^70 pairs": (["benchmark=homographies", "benchmark.root=WORLD",
                                 f"benchmark.pairs_per_image={2**70}"], [f"pairs_per_image={2**70}"]),
    "homographies seed -1": (["benchmark=homographies", "benchmark.root=WORLD", "benchmark.seed=-1"], ["seed=-1"]),
    "affine max_views 0": (["affine=simulated", "affine.max_views=0"], ["affine.max_views=0"]),
    "affine tilt 0.5": (["affine=simulated", "affine.tilts=[0.5]", "affine.longitudes=[1]"], ["affine.tilts[0]=0.5"]),
    "affine no tilts": (["affine=simulated", "affine.tilts=[]", "affine.longitudes=[]"], ["affine.tilts=[]"]),
    "affine filter bogus": (["affine=simulated", "affine.filter=bogus"], ["affine.filter='bogus'", "fundamental"]),
}


@pytest.mark.parametrize("case", EVALUATE_CASES)
def test_evaluate_refuses_a_bad_value_naming_it(world, tmp_path, case):
    overrides, named = EVALUATE_CASES[case]
    before = snapshot(world)
    run = evaluate(world, tmp_path / "out", *(o.replace("WORLD", str(world)) for o in overrides))
    refusal(run, *named)
    assert_unchanged(before)
    assert not (tmp_path / "out" / "results.csv").exists()


def pair_record(name0: str, name1: str) -> PairRecord:
    K = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
    return PairRecord(name0, name1, K, K, np.eye(4))


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.png", "images/../../outside.png"])
def test_a_pairs_file_naming_an_image_outside_image_root_is_refused(tmp_path, name):
    """The names of a pairs file are relative to image_root: an absolute one or a `..` that climbs out would
    read any file of the machine. One line naming the pairs file and the line; inside-the-root `..` is fine."""
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    for image in ("a.png", "b.png"):
        write_image(root / "images" / image, make_texture(120, 160, seed=1))
    write_image(tmp_path / "outside.png", make_texture(120, 160, seed=2))
    pairs = tmp_path / "pairs.txt"
    write_pair_list(pairs, [pair_record("images/a.png", "images/../images/b.png")])
    with pairs.open("a") as file:  # write_pair_list checks its records: the hostile line is added by hand
        file.write(pairs.read_text().replace("images/../images/b.png", name))
    before = snapshot(root, pairs)
    run = run_here([EVALUATE, "benchmark=pairs", f"benchmark.pairs_file={pairs}", f"benchmark.image_root={root}",
                    "plot_pairs=0", f"out_dir={tmp_path / 'out'}"], tmp_path)
    refusal(run, f"{pairs}:2", name, "outside the image root")
    assert_unchanged(before)


def scannet_overrides(scannet: Path) -> list[str]:
    return ["benchmark=scannet1500", f"benchmark.root={scannet / 'test'}",
            f"benchmark.index_dir={scannet / 'index' / 'scannet_test_1500'}"]


def test_scannet_intrinsics_of_another_frame_are_refused_not_scored(scannet, tmp_path):
    """160x120 frames and their K scored as if K described 640x480 frames (the default intrinsics_size) would
    scale K by a half and score 2% instead of 50%, silently: refused, naming intrinsics_size and the frame."""
    before = snapshot(scannet)
    run = run_here([EVALUATE, *scannet_overrides(scannet), "max_pairs=1", "plot_pairs=0",
                    f"out_dir={tmp_path / 'out'}"], tmp_path)
    refusal(run, "intrinsics_size=[640, 480]", "160x120", "intrinsics.npz", "intrinsics_size=[160,120]")
    assert_unchanged(before)


def test_scannet_intrinsics_size_composes_without_plus_and_scores(scannet, tmp_path):
    """README's `benchmark.intrinsics_size=[W,H]`, written without `+`."""
    run = run_here([EVALUATE, *scannet_overrides(scannet), "benchmark.intrinsics_size=[160,120]", "max_pairs=1",
                    "plot_pairs=0", f"out_dir={tmp_path / 'out'}"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "summary.json").is_file()


def documented_benchmark_keys() -> set[str]:
    """The `benchmark.KEY=` overrides README.md and docs/ write (without `+`)."""
    texts = [(ROOT / "README.md").read_text()] + [path.read_text() for path in (ROOT / "docs").rglob("*.md")]
    return {match for text in texts for match in re.findall(r"(?<![+~\w.])(benchmark(?:\.\w+)+)=", text)}


def test_every_documented_benchmark_key_composes_without_plus():
    keys = documented_benchmark_keys()
    assert "benchmark.intrinsics_size" in keys
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        schemas = {path.stem: compose("evaluate", overrides=[f"benchmark={path.stem}"])
                   for path in (ROOT / "configs" / "benchmark").glob("*.yaml")}
    missing = object()
    unknown = [key for key in keys if all(OmegaConf.select(config, key, default=missing) is missing
                                          for config in schemas.values())]
    assert not unknown, f"not in any benchmark's schema: {unknown}"


# ------------------------------------------------------------------------------------------------------ train.py

TRAIN_CASES = {
    "seed 2^70": ("seed=1180591620717411303424", ["seed=1180591620717411303424"]),
    "seed -1": ("seed=-1", ["seed=-1"]),
    "checkpoint every -1 steps": ("callbacks.checkpoint.every_n_train_steps=-1",
                                  ["callbacks.checkpoint.every_n_train_steps=-1"]),
    "checkpoint every 0 steps": ("callbacks.checkpoint.every_n_train_steps=0",
                                 ["callbacks.checkpoint.every_n_train_steps=0"]),
    "accumulate 0 batches": ("trainer.accumulate_grad_batches=0", ["trainer.accumulate_grad_batches=0"]),
    "gradient clip nan": ("trainer.gradient_clip_val=nan", ["trainer.gradient_clip_val=nan"]),
    "limit_val_batches 1.5": ("trainer.limit_val_batches=1.5", ["trainer.limit_val_batches=1.5"]),
    "max_steps -5": ("trainer.max_steps=-5", ["trainer.max_steps=-5"]),
    "validation threshold inf": ("validation.epipolar_threshold=inf", ["validation.epipolar_threshold=inf"]),
    "validation seed -1": ("validation.ransac_seed=-1", ["validation.ransac_seed=-1"]),
    "validation figures -1": ("validation.num_figures=-1", ["validation.num_figures=-1"]),
    "nonfinite steps -1": ("max_nonfinite_steps=-1", ["max_nonfinite_steps=-1"]),
    "lr nan": ("optimizer.lr=nan", ["optimizer.lr=nan"]),
    "lr -1": ("optimizer.lr=-1", ["optimizer.lr=-1"]),
    "warmup -5 steps": ("optimizer.warmup_steps=-5", ["optimizer.warmup_steps=-5"]),
    "gamma inf": ("optimizer.gamma=inf", ["optimizer.gamma=inf"]),
    "milestone -1": ("optimizer.milestones=[8,-1]", ["optimizer.milestones=[8, -1]"]),
    # checked before training, not after it
    "final resize nan": ("final_evaluation.benchmark={name:synthetic,root:WORLD,resize:{longer_side:nan}}",
                         ["final_evaluation.benchmark", "resize.longer_side=nan"]),
    "final max_pairs 0": ("final_evaluation.benchmark={name:synthetic,root:WORLD} final_evaluation.max_pairs=0",
                          ["final_evaluation.max_pairs", "0"]),
    "final baseline unknown": ("final_evaluation.benchmark={name:synthetic,root:WORLD} "
                               "final_evaluation.baselines=[nope]", ["final_evaluation.baselines", "nope"]),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_refuses_a_bad_value_naming_it(world, tmp_path, case):
    override, named = TRAIN_CASES[case]
    before = snapshot(world)
    overrides = [o for o in small(world, tmp_path / "run", "trainer=cpu", "trainer.max_steps=1")
                 if not (override.startswith("final_evaluation") and o.startswith("final_evaluation"))]
    extra = override.replace("WORLD", str(world)).split()
    run = run_here([TRAIN, *overrides, *extra], tmp_path)
    refusal(run, *named)
    assert_unchanged(before)
    assert not (tmp_path / "run" / "checkpoints").exists()


GPU_RECIPES = ["loftr_megadepth", "eloftr_megadepth", "loftr_quadtree_megadepth", "loftr_scannet"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU: the recipe would run")
@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
@pytest.mark.parametrize("experiment", GPU_RECIPES)
def test_a_gpu_recipe_without_a_gpu_says_add_trainer_cpu_before_any_folder(tmp_path, experiment, sweep):
    """README promises one line before any folder is made: Lightning's 40-line MisconfigurationException came
    after Hydra had made the run folder."""
    where = ["-m", f"hydra.sweep.dir={tmp_path / 'runs'}", "seed=1,2"] if sweep else \
        [f"hydra.run.dir={tmp_path / 'runs'}"]
    run = run_here([TRAIN, *where, f"experiment={experiment}", f"data.root={tmp_path / 'data'}"], tmp_path)
    refusal(run, "trainer.accelerator=gpu", "add trainer=cpu")
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "a folder was made"


# ------------------------------------------------------------------------------------------------------ match.py

MATCH_CASES = {
    "device meta": (["--device", "meta"], ["--device", "'meta'", "cpu, cuda"]),
    "device mps": (["--device", "mps"], ["--device", "MPS"]),
    "device cuda:7": (["--device", "cuda:7"], ["--device"]),
    "epipolar threshold inf": (["--epipolar-threshold", "inf"], ["--epipolar-threshold", "inf"]),
    "epipolar threshold nan": (["--epipolar-threshold", "nan"], ["--epipolar-threshold", "nan"]),
    "epipolar threshold 0": (["--epipolar-threshold", "0"], ["--epipolar-threshold", "0"]),
    "resize abc": (["--resize", "abc"], ["--resize", "'abc'"]),
    "quadtree topks 2^70": (["--quadtree-topks", str(2**70)], ["--quadtree-topks", str(2**70)]),
    "affine max tilt 0.5": (["--affine-simulation", "--affine-max-tilt", "0.5"], ["--affine-max-tilt", "max_tilt=0.5"]),
    "affine tolerance nan": (["--affine-simulation", "--affine-tolerance", "nan"], ["--affine-tolerance", "nan"]),
}


@pytest.mark.parametrize("case", MATCH_CASES)
def test_match_refuses_a_bad_option_in_one_line(tmp_path, case):
    args, named = MATCH_CASES[case]
    if case == "device mps" and torch.backends.mps.is_available():
        pytest.skip("the machine has MPS")
    image = make_texture(120, 160, seed=3)
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name, image)
    before = snapshot(tmp_path)
    run = run_here([MATCH, "a.png", "b.png", "--random-weights", "--device", "cpu", *args, "--out", "m.npz"],
                   tmp_path)
    refusal(run, *named)
    assert_unchanged(before)
    assert not (tmp_path / "m.npz").exists()


def test_the_accelerator_check_on_a_one_gpu_machine(monkeypatch):
    """What a GPU machine is told (none was at hand to run the commands on): more devices than it has, also
    with accelerator=auto; a GPU recipe on it goes on."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert unavailable_accelerator({"accelerator": "gpu", "devices": -1}) is None
    assert unavailable_accelerator({"accelerator": "gpu", "devices": 1}) is None
    for accelerator in ("gpu", "auto"):
        assert "trainer.devices=8: this machine has 1 CUDA GPU(s)" in unavailable_accelerator(
            {"accelerator": accelerator, "devices": 8})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert unavailable_accelerator({"accelerator": "auto", "devices": 8}) is None  # auto: the CPU
    assert "add trainer=cpu" in unavailable_accelerator({"accelerator": "cuda", "devices": 1})
