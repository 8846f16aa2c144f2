"""In-house fine-tuning end to end on rendered photos: structure from motion -> sparse SfM-track labels ->
fine-tuning -> held-out pose AUC and held-out reconstructions, against the starting checkpoint.

    python benchmarks/inhouse.py --checkpoint outputs/train/synthetic/RUN/checkpoints/last.ckpt [--steps 400]

Renders a new synthetic world (`--seed`, rooms the checkpoint never saw): `--cameras` photos of each of
`--train-scenes` scenes go through `python -m data.inhouse prepare` (pycolmap SfM; no depth, no true poses
used), the tiny model fine-tunes on their sparse labels (256x192 windows at 640 px, as the synthetic recipe),
and both the starting and the fine-tuned model are scored on held-out pairs with exact poses (640 px, the
`synthetic` benchmark's protocol): other views of the same rooms (`--holdout views`, your site) or new rooms
(`--holdout scenes`); and both reconstruct bags of the held-out views (`benchmark=multiview`'s protocol,
evaluation/multiview.py: `--bags` bags of each of `--bag-sizes` photos a scene, IMC's multiview mAA and the
photos registered, and the stereo task's mAA). Prints the SfM accuracy against the true poses and the tables.
`--labels depth` is the control: the same photos fine-tune with the renderer's exact depth and poses (dense
ground truth) instead.
`--exposure 0.35 --noise 4` makes the site unlike the checkpoint's training images (a dim site, sensor noise),
the case fine-tuning is for; the default site looks like the training world.
"""

import argparse
import dataclasses
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.training import model_config
from data.datamodule import DataConfig, PairDataModule
from data.inhouse.prepare import PrepareConfig, prepare
from data.synthetic.world import RenderedScene, WorldConfig, render_scene, write_megadepth
from evaluation.benchmarks import build_benchmark
from evaluation.harness import HarnessConfig, run
from evaluation.metrics import summarize
from evaluation.multiview import multiview_table, run_multiview, summarize_multiview
from evaluation.report import format_table
from geometry.estimation import angle_between, pose_errors
from geometry.ground_truth import supervision_for
from geometry.poses import relative_pose
from lightning_modules import loftr_module
from lightning_modules.config import TrainingConfig
from lightning_modules.loftr_module import LoFTRModule
from lightning_modules.schedule import OptimizerConfig
from losses.loftr_loss import LossConfig
from models.matcher import LoFTRMatcher
from sfm.keypoints import PRESETS


def relative_pose_errors(info: dict, truth_poses: list[np.ndarray], ids: list[int]) -> tuple[list, list]:
    """Rotation and translation-direction errors (degrees) of every kept pair's SfM relative pose; the
    direction is not folded (SfM knows the sign of a baseline, unlike an essential matrix)."""
    rotation, direction = [], []
    for (a, b), *_ in info["pair_infos"]:
        estimated = relative_pose(info["poses"][a], info["poses"][b])
        true = relative_pose(truth_poses[ids[a]], truth_poses[ids[b]])
        rotation.append(pose_errors(true, estimated[:3, :3], estimated[:3, 3])[1])
        direction.append(angle_between(estimated[:3, 3], true[:3, 3]))
    return rotation, direction


def site_photos(scene: RenderedScene, exposure: float, noise: float, seed: int) -> RenderedScene:
    """The scene as a site's camera sees it: brightness times `exposure`, plus Gaussian sensor noise."""
    if exposure == 1.0 and noise == 0.0:
        return scene
    rng = np.random.default_rng(seed)
    images = [np.clip(image * exposure + rng.normal(0.0, noise, image.shape), 0, 255).round().astype(np.uint8)
              for image in scene.images]
    return dataclasses.replace(scene, images=images)


def evaluate(model, root: Path) -> dict:
    benchmark = build_benchmark("synthetic", root=str(root), split_file="test.txt")
    return summarize(run(benchmark, LoFTRMatcher(model)), benchmark.kind)  # eval mode inside, then back


def reconstruct(model, root: Path, out: Path, bag_sizes: list[int], bags: int, quantization: str) -> str:
    """The held-out views' bags reconstructed from `model`'s matches (benchmark=multiview on `root`, the
    bags' COLMAP files under `out`): the table's lines without its title."""
    benchmark = build_benchmark("multiview", root=str(root), split_file="test.txt", bag_sizes=tuple(bag_sizes),
                                bags=bags)
    result = run_multiview(benchmark, LoFTRMatcher(model), HarnessConfig(), quantization, out, progress=False)
    return multiview_table("", *summarize_multiview(result))


