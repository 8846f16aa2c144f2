"""The Image Matching Benchmark's multiview task, and its stereo task on the same pairs (Jin et al., IJCV 2021;
the IMC 2020-2024 challenges), for `benchmark=multiview` (evaluation/benchmarks.py's Multiview).

    1. Bags: from each scene, `bags` seeded random sets of each of `bag_sizes` images, each grown through the
       scene's pairs (`draw_bags`).
    2. Matching: every pair of every bag, each pair once (a pair two bags share is matched for the first and
       reused), one bag's images in memory at a time; at the benchmark's resolution, scaled back to the
       original pixels as every benchmark does (evaluation/harness.py).
    3. Stereo: each matched pair's relative pose from the estimator, its error the larger of the rotation and
       translation angles; mAA over 1..10 degrees.
    4. Multiview: per bag, one keypoint set per image (sfm/keypoints.py, `quantization`), a COLMAP database with
       each image's true intrinsics, kept fixed (the numbers then measure the matches, not how well five photos
       calibrate their own cameras), geometric verification and incremental mapping (seeded, one thread, in a
       child process: sfm/reconstruct.py), then every pair of the bag scored from the largest model's cameras
       (an unregistered image fails all its pairs, IMC's rule): mAA of the larger angle, and of rotation and
       translation alone, and the share of the bag's images registered.

Aggregated as IMC does: averaged over a size's bags, then over the sizes. A bag whose mapping dies (COLMAP
aborted) or builds no model counts as failed (every pair at an infinite error) and is named.

Writes to the run folder: summary.json (`overall`: maa, maa_rotation, maa_translation, registered,
maa_stereo, ...; `groups`: the same per bag size), bags.csv (one row a bag), stereo.csv (one row a pair, as
results.csv of the pair benchmarks) and bags/SCENE/SIZE-INDEX/ (database.db, sparse/, mapping.log) for COLMAP's
GUI.
"""

import csv
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.errors import loading_pair
from data.pair_list import ViewRecord
from data.pairs import EvalPair
from geometry.poses import relative_pose
from models.matches import Matches
from sfm.colmap import CameraPrior, write_database
from sfm.keypoints import PRESETS, sfm_features
from sfm.reconstruct import MappingFailedError, reconstruct_in_child
from utils.files import written_atomically
from utils.images import read_grayscale

from .benchmarks import Multiview
from .harness import HarnessConfig, Variant, match_variant, resize_factors, score_variant
from .matchers import Matcher
from .metrics import PairResult, PoseError, mean_average_accuracy, multiview_pose_errors
from .report import format_table, write_csv, write_json

Pair = tuple[str, str]
MULTIVIEW_OUTPUTS = ("summary.json", "bags.csv", "stereo.csv", "bags")  # in the run folder


class NoBagsError(ValueError):
    """No scene has a bag of any of the sizes: nothing to reconstruct."""


@dataclass(frozen=True)
class Bag:
    """`names`: the bag's images (scene-info image paths, sorted); `index`: its number among the scene's bags of
    its size."""

    scene: str
    size: int
    index: int
    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.scene} {self.size}-{self.index}"

    def pairs(self) -> list[Pair]:
        return list(combinations(self.names, 2))


@dataclass
class BagResult:
    """A bag's reconstruction scored: each pair's PoseError, the images registered, and `failure` (why mapping
    gave nothing; None when it built a model)."""

    bag: Bag
    errors: dict[Pair, PoseError]
    registered: int
    failure: str | None = None

    def maa(self, part: str = "max_deg") -> float:
        """mAA in percent of the pairs' `part` error: max_deg, rotation_deg or translation_deg."""
        return mean_average_accuracy([getattr(error, part) for error in self.errors.values()])

    def row(self) -> dict[str, float]:
        return {"maa": self.maa(), "maa_rotation": self.maa("rotation_deg"),
                "maa_translation": self.maa("translation_deg"), "registered": 100 * self.registered / self.bag.size}


@dataclass
class MatchedPair:
    """A pair's matches in original pixels and its stereo result."""

    matches: Matches
    stereo: PairResult


@dataclass
class MultiviewResult:
    bags: list[BagResult]
    stereo: list[PairResult]
    skipped: dict[str, list[int]] = field(default_factory=dict)  # scene: the bag sizes it has no bag of


