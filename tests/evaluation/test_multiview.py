"""IMC's multiview task (evaluation/multiview.py): bags grown through the scenes' pairs, and a run whose bags
cannot be mapped, counted and named rather than raised. The whole command on a world and on an in-house site:
tests/test_recipes.py."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from data.pair_list import ViewRecord
from evaluation.benchmarks import build_benchmark
from evaluation.config import EvaluateConfig
from evaluation.harness import HarnessConfig
from evaluation.multiview import Bag, draw_bags, run_multiview, write_multiview_report
from evaluation.run import EvaluationError, evaluate
from models.matches import Matches
from sfm.reconstruct import MappingFailedError, reconstruct_in_child
from tests.helpers import run_here

ROOT = Path(__file__).resolve().parents[2]


def chain_scene(count: int) -> tuple[dict[str, list[ViewRecord]], set[frozenset[str]]]:
    """A scene of `count` images in which image k shares a view with k + 1 only."""
    names = [f"s/{k}.jpg" for k in range(count)]
    views = [ViewRecord(name, np.eye(3), np.eye(4)) for name in names]
    return {"s": views}, {frozenset(pair) for pair in zip(names, names[1:])}


def test_bags_are_connected_distinct_seeded_and_skip_sizes_the_scene_cannot_hold():
    scenes, covisible = chain_scene(12)
    bags, skipped = draw_bags(scenes, covisible, (3, 5, 13), count=4, seed=0)
    assert skipped == {"s": [13]}
    for size in (3, 5):
        drawn = [bag for bag in bags if bag.size == size]
        assert len(drawn) == 4 and len({bag.names for bag in drawn}) == 4
        for bag in drawn:  # on a chain, a connected bag is a run of consecutive images
            numbers = sorted(int(name[2:-4]) for name in bag.names)
            assert numbers == list(range(numbers[0], numbers[0] + size)), bag.names
    assert draw_bags(scenes, covisible, (3, 5, 13), count=4, seed=0)[0] == bags
    assert draw_bags(scenes, covisible, (3, 5, 13), count=4, seed=1)[0] != bags
    # adding a size leaves the other sizes' bags as they were
    assert draw_bags(scenes, covisible, (3,), 4, 0)[0] == [bag for bag in bags if bag.size == 3]


def test_a_scene_with_few_distinct_bags_gives_each_once():
    scenes, covisible = chain_scene(4)
    bags, _ = draw_bags(scenes, covisible, (4, 3), count=5, seed=0)
    assert sorted(bag.names for bag in bags) == [("s/0.jpg", "s/1.jpg", "s/2.jpg"),
                                               ("s/0.jpg", "s/1.jpg", "s/2.jpg", "s/3.jpg"),
                                               ("s/1.jpg", "s/2.jpg", "s/3.jpg")]


class NoMatches:
    name = "nothing"

    def match(self, image0, image1) -> Matches:
        return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))


def test_bags_that_cannot_be_mapped_are_counted_and_named(world, tmp_path):
    """A matcher that finds nothing: every bag is reconstructed from no matches, fails and is named in
    summary.json and bags.csv; every pair scores as failed (mAA 0, nothing registered), and nothing raises."""
    benchmark = build_benchmark("multiview", root=str(world), bag_sizes=(2, 3), bags=3)
    result = run_multiview(benchmark, NoMatches(), HarnessConfig(), "none", tmp_path, progress=False)
    table, summary = write_multiview_report(tmp_path, result, "title", {})
    bags = len(result.bags)
    assert bags >= 3 and all(bag.failure and bag.registered == 0 for bag in result.bags)
    assert summary["overall"]["maa"] == 0 and summary["overall"]["registered"] == 0
    assert summary["overall"]["failed"] == bags and len(summary["failed_bags"]) == bags
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert all("no model" in why for why in summary["failed_bags"].values())
    assert "failed" in table and len((tmp_path / "bags.csv").read_text().splitlines()) == 1 + bags
    # each pair matched once, however many bags hold it, and scored for the stereo task (as failed)
    pairs = {pair for bag in result.bags for pair in bag.bag.pairs()}
    assert len(pairs) < sum(len(bag.bag.pairs()) for bag in result.bags)
    assert len(result.stereo) == len(pairs) and summary["overall"]["maa_stereo"] == 0


def test_a_mapping_that_dies_is_a_failure_naming_its_log(tmp_path):
    """COLMAP ends the child process on a database it cannot read: MappingFailedError naming the log."""
    database = tmp_path / "database.db"
    database.write_bytes(b"not a database")
    with pytest.raises(MappingFailedError, match="mapping.log"):
        reconstruct_in_child(database, tmp_path, tmp_path / "sparse", tmp_path / "mapping.log")
    assert (tmp_path / "mapping.log").is_file()


def test_bag_labels_and_pairs():
    bag = Bag("scene0005/images", 3, 1, ("a", "b", "c"))
    assert bag.label == "scene0005/images 3-1" and bag.pairs() == [("a", "b"), ("a", "c"), ("b", "c")]


@pytest.mark.parametrize("layout", ["megadepth", "scannet"])
def test_the_scenes_images_carry_the_pair_benchmarks_ground_truth(worlds, layout):
    """Each image's K and world-to-camera pose, as the multiview benchmark reads them (MegaDepth's scene-info
    files; ScanNet's index and the scenes' pose files), give every pair of the layout's pair benchmark exactly
    its K0, K1 and T_0to1 (scannet1500's from the index's rel_pose): one ground truth for both tasks."""
    root = worlds[layout]
    if layout == "megadepth":
        options = dict(root=str(root / "test"), scene_info_dir=str(root / "index" / "megadepth_test_1500_scene_info"))
        pairs = build_benchmark("megadepth1500", **options)
    else:
        options = dict(root=str(root / "test"), index_dir=str(root / "index" / "scannet_test_1500"),
                       intrinsics_size=(160, 120))
        pairs = build_benchmark("scannet1500", **options)
    benchmark = build_benchmark("multiview", **options)
    views = {view.name: view for scene in benchmark.scenes().values() for view in scene}
    covisible = benchmark.covisible()
    checked = 0
    for pair in pairs.pairs():
        name0, name1 = pair.name.split()
        assert frozenset((name0, name1)) in covisible
        view0, view1 = views[name0], views[name1]
        assert np.allclose(view0.K, pair.K0) and np.allclose(view1.K, pair.K1)
        assert np.allclose(view1.pose @ np.linalg.inv(view0.pose), pair.T_0to1, atol=1e-5)
        checked += 1
    assert checked == pairs.num_pairs() > 0
    assert all(Path(view.name).is_relative_to(scene) for scene, members in benchmark.scenes().items()
               for view in members)  # a scene is one folder of images


def test_several_matchers_one_table_and_what_multiview_refuses(worlds, tmp_path):
    """evaluate.py benchmark=multiview 'matcher=[sift,xfeat]' on ScanNet's layout: each matcher's run in its folder,
    one table with a row each; the options that do not apply to bags are refused in one line, exit 2, before
    anything is matched."""
    root = worlds["scannet"]
    data = ["benchmark=multiview", f"benchmark.root={root / 'test'}",
            f"benchmark.index_dir={root / 'index' / 'scannet_test_1500'}", "benchmark.intrinsics_size=[160,120]",
            "benchmark.bag_sizes=[2]", "benchmark.bags=1", "benchmark.resize.longer_side=160"]
    out = tmp_path / "both"
    result = run_here(["evaluate.py", *data, "matcher=[sift,xfeat]", f"out_dir={out}"], ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("2 matchers, multiview")[1]
    assert re.search(r"\nsift +\d", table) and re.search(r"\nxfeat +\d", table) and "mAA stereo" in table
    for name in ("sift", "xfeat"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["kind"] == "multiview" and summary["overall"]["bags"] >= 1
    for refused, said in (("stress=rotation", "stress=rotation"), ("max_pairs=2", "max_pairs"),
                          (f"predictions={tmp_path / 'p.h5'}", "predictions=FILE")):
        result = run_here(["evaluate.py", *data, "matcher=sift", refused, f"out_dir={tmp_path / 'refused'}"], ROOT)
        assert result.returncode == 2 and said in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "refused" / "summary.json").exists()


def test_a_run_folder_inside_the_scenes_is_refused(world):
    """evaluate() itself (not only the command line's run-folder check) refuses to write bags into the data,
    before matching."""
    settings = EvaluateConfig(benchmark={"name": "multiview", "root": str(world)}, matcher={"name": "sift"},
                              out_dir=str(world / "runs"))
    with pytest.raises(EvaluationError, match="would write into benchmark.root"):
        evaluate(settings)
    assert not (world / "runs").exists()