def main() -> int:
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="starting weights (a tiny-model run of ours)")
    parser.add_argument("--model", default="loftr_tiny", help="configs/model/NAME.yaml of the checkpoint")
    parser.add_argument("--train-scenes", type=int, default=3)
    parser.add_argument("--test-scenes", type=int, default=2, help="--holdout scenes: new scenes to test on")
    parser.add_argument("--cameras", type=int, default=32, help="photos per scene for SfM and fine-tuning")
    parser.add_argument("--holdout", choices=("views", "scenes"), default="views",
                        help="test on other views of the fine-tuning scenes (the in-house case: your site) or on "
                             "new scenes")
    parser.add_argument("--test-cameras", type=int, default=16, help="--holdout views: held-out views per scene")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--fine-nll-weight", type=float, default=1.0, help="as the synthetic recipe trains")
    parser.add_argument("--fine-nll-queries", choices=("centre", "window"), default="centre",
                        help="window: every image-0 window position, its target carried by the labels' fitted Jacobian")
    parser.add_argument("--exposure", type=float, default=1.0,
                        help="brightness factor of the site's photos (and held-out views): below 1, a dim site "
                             "unlike the starting checkpoint's training images")
    parser.add_argument("--noise", type=float, default=0.0, help="sensor noise of the site's photos, grey levels")
    parser.add_argument("--max-roll", type=float, default=WorldConfig.max_roll_deg,
                        help="camera roll of the photos in degrees: above the training world's 20, a site whose "
                             "photos differ from the starting checkpoint's data (hand-held, drone)")
    parser.add_argument("--freeze-backbone", action="store_true")
    parser.add_argument("--loss", choices=("masked", "positives", "all-negatives"), default="masked",
                        help="coarse negatives only in labelled rows/columns (default), none (LoFTR's sparse "
                             "supervision), or everywhere unlabelled (the naive use of sparse labels)")
    parser.add_argument("--labels", choices=("sfm", "depth"), default="sfm",
                        help="sfm: the SfM tracks (the in-house case); depth: a control, the same photos with the "
                             "renderer's exact depth and poses and the dense ground truth")
    parser.add_argument("--bag-sizes", type=int, nargs="+", default=[5, 10],
                        help="held-out reconstructions: bags of these many photos")
    parser.add_argument("--bags", type=int, default=3, help="held-out reconstructions: bags of each size a scene")
    parser.add_argument("--quantization", choices=list(PRESETS), default="loftr",
                        help="held-out reconstructions: the keypoints' snapping and merging (sfm/keypoints.py)")
    parser.add_argument("--size", default="640x480", help="the photos' WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=21, help="the world's seed (the default world's is 0)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="inhouse_"))
    start = time.perf_counter()

    # one camera per scene, as photos taken with one camera at one zoom (prepare --camera-mode single)
    new_scenes = args.holdout == "scenes"
    world = WorldConfig(num_scenes=args.train_scenes + (args.test_scenes if new_scenes else 0),
                        cameras_per_scene=args.cameras + (0 if new_scenes else args.test_cameras),
                        focal_range=(1.0, 1.0), max_roll_deg=args.max_roll, seed=args.seed,
                        image_size=tuple(int(side) for side in args.size.split("x")))
    entries, registered, rotation, direction = {}, [], [], []  # entries: {scene name: data entry}
    test_infos = []
    for index in tqdm(range(world.num_scenes), desc="scenes: render, SfM", unit="scene"):  # on stderr
        scene = site_photos(render_scene(world, index), args.exposure, args.noise, seed=index)
        if index >= args.train_scenes:  # a held-out scene, with exact poses
            test_infos.append(write_megadepth(work / "test", scene))
            continue
        if not new_scenes:  # the scene's last views are held out: the pairs among them, with exact poses
            n = args.cameras
            held_out = RenderedScene(scene.name, scene.images[n:], scene.depths[n:], scene.intrinsics[n:],
                                     scene.poses[n:], [(i0 - n, i1 - n, o) for i0, i1, o in scene.pairs if i0 >= n])
            test_infos.append(write_megadepth(work / "test", held_out))
        photos = work / "photos" / scene.name
        photos.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(scene.images[:args.cameras]):
            cv2.imwrite(str(photos / f"{k:02d}.png"), image)
        report = prepare(PrepareConfig(images=str(photos), out=str(work / "prepared" / scene.name),
                                       scene=scene.name, camera_mode="single", max_overlap=1.0))
        info = pickle.loads(report.scene_info.read_bytes())
        ids = [int(Path(path).stem) for path in info["image_paths"]]
        r, d = relative_pose_errors(info, scene.poses, ids)
        rotation += r
        direction += d
        registered.append(f"{len(report.registered)}/{report.images_found}")
        if args.labels == "depth":  # the photos SfM was given, with exact depth: every overlapping pair of them
            n = args.cameras
            seen = RenderedScene(scene.name, scene.images[:n], scene.depths[:n], scene.intrinsics[:n],
                                 scene.poses[:n], [(i0, i1, o) for i0, i1, o in scene.pairs if i1 < n])
            entries[scene.name] = {"type": "megadepth", "root": str(work / "dense"),
                                   "scene_info": [str(write_megadepth(work / "dense", seen))], "longer_side": 640,
                                   "pad_to_square": False, "depth_pad_size": 640, "crop_size": [256, 192]}
            continue
        entries[scene.name] = {"type": "inhouse", "root": str(work / "prepared" / scene.name),
                               "scene_info": [str(report.scene_info)], "longer_side": 640, "pad_to_square": False,
                               "crop_size": [256, 192], "max_correspondences": 512}
    (work / "test" / "test.txt").write_text("".join(f"{p.relative_to(work / 'test')}\n" for p in test_infos))
    print(f"SfM: registered {', '.join(registered)} photos per scene; relative pose of the {len(rotation)} kept "
          f"pairs vs the truth: rotation median {np.median(rotation):.3f} max {np.max(rotation):.3f} deg, "
          f"translation direction median {np.median(direction):.3f} max {np.max(direction):.3f} deg "
          f"({time.perf_counter() - start:.0f} s)")

    config = TrainingConfig(model=model_config(args.model), init_checkpoint=args.checkpoint,
                            # default: negatives only in the labelled rows and columns (Supervision.negatives)
                            loss=LossConfig(sparse_supervision=args.loss == "positives",
                                            fine_nll_weight=args.fine_nll_weight,
                                            fine_nll_queries=args.fine_nll_queries),
                            freeze_backbone=args.freeze_backbone,
                            optimizer=OptimizerConfig(lr=args.lr, scale_lr=False, schedule="cosine", warmup_steps=20,
                                                      decay_biases_and_norms=False))
    module = LoFTRModule(config)
    if args.loss == "all-negatives":  # an ablation: forget which entries the labels can say nothing about
        loftr_module.supervision_for = lambda *a: dataclasses.replace(supervision_for(*a), negative_rows0=None,
                                                                      negative_columns1=None)
    rows = {"starting checkpoint": evaluate(module.model, work / "test")}
    print(format_table(rows, "before fine-tuning"), flush=True)
    bags = {"starting checkpoint": reconstruct(module.model, work / "test", work / "multiview" / "before",
                                               args.bag_sizes, args.bags, args.quantization)}
    print(f"held-out bags reconstructed, before fine-tuning:\n{bags['starting checkpoint']}", flush=True)
    pl.seed_everything(0, workers=True)
    data = PairDataModule(DataConfig(train=entries, batch_size=2, num_workers=0, samples_per_scene=100,
                                     random_swap=True))
    trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         gradient_clip_val=1.0, enable_progress_bar=False, enable_model_summary=False)
    tuned = time.perf_counter()
    trainer.fit(module, datamodule=data)
    tuned = time.perf_counter() - tuned
    loss = {"masked": "negatives in labelled rows/columns", "positives": "positives only",
            "all-negatives": "every unlabelled entry negative"}[args.loss]
    if args.labels == "depth":
        loss = "exact depth, dense ground truth"
    tuned_label = f"fine-tuned ({args.steps} steps, {loss})"
    rows[tuned_label] = evaluate(module.model, work / "test")
    bags[tuned_label] = reconstruct(module.model, work / "test", work / "multiview" / "after", args.bag_sizes,
                                    args.bags, args.quantization)
    held_out = f"{args.test_scenes} new scenes" if new_scenes else f"{args.test_cameras} other views of each scene"
    print(format_table(rows, f"held-out rendered pairs ({held_out}, 640 px); fine-tuning "
                             f"{tuned / 60:.1f} min on the CPU, total {(time.perf_counter() - start) / 60:.1f} min"))
    for label, table in bags.items():
        print(f"held-out bags reconstructed (IMC multiview, mAA and registered in %), {label}:\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