def draw_bags(scenes: dict[str, list[ViewRecord]], covisible: set[frozenset[str]], sizes: tuple[int, ...],
              count: int, seed: int) -> tuple[list[Bag], dict[str, list[int]]]:
    """`count` distinct bags of each size from each scene, and {scene: sizes no bag could be drawn for}.

    A bag grows from a random image by random images `covisible` with one already in it, so that every image
    of a bag shares a view with another and the bag is one connected part of the scene. IMC's scenes are
    photos of one landmark, most of which see one another; a scene whose images mostly do not (the generated
    world: about one pair in five shares a view) would otherwise give bags of unrelated images that no matcher
    can reconstruct. Fewer bags where the scene has fewer distinct ones; drawn from a generator seeded by (seed,
    scene number, size), so that adding a bag size leaves the other sizes' bags as they were."""
    bags, skipped = [], {}
    for number, (scene, views) in enumerate(scenes.items()):
        names = [view.name for view in views]
        neighbours = {name: [other for other in names if frozenset((name, other)) in covisible] for name in names}
        for size in sizes:
            rng = np.random.default_rng([seed, number, size])
            drawn: list[tuple[str, ...]] = []
            for _ in range(20 * count):  # bounded: a scene of few images has few distinct bags
                if len(drawn) == count or size > len(names):
                    break
                bag = grown_bag(names, neighbours, size, rng)
                if bag is not None and bag not in drawn:
                    drawn.append(bag)
            if not drawn:
                skipped.setdefault(scene, []).append(size)
            bags += [Bag(scene, size, index, members) for index, members in enumerate(drawn)]
    return bags, skipped


def grown_bag(names: list[str], neighbours: dict[str, list[str]], size: int, rng: np.random.Generator
              ) -> tuple[str, ...] | None:
    """`size` images (sorted) grown from a random one of `names` through `neighbours`; None when the part of
    the scene it starts in is smaller."""
    bag = [names[rng.integers(len(names))]]
    while len(bag) < size:
        frontier = sorted({other for name in bag for other in neighbours[name]} - set(bag))
        if not frontier:
            return None
        bag.append(frontier[rng.integers(len(frontier))])
    return tuple(sorted(bag))


def match_bags(bags: list[Bag], views: dict[str, ViewRecord], benchmark: Multiview, matcher: Matcher,
               config: HarnessConfig, progress: bool = True) -> tuple[dict[Pair, MatchedPair], dict[str, tuple]]:
    """Every pair of `bags` matched once and scored for the stereo task: {pair: MatchedPair}, and {image: (width,
    height)}. Images are read per bag and dropped after it; BadPairError names an image that cannot be read."""
    pairs = list(dict.fromkeys(pair for bag in bags for pair in bag.pairs()))
    matched: dict[Pair, MatchedPair] = {}
    sizes: dict[str, tuple[int, int]] = {}
    root = Path(benchmark.root)
    with tqdm(total=len(pairs), desc=f"multiview / {matcher.name}: matching", unit="pair", dynamic_ncols=True,
              **({} if progress else {"disable": True})) as bar:
        for bag in bags:
            images: dict[str, np.ndarray] = {}  # this bag's, read when a pair needs them
            for name0, name1 in bag.pairs():
                if (name0, name1) in matched:
                    continue
                with loading_pair(f"{benchmark.name}: {bag.label}: pair ({name0}, {name1})"):
                    for name in (name0, name1):
                        if name not in images:
                            images[name] = read_grayscale(root / name)
                            sizes[name] = images[name].shape[1], images[name].shape[0]
                view0, view1 = views[name0], views[name1]
                pair = EvalPair(f"{name0} {name1}", images[name0], images[name1], K0=view0.K, K1=view1.K,
                                T_0to1=relative_pose(view0.pose, view1.pose), group=bag.scene)
                factors = (resize_factors(benchmark, pair.image0), resize_factors(benchmark, pair.image1))
                prediction = match_variant(Variant(pair.name, pair, factors), matcher)
                stereo = score_variant(pair, prediction, benchmark, config).result
                matched[(name0, name1)] = MatchedPair(prediction.matches, stereo)
                bar.update()
    return matched, sizes


def map_bag(bag: Bag, matched: dict[Pair, MatchedPair], views: dict[str, ViewRecord],
            sizes: dict[str, tuple[int, int]], benchmark: Multiview, quantization: str, folder: Path) -> BagResult:
    """`bag` reconstructed from its pairs' matches in `folder` (database.db, sparse/, mapping.log) and scored."""
    features = sfm_features({pair: matched[pair].matches for pair in bag.pairs()}, PRESETS[quantization])
    cameras = {name: CameraPrior(*sizes[name], focal=float(np.mean(np.diag(views[name].K)[:2])),
                                 principal_point=(views[name].K[0, 2], views[name].K[1, 2])) for name in bag.names}
    truth = {name: views[name].pose for name in bag.names}
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "database.db"
    database.unlink(missing_ok=True)  # a run folder's own leftover of an interrupted run
    write_database(database, features, cameras, verify=False)  # verified in the child, with the mapping
    try:
        poses = reconstruct_in_child(database, benchmark.root, folder / "sparse", folder / "mapping.log",
                                     seed=benchmark.seed, known_intrinsics=True)
    except MappingFailedError as error:
        return BagResult(bag, multiview_pose_errors({}, truth), 0, str(error))
    failure = None if poses else "no model: too few verified matches to start one"
    return BagResult(bag, multiview_pose_errors(poses, truth), len(poses), failure)


def run_multiview(benchmark: Multiview, matcher: Matcher, config: HarnessConfig, quantization: str, out_dir: Path,
                  progress: bool = True) -> MultiviewResult:
    """Both tasks on `benchmark` with `matcher`; the bags' files under out_dir/bags."""
    scenes = benchmark.scenes()
    bags, skipped = draw_bags(scenes, benchmark.covisible(), benchmark.bag_sizes, benchmark.bags, benchmark.seed)
    if not bags:
        raise NoBagsError(f"{benchmark.name} benchmark: no scene has {min(benchmark.bag_sizes)} images linked by "
                          f"its pairs: set benchmark.bag_sizes")
    views = {view.name: view for scene in scenes.values() for view in scene}
    matched, sizes = match_bags(bags, views, benchmark, matcher, config, progress)
    results = []
    for bag in tqdm(bags, desc=f"multiview / {matcher.name}: mapping", unit="bag", dynamic_ncols=True,
                    **({} if progress else {"disable": True})):
        folder = out_dir / MULTIVIEW_OUTPUTS[-1] / bag.scene.replace("/", "_") / f"{bag.size}-{bag.index}"
        results.append(map_bag(bag, matched, views, sizes, benchmark, quantization, folder))
    return MultiviewResult(results, [pair.stereo for pair in matched.values()], skipped)


def summarize_multiview(result: MultiviewResult) -> tuple[dict, dict[str, dict]]:
    """(overall, {"N images": numbers}): per size the mean over its bags of each bag's mAA (the larger angle,
    rotation, translation) and registered share, all in percent, and how many bags failed; overall the mean
    over the sizes, with the stereo task's mAA over every matched pair, the pairs, matches and runtime."""
    groups: dict[str, dict] = {}
    for size in sorted({bag.bag.size for bag in result.bags}):
        members = [bag for bag in result.bags if bag.bag.size == size]
        rows = [bag.row() for bag in members]
        groups[f"{size} images"] = {**{key: float(np.mean([row[key] for row in rows])) for key in rows[0]},
                                    "bags": len(members),
                                    "failed": sum(bag.failure is not None for bag in members)}
    stereo = result.stereo
    overall = {key: float(np.mean([group[key] for group in groups.values()]))
               for key in ("maa", "maa_rotation", "maa_translation", "registered")}
    overall.update(maa_stereo=mean_average_accuracy([pair.pose.max_deg for pair in stereo]),
                   bags=len(result.bags), failed=sum(bag.failure is not None for bag in result.bags),
                   stereo_pairs=len(stereo), matches=float(np.mean([pair.num_matches for pair in stereo])),
                   runtime_ms=1000 * float(np.median([pair.runtime_s for pair in stereo])))
    return overall, groups


TABLE_COLUMNS = (("bags", "bags"), ("registered", "registered"), ("maa", "mAA"), ("maa_rotation", "mAA rot"),
                 ("maa_translation", "mAA trans"), ("failed", "failed"))


def multiview_table(title: str, overall: dict, groups: dict[str, dict]) -> str:
    """The terminal table: a row per bag size and `all`, then the stereo task's line."""
    return (f"{format_table({**groups, 'all': overall}, title, TABLE_COLUMNS)}\n"
            f"stereo: mAA {overall['maa_stereo']:.1f} over {overall['stereo_pairs']} pairs, "
            f"{overall['matches']:.0f} matches and {overall['runtime_ms']:.0f} ms a pair")


def multiview_comparison(title: str, summaries: dict[str, dict]) -> str:
    """One row a run ({label: its summary.json}): its overall numbers, as `multiview_table`'s `all` row, and the
    stereo task's mAA."""
    rows = {label: summary["overall"] for label, summary in summaries.items()}
    return format_table(rows, title, [*TABLE_COLUMNS, ("maa_stereo", "mAA stereo")])


def write_bags_csv(path: Path, bags: list[BagResult]) -> None:
    """One row a bag: scene, size, index, registered, the three mAAs, failure and the images."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["scene", "size", "bag", "registered", "maa", "maa_rotation", "maa_translation", "failure",
                         "images"])
        for bag in bags:
            row = bag.row()
            writer.writerow([bag.bag.scene, bag.bag.size, bag.bag.index, bag.registered, f"{row['maa']:.2f}",
                             f"{row['maa_rotation']:.2f}", f"{row['maa_translation']:.2f}", bag.failure or "",
                             " ".join(bag.bag.names)])


def write_multiview_report(out_dir: Path, result: MultiviewResult, title: str, extra: dict) -> tuple[str, dict]:
    """summary.json, bags.csv and stereo.csv in `out_dir`; the table and the summary."""
    overall, groups = summarize_multiview(result)
    summary = {"title": title, "kind": "multiview", "overall": overall, "groups": groups,
               "failed_bags": {bag.bag.label: bag.failure for bag in result.bags if bag.failure is not None},
               "skipped_sizes": result.skipped, **extra}
    with ExitStack() as outputs:  # each file replaces an earlier one only once all three are written
        paths = {name: outputs.enter_context(written_atomically(out_dir / name))
                 for name in MULTIVIEW_OUTPUTS if name != "bags"}
        write_bags_csv(paths["bags.csv"], result.bags)
        write_csv(paths["stereo.csv"], result.stereo)
        write_json(paths["summary.json"], summary)
    return multiview_table(title, overall, groups), summary
